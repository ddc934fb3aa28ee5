"""PNG grids of uint8 images."""

import os

import numpy as np
from PIL import Image


def save_grid(path: str, images_NHWC: np.ndarray, columns: int, pad: int = 1) -> str:
  """Tiles images row-major, `columns` per row, with `pad` white pixels between."""
  images_NHWC = np.asarray(images_NHWC, np.uint8)
  n, h, w, c = images_NHWC.shape
  rows = -(-n // columns)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for idx, image in enumerate(images_NHWC):
    r, col = divmod(idx, columns)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = image
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
  return path
