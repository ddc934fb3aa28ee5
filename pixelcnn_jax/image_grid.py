"""PNG grids of uint8 images."""

import jax
import numpy as np
from etils import epath
from PIL import Image

from pixelcnn_jax import output_dir


def save_grid(path: str, images_NHWC: np.ndarray, columns: int, pad: int = 1,
              replace: bool = True) -> str:
  """Tiles images row-major, `columns` per row, with `pad` white pixels between.

  With replace=False an existing file at `path` is kept and the grid goes to
  `output_dir.unused(path)`. Only process 0 writes, and returns the path it
  wrote; the other processes get `path` back.
  """
  if jax.process_index() != 0:
    return path
  if not replace:
    path = output_dir.unused(path)
  images_NHWC = np.asarray(images_NHWC, np.uint8)
  n, h, w, c = images_NHWC.shape
  rows = -(-n // columns)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for idx, image in enumerate(images_NHWC):
    r, col = divmod(idx, columns)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = image
  out = epath.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  with out.open("wb") as f:
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(f, format="PNG")
  return path
