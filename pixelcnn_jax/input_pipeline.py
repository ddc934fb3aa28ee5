"""Per-process batches: a step-indexed training stream and padded eval batches.

The training order is a pure function of (seed, step): a resumed run sees the
same batches as an uninterrupted one, and every process slices the same global
batch, reading only its own part.
"""

import concurrent.futures
import math
from typing import Iterator, Optional

import jax
import numpy as np

from pixelcnn_jax import conditioning
from pixelcnn_jax.errors import UserError


def _cond_input(labels, vectors, model_cfg, where: str):
  """The h fed to the model for a batch, checked on the host: conditioning
  labels or vectors, or the identities that an embedding's loss needs."""
  if model_cfg.kind == "embedding":
    return labels
  if model_cfg.kind != "pixelcnn" or model_cfg.conditioning == "none":
    return None
  if model_cfg.num_classes > 0:
    try:
      conditioning.check_labels(labels, model_cfg.num_classes, where)
    except ValueError as e:
      raise UserError(str(e)) from e
    return labels
  if vectors is None:
    raise UserError(f"{where}: conditioning={model_cfg.conditioning!r} with vectors "
                     "needs config.data.vector_file")
  return vectors


class TrainStream:
  """Global batch `step` = positions [step*B, (step+1)*B) of an endless
  sequence of per-epoch permutations; this process reads its slice."""

  def __init__(self, split, global_batch: int, seed: int, model_cfg,
               random_flip: bool = False, random_shift: int = 0):
    self.split, self.global_batch, self.seed = split, global_batch, seed
    self.model_cfg, self.random_flip = model_cfg, random_flip
    self.random_shift = random_shift
    self.local_batch = global_batch // jax.process_count()
    self._perms = {}

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      # A batch spans at most two epochs, so two cached permutations suffice.
      self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1}
      self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(
          len(self.split))
    return self._perms[epoch]

  def indices(self, step: int) -> np.ndarray:
    n = len(self.split)
    start = step * self.global_batch + jax.process_index() * self.local_batch
    pos = np.arange(start, start + self.local_batch)
    epochs, offsets = pos // n, pos % n
    out = np.empty_like(pos)
    for epoch in np.unique(epochs):
      sel = epochs == epoch
      out[sel] = self._perm(int(epoch))[offsets[sel]]
    return out

  def batch(self, step: int) -> dict:
    indices = self.indices(step)
    images, labels, vectors = self.split.read(indices)
    # Augmentations are functions of (seed, step) and the global position, so
    # a resumed or re-sharded run sees the same batches.
    first = jax.process_index() * self.local_batch
    mine = slice(first, first + self.local_batch)
    if self.random_flip:  # Mirror half the images.
      mirror = np.random.default_rng([self.seed, step, 1]).random(
          self.global_batch)[mine] < 0.5
      # Only the mirrored images are copied: np.where over the whole batch
      # took 4x as long (experiments/RESULTS.md).
      images = images.copy()
      images[mirror] = images[mirror, :, ::-1]
    if self.random_shift:
      k = self.random_shift
      shifts = np.random.default_rng([self.seed, step, 2]).integers(
          -k, k + 1, (self.global_batch, 2))[mine]
      images = _shift(images, shifts, k)
    return {"image": images,
            "h": _cond_input(labels, vectors, self.model_cfg, "training data")}

  def iterate(self, first_step: int, prefetch: int = 2) -> Iterator[dict]:
    """Batches for first_step, first_step + 1, ..., read ahead on a thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      pending = [pool.submit(self.batch, first_step + i) for i in range(prefetch)]
      step = first_step + prefetch
      while True:
        yield pending.pop(0).result()
        pending.append(pool.submit(self.batch, step))
        step += 1


def _shift(images_BHWC, shifts_B2, k: int):
  """Each image moved by (dy, dx) pixels, the border repeated into the gap
  (MNIST's border is background, so digits move over blank paper)."""
  H, W = images_BHWC.shape[1:3]
  padded = np.pad(images_BHWC, ((0, 0), (k, k), (k, k), (0, 0)), mode="edge")
  return np.stack([padded[i, k - dy:k - dy + H, k - dx:k - dx + W]
                   for i, (dy, dx) in enumerate(shifts_B2)])


def eval_batches(split, global_batch: int, model_cfg,
                 limit: Optional[int] = None) -> Iterator[dict]:
  """Every example of `split` once (the first `limit` if given), in order.

  The last global batch is padded with copies of example 0 whose mask is 0, so
  no example is dropped and all batches keep one shape (one compilation).
  """
  n = len(split) if limit is None else min(limit, len(split))
  local = global_batch // jax.process_count()
  for b in range(math.ceil(n / global_batch)):
    pos = b * global_batch + jax.process_index() * local + np.arange(local)
    mask = pos < n
    images, labels, vectors = split.read(np.where(mask, pos, 0))
    yield {"image": images,
           "h": _cond_input(labels, vectors, model_cfg, "eval data"),
           "mask": mask.astype(np.float32)}
