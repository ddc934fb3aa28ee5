"""Train throughput (img/s, median step after compile) of RGB 32x32 models.

  python experiments/bench_train.py [--batch=256] [--steps=20] [--out=FILE]

Shapes: 15 layers x 129 features, kernel 3 (129: the nearest multiple of 3 to
the reference's 128, since RGB needs p divisible by 3) and 20 x 384, kernel 5;
fp32 and bf16 compute. Prints one JSON line per case and a table.
"""

import argparse
import datetime
import json
import re
import statistics
import time

import jax
import numpy as np
from ml_collections import ConfigDict

from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train
from pixelcnn_jax import train_state as ts

SHAPES = ((15, 129, 3), (20, 384, 5))


def config_for(layers, features, kernel, dtype, batch):
  return ConfigDict({
      "seed": 0,
      "model": dict(num_layers=layers, features=features, kernel_size=kernel,
                    channels=3, skip=False, head_features=0, conditioning="none",
                    num_classes=0, cond_dim=0, spatial_features=0, dtype=dtype),
      "data": dict(image_size=(32, 32)),
      "train": dict(learning_rate=1e-3, warmup_steps=10, num_steps=1000, schedule_steps=0,
                    grad_clip=1.0, ema_decay=0.0, batch_size=batch)})


def bench(layers, features, kernel, dtype, batch, steps):
  cfg = config_for(layers, features, kernel, dtype, batch)
  mesh = mesh_lib.make_mesh({"data": -1})
  model, tx, shardings, step = train.setup(cfg, mesh)
  state = train.fresh_state(cfg, model, tx, shardings)
  rng = np.random.default_rng(0)
  batches = [jax.device_put(rng.integers(0, 256, (batch, 32, 32, 3), np.uint8),
                            mesh_lib.batch_sharding(mesh)) for _ in range(4)]
  t0 = time.perf_counter()
  state, m = step(state, batches[0], None)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    state, m = step(state, batches[i % 4], None)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  return {"layers": layers, "features": features, "kernel": kernel, "dtype": dtype,
          "batch": batch, "img_per_s": batch / med, "median_step_s": med,
          "compile_s": compile_s, "params": ts.param_count(state.params),
          "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
          "date": datetime.date.today().isoformat(), "jax": jax.__version__}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--out", default="")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--shapes", default=",".join(f"{l}x{f}k{k}" for l, f, k in SHAPES),
                 help="comma-separated LAYERSxFEATURESkKERNEL")
  args = p.parse_args()
  shapes = [tuple(int(v) for v in re.fullmatch(r"(\d+)x(\d+)k(\d+)", s).groups())
            for s in args.shapes.split(",")]
  rows = []
  for layers, features, kernel in shapes:
    for dtype in args.dtypes.split(","):
      try:
        r = bench(layers, features, kernel, dtype, args.batch, args.steps)
      except Exception as e:  # An OOM on one shape should not hide the others.
        r = {"layers": layers, "features": features, "kernel": kernel, "dtype": dtype,
             "batch": args.batch, "error": str(e).splitlines()[0][:200]}
      print(json.dumps(r), flush=True)
      rows.append(r)
  if args.out:
    with open(args.out, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  print(f"\n{'shape':>14} {'dtype':>9} {'img/s':>9} {'step ms':>8}  device")
  for r in rows:
    shape = f"{r['layers']}x{r['features']} k{r['kernel']}"
    if "error" in r:
      print(f"{shape:>14} {r['dtype']:>9}  error: {r['error'][:60]}")
    else:
      print(f"{shape:>14} {r['dtype']:>9} {r['img_per_s']:9.0f} "
            f"{1e3 * r['median_step_s']:8.1f}  {r['device']}")


if __name__ == "__main__":
  main()
