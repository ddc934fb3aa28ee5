"""Split the Olivetti faces by person for section 3.3: train, val and heldout.

  python experiments/olivetti_split.py IN.npz OUT_DIR [--heldout=30-39]
      [--val_per_person=2] [--size=64]

IN.npz has `image` uint8 [N, H, W, 1] and `label` = person. The people named
by --heldout (ids, or ranges a-b, comma-separated) go to heldout.npz whole:
neither the embedding net nor the PixelCNN sees any of their images, and
nothing is chosen by them. --val_per_person photos of each other person
(their last ones in IN.npz) go to val.npz, on which checkpoints are chosen;
the rest to train.npz (0: no val.npz). --size resizes by block averaging
(64 keeps the originals; 32 halves them). Run again into OUT_DIR, it
rewrites the same split; another split there is refused.
"""

import argparse
import os
import sys

import numpy as np


def parse_people(text: str) -> list[int]:
  people = []
  for part in text.split(","):
    low, _, high = part.partition("-")
    people.extend(range(int(low), int(high or low) + 1))
  return people


def main():
  p = argparse.ArgumentParser()
  p.add_argument("input")
  p.add_argument("out_dir")
  p.add_argument("--heldout", default="30-39")
  p.add_argument("--val_per_person", type=int, default=2)
  p.add_argument("--size", type=int, default=64)
  args = p.parse_args()
  if not args.out_dir.strip():
    sys.exit("error: OUT_DIR is empty (an unset shell variable?); name a folder")
  try:
    with np.load(args.input, allow_pickle=False) as f:
      images, labels = f["image"], f["label"].astype(np.int64)
    heldout = parse_people(args.heldout)
  except (OSError, KeyError, ValueError) as e:
    sys.exit(f"error: {e}")
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] % args.size:
    sys.exit(f"error: images must be uint8 [N, H, W, C] with H a multiple of "
             f"--size={args.size}, got {images.dtype} {images.shape}")
  unknown = sorted(set(heldout) - set(labels.tolist()))
  if unknown or len(set(heldout)) == len(set(labels.tolist())):
    sys.exit(f"error: --heldout must name some, not all, of the people "
             f"{sorted(set(labels.tolist()))}; unknown: {unknown}")
  out = np.isin(labels, heldout)
  fewest = np.unique(labels[~out], return_counts=True)[1].min()
  if not 0 <= args.val_per_person < fewest:
    sys.exit(f"error: --val_per_person must be in 0..{fewest - 1} (a training person "
             f"has {fewest} images), got {args.val_per_person}")
  factor = images.shape[1] // args.size
  if factor > 1:
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c)
    images = np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)
  val = np.zeros(len(labels), bool)
  for person in np.unique(labels[~out]):
    at = np.flatnonzero(labels == person)
    val[at[len(at) - args.val_per_person:]] = True
  splits = [("train", ~out & ~val), ("heldout", out)]
  if args.val_per_person:
    splits.insert(1, ("val", val))
  for name, keep in splits:
    path = os.path.join(args.out_dir, f"{name}.npz")
    if os.path.exists(path) and not _holds(path, images[keep], labels[keep]):
      # The workdirs and vectors beside it were made from that split.
      sys.exit(f"error: {path} holds another split (other faces, --heldout, "
               f"--val_per_person or --size); name a new OUT_DIR")
  try:
    os.makedirs(args.out_dir, exist_ok=True)
    for name, keep in splits:
      np.savez(os.path.join(args.out_dir, f"{name}.npz"), image=images[keep],
               label=labels[keep])
      print(f"{name}: {keep.sum()} images of {len(np.unique(labels[keep]))} people")
  except OSError as e:
    sys.exit(f"error: cannot write the splits into {args.out_dir}: {e.strerror or e}")


def _holds(path: str, images, labels) -> bool:
  try:
    with np.load(path, allow_pickle=False) as f:
      return np.array_equal(f["image"], images) and np.array_equal(f["label"], labels)
  except (OSError, KeyError, ValueError):
    return False


if __name__ == "__main__":
  main()
