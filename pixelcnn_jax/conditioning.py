"""Conditioning inputs: class labels, embedding vectors and spatial maps.

The kind of h is fixed by the model: integer labels [B] when num_classes > 0,
else float vectors [B, cond_dim]. `class` and `vector` add V^T h in every layer
(eq. 4); `spatial` first maps h through a deconvolutional net to s [B, H, W, k]
and adds the 1x1 convolution V * s (eq. 5).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

MODES = ("none", "class", "vector", "spatial")


def validate(mode: str, num_classes: int, cond_dim: int) -> None:
  if mode not in MODES:
    raise ValueError(f"conditioning must be one of {MODES}, got {mode!r}")
  if mode == "class" and num_classes <= 0:
    raise ValueError("conditioning='class' needs num_classes > 0")
  if mode == "vector" and (cond_dim <= 0 or num_classes > 0):
    raise ValueError("conditioning='vector' needs cond_dim > 0 and num_classes = 0")
  if mode == "spatial" and num_classes <= 0 and cond_dim <= 0:
    raise ValueError("conditioning='spatial' needs num_classes > 0 (labels) "
                     "or cond_dim > 0 (vectors)")


def validate_noise(cond_noise: float, mode: str, num_classes: int) -> None:
  if cond_noise < 0:
    raise ValueError(f"cond_noise must be >= 0, got {cond_noise}")
  if cond_noise > 0 and (mode not in ("vector", "spatial") or num_classes > 0):
    raise ValueError("cond_noise > 0 perturbs a real vector h; it needs conditioning "
                     f"'vector' or 'spatial' with vectors, got {mode!r}"
                     + (" with labels" if num_classes > 0 else ""))


def embed(h, mode: str, num_classes: int, cond_dim: int, batch: int):
  """Checks h against the model and returns it as float [B, 1, 1, D], or None."""
  if mode == "none":
    if h is not None:
      raise ValueError("this model is unconditional (conditioning='none'); "
                       "do not pass h")
    return None
  if h is None:
    raise ValueError(f"this model has conditioning={mode!r}; pass h")
  h = jnp.asarray(h)
  if num_classes > 0:
    if h.shape != (batch,) or not jnp.issubdtype(h.dtype, jnp.integer):
      raise ValueError(f"h must be integer class labels of shape ({batch},), got "
                       f"{h.dtype} {tuple(h.shape)}")
    if not isinstance(h, jax.core.Tracer):
      # Concrete labels are checked; under jit an out-of-range label would
      # silently become an all-zero one-hot (the CLI, the data pipeline and
      # the samplers check labels on the host before they trace).
      check_labels(np.asarray(h), num_classes, "h")
    vec = jax.nn.one_hot(h, num_classes, dtype=jnp.float32)
  else:
    if h.shape != (batch, cond_dim) or not jnp.issubdtype(h.dtype, jnp.floating):
      raise ValueError(f"h must be float vectors of shape ({batch}, {cond_dim}), got "
                       f"{h.dtype} {tuple(h.shape)}")
    vec = h.astype(jnp.float32)
  return vec[:, None, None, :]


def check_on_host(h, model, batch: int, where: str) -> None:
  """Checks h against a GatedPixelCNN's conditioning, labels' range included,
  on the host: a caller that checks before it traces fails before any
  compilation, and jit cannot see a bad label."""
  if h is not None and model.num_classes > 0:
    check_labels(np.asarray(h), model.num_classes, where)
  embed(None if h is None else np.asarray(h), model.conditioning, model.num_classes,
        model.cond_dim, batch)


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
  """Host-side range check: one-hot would silently map a bad label to zeros."""
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels[(labels < 0) | (labels >= num_classes)][0]
    raise ValueError(f"{where}: label {int(bad)} is outside 0..{num_classes - 1}")


class SpatialConditioner(nn.Module):
  """m(h): a small deconvolutional net from a vector to a map [B, H, W, k]."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vec_BD: jax.Array, height: int, width: int) -> jax.Array:
    h0, w0 = -(-height // 4), -(-width // 4)
    wide = 2 * self.features
    y = nn.Dense(h0 * w0 * wide, dtype=self.dtype)(vec_BD)
    y = nn.relu(y.reshape(-1, h0, w0, wide))
    y = nn.relu(nn.ConvTranspose(wide, (4, 4), (2, 2), dtype=self.dtype)(y))
    y = nn.ConvTranspose(self.features, (4, 4), (2, 2), dtype=self.dtype)(y)
    return y[:, :height, :width]
