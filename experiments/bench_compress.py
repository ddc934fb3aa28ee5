"""Lossless compression with a trained PixelCNN against PNG and WebP.

  python experiments/bench_compress.py --workdir=W --data=IMAGES.npz
      [--limit=N] [--batch=B] [--step=best] [--out=FILE.jsonl]

For the images of IMAGES.npz (`image`, and `label` for a class-conditional
model): the model's bits/dim; the bits per sub-pixel actually written by
pj.compress (one file per batch of B, headers included) and by the payloads
alone; a bit-exact round trip through pj.decompress; images/s to compress
and to decompress; and, on the same images, PNG (pillow, optimize=True) and
lossless WebP (pillow, method 6), each image a file of its own. The speeds
leave out compilation: the first batch makes one untimed round trip first.
"""

import argparse
import datetime
import io
import json
import time

import jax
import numpy as np
from PIL import Image

import pixelcnn_jax as pj
from pixelcnn_jax import compression
from pixelcnn_jax.errors import UserError


def file_bits(images, **save) -> float:
  """Bits per sub-pixel of each image saved on its own with pillow."""
  total = 0
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer,
                                                                          **save)
    total += len(buffer.getvalue())
  return 8.0 * total / images.size


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--data", required=True)
  p.add_argument("--limit", type=int, default=0)
  p.add_argument("--batch", type=int, default=1000)
  p.add_argument("--step", default="best")
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  try:
    model, variables, config = pj.load(args.workdir, step=args.step)
    with np.load(args.data) as f:
      images = f["image"][:args.limit or None]
      labels = f["label"][:args.limit or None] if model.num_classes else None
  except (UserError, OSError, KeyError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  want = (*model.image_size, model.channels)
  if images.dtype != np.uint8 or images.shape[1:] != want or not len(images):
    raise SystemExit(f"error: {args.data}: this model needs uint8 images "
                     f"[N, {', '.join(map(str, want))}], got {images.dtype} "
                     f"{list(images.shape)}")
  h_of = lambda s: None if labels is None else labels[s]
  bpd_fn = jax.jit(lambda x, h: pj.bits_per_dim(model.apply(variables, x, h=h), x))
  bpd = np.concatenate([np.asarray(bpd_fn(images[s], h_of(s)))
                        for s in (slice(i, i + 500) for i in range(0, len(images), 500))])
  first = slice(0, args.batch)
  pj.decompress(model, variables, pj.compress(model, variables, images[first],
                                              h=h_of(first)))
  files, encode_s, decode_s = [], 0.0, 0.0
  for i in range(0, len(images), args.batch):
    s = slice(i, i + args.batch)
    t0 = time.perf_counter()
    data = pj.compress(model, variables, images[s], h=h_of(s))
    t1 = time.perf_counter()
    back = pj.decompress(model, variables, data)
    t2 = time.perf_counter()
    if not np.array_equal(back, images[s]):
      raise SystemExit(f"error: round trip of images {i}.. is not exact")
    files.append(data)
    encode_s, decode_s = encode_s + t1 - t0, decode_s + t2 - t1
  written = sum(len(d) for d in files)
  payload = sum(len(d) - compression.read_header(d)["payload_at"] for d in files)
  result = {
      "workdir": args.workdir, "data": args.data, "images": len(images),
      "shape": list(images.shape[1:]), "model_bits_per_dim": float(bpd.mean()),
      "written_bits_per_subpixel": 8.0 * written / images.size,
      "payload_bits_per_subpixel": 8.0 * payload / images.size,
      "png_bits_per_subpixel": file_bits(images, format="PNG", optimize=True),
      "webp_bits_per_subpixel": file_bits(images, format="WEBP", lossless=True,
                                          method=6, quality=100),
      "round_trip_exact": True, "batch": args.batch,
      "compress_images_per_s": len(images) / encode_s,
      "decompress_images_per_s": len(images) / decode_s,
      "device": jax.devices()[0].device_kind, "date": datetime.date.today().isoformat(),
      "jax": jax.__version__}
  print(json.dumps(result, indent=2))
  if args.out:
    with open(args.out, "a") as f:
      f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  main()
