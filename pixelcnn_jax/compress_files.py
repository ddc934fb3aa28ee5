"""`--mode=compress` and `--mode=decompress`: image files in, one file out.

  --mode=compress   --config.compress.input=IMAGES --config.compress.output=FILE
  --mode=decompress --config.compress.input=FILE --config.compress.output=IMAGES

IMAGES is an npz file (`image` uint8 [N, H, W, C]; `label` for a
class-conditional model, `vector` for a vector-conditioned one) or a folder
of PNGs (in name order; unconditional models only). An output that exists
is refused (an empty folder is taken). The model is the workdir's
checkpoint at eval.step with eval.weights, as for eval: both sides must name
the same step and weights, which the file's parameter fingerprint checks.
"""

import glob
import os

import jax
import numpy as np
from etils import epath
from PIL import Image

from pixelcnn_jax import checkpoint, compression, config_base
from pixelcnn_jax.errors import UserError


def _model(config, workdir):
  config_base.validate(config)
  if config.model.kind != "pixelcnn":
    raise UserError(f"compression needs a PixelCNN (model.kind='pixelcnn'), got "
                    f"{config.model.kind!r}")
  for name in ("input", "output"):
    if not config.compress[name]:
      raise UserError(f"set config.compress.{name}")
  _check_output(config.compress.output)
  model, weights, step, chosen, _ = checkpoint.restore_weights(
      workdir, config, config.eval.step, None, config.eval.weights)
  return model, {"params": weights[chosen]}, step, chosen


def _check_output(path: str) -> None:
  """Refuses, before any work, an output that would overwrite files."""
  if os.path.isdir(path) and os.listdir(path) or os.path.isfile(path):
    raise UserError(f"config.compress.output {path} already exists; remove it or name "
                    f"another")


def _condition_key(model) -> str:
  return "label" if model.num_classes > 0 else "vector"


def read_images(path: str, model):
  """(uint8 images, h or None) from an npz file or a folder of PNGs."""
  if os.path.isdir(path):
    if model.conditioning != "none":
      raise UserError(f"{path} is a folder of PNGs, which hold no "
                      f"'{_condition_key(model)}' for this model's conditioning: pass an "
                      f"npz with 'image' and '{_condition_key(model)}'")
    files = sorted(glob.glob(os.path.join(path, "*.png")))
    if not files:
      raise UserError(f"no *.png files in {path}")
    try:
      images = np.stack([np.asarray(Image.open(f)) for f in files])
    except (OSError, ValueError) as e:
      raise UserError(f"cannot read the PNGs of {path}: {e}") from e
    if images.ndim == 3:
      images = images[..., None]
    return images, None
  try:
    with np.load(path, allow_pickle=False) as f:
      images = f["image"]
      h = None
      if model.conditioning != "none":
        key = _condition_key(model)
        if key not in f.files:
          raise UserError(f"{path} has no '{key}' array, which this model's "
                          f"conditioning needs")
        h = f[key]
  except UserError:
    raise
  except Exception as e:  # zip, key and OS errors all mean "unreadable".
    raise UserError(f"cannot read {path}: {e}") from e
  return images, h


def run_compress(config, workdir: str) -> str:
  model, variables, step, chosen = _model(config, workdir)
  images, h = read_images(config.compress.input, model)
  data = compression.compress(model, variables, images, h)
  if jax.process_index() == 0:
    epath.Path(config.compress.output).write_bytes(data)
    print(f"{len(images)} images -> {config.compress.output}: {len(data)} bytes, "
          f"{compression.bits_per_subpixel(data):.4f} bits per sub-pixel "
          f"(step {step}, {chosen} weights)", flush=True)
  return config.compress.output


def run_decompress(config, workdir: str) -> str:
  model, variables, _, _ = _model(config, workdir)
  out = config.compress.output
  if not out.endswith(".npz") and model.conditioning != "none":
    raise UserError(f"a folder of PNGs holds no '{_condition_key(model)}' for this "
                    f"model's conditioning: name an .npz as config.compress.output")
  try:
    data = epath.Path(config.compress.input).read_bytes()
  except OSError as e:
    raise UserError(f"cannot read {config.compress.input}: {e.strerror}") from e
  images = compression.decompress(model, variables, data)
  if jax.process_index() == 0:
    if out.endswith(".npz"):
      h = compression.stored_condition(data)
      extra = {} if h is None else {"label" if h.ndim == 1 else "vector": h}
      np.savez(out, image=images, **extra)
    else:
      os.makedirs(out, exist_ok=True)
      for i, image in enumerate(images):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            os.path.join(out, f"{i:06d}.png"))
    print(f"{len(images)} images -> {out}", flush=True)
  return out
