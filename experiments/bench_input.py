"""The host's side of a training step: `input_pipeline.TrainStream.batch`.

  python experiments/bench_input.py [--npz=DIR_OR_FILE] [--batches=256,64]
      [--flip] [--shift=0] [--steps=200] [--out=FILE.jsonl]

Times one process's batches, read from an in-memory split as
`pixelcnn_jax.main` reads an npz one (every file of a directory, or one
file; random CIFAR-sized images without --npz), with the config's
augmentations. Per batch size: ms a batch (the median of 5 rounds of
--steps consecutive steps) and images a second. The stream reads ahead on
one thread, so a training loop waits on it only where a batch takes
longer than a step.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import time
import types

import numpy as np

from pixelcnn_jax import datasets, input_pipeline


def load_split(path: str) -> datasets.ArraySplit:
  if not path:
    rng = np.random.default_rng(0)
    return datasets.ArraySplit(rng.integers(0, 256, (50_000, 32, 32, 3), np.uint8),
                               np.zeros(50_000, np.int64))
  files = sorted(glob.glob(os.path.join(path, "*.npz"))) if os.path.isdir(path) else [path]
  if not files or not all(os.path.isfile(f) for f in files):
    raise SystemExit(f"--npz: no .npz file at {path!r}")
  try:
    parts = [np.load(f) for f in files]
    return datasets.ArraySplit(np.concatenate([p["image"] for p in parts]),
                               np.concatenate([p["label"] for p in parts]))
  except (KeyError, ValueError, OSError) as e:
    raise SystemExit(f"--npz: {path!r} is not npz files with image and label: {e}")


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
  p.add_argument("--npz", default="", help="a directory of .npz files, or one")
  p.add_argument("--batches", default="256,64")
  p.add_argument("--flip", action="store_true", help="data.random_flip")
  p.add_argument("--shift", type=int, default=0, help="data.random_shift")
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--out", default="")
  args = p.parse_args()
  try:
    batches = [int(b) for b in args.batches.split(",")]
  except ValueError:
    batches = []
  if not batches or min(batches) < 1:
    raise SystemExit(f"--batches: positive integers separated by commas, got {args.batches!r}")
  if args.shift < 0 or args.steps < 1:
    raise SystemExit(f"--shift must be at least 0 and --steps at least 1, got {args.shift} "
                     f"and {args.steps}")
  split = load_split(args.npz)
  model_cfg = types.SimpleNamespace(kind="pixelcnn", conditioning="none", num_classes=0)
  for batch in batches:
    stream = input_pipeline.TrainStream(split, batch, 0, model_cfg, random_flip=args.flip,
                                        random_shift=args.shift)
    ms = ms_per_batch(stream, args.steps)
    row = {"batch": batch, "image": "x".join(map(str, split.image_shape)), "flip": args.flip,
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
