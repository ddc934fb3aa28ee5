"""Does `pixelcnn_jax.main` train as fast as the benchmark's bare step?

  python experiments/bench_main.py [--shape=15x132k3] [--batch=256] [--steps=400]
      [--log_every=50] [--optimizer=adamw] [--npz_dir=DIR] [--out=FILE]

Trains through `python -m pixelcnn_jax.main --config=configs/cifar10.py`
for --steps steps, at the shape, batch and dtype given, on the images of
DIR's train.npz (default: the CIFAR-10 subset shipped with the package),
with the config's own EMA and mirroring and no eval, checkpoint or grid
until the end; then times `bench_train.py`'s bare step (random
images, no EMA) for the same model, batch, dtype and optimizer, each step
waited for and pipelined. Both take --optimizer and --dropout, not the
config's (Muon, 0.1), so that the ratios measure the training loop, not a
difference of models or optimizers. The run's speed is the median img/s of
its logged windows after the first two (compilation, warm-up). Prints one
JSON row with all three, and the run's ratio to each (issue #9: within 10%).
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

import jax

import bench_train
from pixelcnn_jax import config_base
from pixelcnn_jax import train_state
from pixelcnn_jax import xla_defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEVER = 10**9


def main_img_per_s(layers, features, kernel, dtype, batch, optimizer, dropout, steps,
                   log_every, npz_dir):
  """Median img/s of a main.py run's logged windows after the first two."""
  with tempfile.TemporaryDirectory() as workdir:
    flags = [f"--config.model.num_layers={layers}", f"--config.model.features={features}",
             f"--config.model.kernel_size={kernel}", f"--config.model.dtype={dtype}",
             f"--config.train.batch_size={batch}", f"--config.train.optimizer={optimizer}",
             f"--config.model.dropout={dropout}",
             f"--config.train.num_steps={steps}",
             f"--config.train.log_every={log_every}", f"--config.train.eval_every={NEVER}",
             f"--config.train.checkpoint_every={NEVER}",
             f"--config.train.sample_every={NEVER}", "--config.sample.num=1",
             "--config.data.dataset=npz", f"--config.data.npz_dir={npz_dir}",
             "--config.data.holdout=16", "--config.data.eval_split=holdout"]
    subprocess.run([sys.executable, "-m", "pixelcnn_jax.main",
                    "--config=configs/cifar10.py", f"--workdir={workdir}", *flags],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f]
  windows = [r["img_per_s"] for r in rows
             if "img_per_s" in r and 2 * log_every < r["step"] <= steps]
  return statistics.median(windows), len(windows)


def main():
  xla_defaults.apply()
  p = argparse.ArgumentParser()
  p.add_argument("--shape", default="15x132k3", help="LAYERSxFEATURESkKERNEL")
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=400, help="of the main.py run")
  p.add_argument("--log_every", type=int, default=50)
  p.add_argument("--optimizer", default="adamw",
                 help="for both the main.py run and the bare step")
  p.add_argument("--dropout", type=float, default=0.0,
                 help="model.dropout, for both the main.py run and the bare step")
  p.add_argument("--bench_steps", type=int, default=20)
  p.add_argument("--npz_dir", default=config_base.SHIPPED_CIFAR)
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  layers, features, kernel = bench_train.parse_shape(args.shape, "--shape")
  if args.optimizer not in train_state.OPTIMIZERS:
    raise SystemExit(f"--optimizer: one of {', '.join(train_state.OPTIMIZERS)}, "
                     f"got {args.optimizer!r}")
  if not 0.0 <= args.dropout < 1.0:
    raise SystemExit(f"--dropout: in [0, 1), got {args.dropout}")
  if args.steps < 3 * args.log_every:
    raise SystemExit(f"--steps={args.steps} leaves no logged window after the first two "
                     f"(--log_every={args.log_every}): give at least {3 * args.log_every}")
  # main.py first: this process must not hold the GPU (XLA preallocates) yet.
  trained, windows = main_img_per_s(layers, features, kernel, args.dtype, args.batch,
                                    args.optimizer, args.dropout, args.steps,
                                    args.log_every, args.npz_dir)
  bare = bench_train.bench(layers, features, kernel, args.dtype, args.batch, 1, 1,
                           args.bench_steps, bench_train.PEAK_TFLOPS,
                           optimizer=args.optimizer,
                           overrides=(("model.dropout", args.dropout),))
  row = {"shape": args.shape, "dtype": args.dtype, "batch": args.batch,
         "optimizer": bare["optimizer"], "dropout": args.dropout,
         "bench_img_per_s": bare["img_per_s"],
         "bench_img_per_s_pipelined": bare["img_per_s_pipelined"], "main_img_per_s": trained,
         "main_windows": windows, "main_over_bench": trained / bare["img_per_s"],
         "main_over_pipelined": trained / bare["img_per_s_pipelined"],
         "device": jax.devices()[0].device_kind, "date": datetime.date.today().isoformat(),
         "jax": jax.__version__}
  print(json.dumps(row), flush=True)
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
