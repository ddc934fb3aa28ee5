"""The host's side of a training step: `input_pipeline.TrainStream.batch`.

  python experiments/bench_input.py [--npz_dir=DIR] [--split=train]
      [--batches=256,64] [--flip] [--shift=0] [--steps=200] [--out=FILE.jsonl]

Times one process's batches of DIR's split (its `<split>*.npz` files, read
as `pixelcnn_jax.main` reads them; default: the CIFAR-10 subset shipped
with the package), with the config's augmentations. Per batch size: ms a batch (the median of 5 rounds of
--steps consecutive steps) and images a second. The stream reads ahead on
one thread, so a training loop waits on it only where a batch takes
longer than a step.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import time

from bench_nll import int_list
from pixelcnn_jax import config_base, datasets, input_pipeline
from pixelcnn_jax.errors import UserError


def ms_per_batch(stream, steps: int) -> float:
  stream.batch(0)
  rounds = []
  for r in range(5):
    start = time.perf_counter()
    for step in range(r * steps, (r + 1) * steps):
      stream.batch(step)
    rounds.append((time.perf_counter() - start) / steps * 1e3)
  return statistics.median(rounds)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--npz_dir", default=config_base.SHIPPED_CIFAR)
  p.add_argument("--split", default="train")
  p.add_argument("--batches", default="256,64")
  p.add_argument("--flip", action="store_true", help="data.random_flip")
  p.add_argument("--shift", type=int, default=0, help="data.random_shift")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--out", default="")
  args = p.parse_args()
  batches = int_list(args.batches, "--batches")
  if args.shift < 0 or args.steps < 1:
    raise SystemExit(f"--shift must be at least 0 and --steps at least 1, got {args.shift} "
                     f"and {args.steps}")
  config = config_base.base()
  config.data.npz_dir = args.npz_dir
  try:
    split = datasets.open_split(config.data, args.split)
  except UserError as e:
    raise SystemExit(str(e))
  for batch in batches:
    stream = input_pipeline.TrainStream(split, batch, 0, config.model, random_flip=args.flip,
                                        random_shift=args.shift)
    ms = ms_per_batch(stream, args.steps)
    row = {"npz_dir": args.npz_dir, "split": args.split, "batch": batch,
           "image": "x".join(map(str, split.image_shape)), "flip": args.flip,
           "shift": args.shift, "ms_per_batch": ms, "img_per_s": batch / ms * 1e3,
           "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "date": datetime.date.today().isoformat()}
    print(f"batch {batch:4d} flip {args.flip!s:5s} shift {args.shift}: {ms:7.3f} ms a batch, "
          f"{row['img_per_s']:10,.0f} img/s")
    if args.out:
      with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
