"""Exact discrete log-likelihood of 8-bit images under 256-way softmaxes."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pixelcnn_jax import conditioning

NUM_LEVELS = 256


def _is_target(x):
  """[..., 256] booleans, true at each sub-pixel's value."""
  return x.astype(jnp.int32)[..., None] == jnp.arange(NUM_LEVELS)


def _rescaled(s, m, m_new):
  # m == m_new also covers m = m_new = -inf, where exp(m - m_new) is nan.
  return jnp.where(m == m_new, s, s * jnp.exp(m - m_new))


def _combine(a, b):
  """Merges two partial (max, sum of exp(logit - max), target's logit)."""
  (m1, s1, p1), (m2, s2, p2) = a, b
  m = jnp.maximum(m1, m2)
  return m, _rescaled(s1, m1, m) + _rescaled(s2, m2, m), p1 + p2


@jax.custom_vjp
def _nll(logits, x):
  return _nll_fwd(logits, x)[0]


def _nll_fwd(logits, x):
  # An online log-sum-exp: the max, the sum of exponentials and the target's
  # logit in one pass over the float32 logits, where logsumexp and the
  # target's pick read them three times. The target is picked by a
  # comparison, not a gather, so the gradient below stays elementwise. JAX
  # cannot differentiate a reduce with its own combiner, hence the custom VJP.
  m, s, picked = lax.reduce(
      (logits, jnp.ones_like(logits), jnp.where(_is_target(x), logits, 0.0)),
      (jnp.float32(-jnp.inf), jnp.float32(0), jnp.float32(0)),
      _combine, (logits.ndim - 1,))
  lse = m + jnp.log(s)
  return lse - picked, (logits, lse, x)


def _nll_bwd(residuals, g):
  logits, lse, x = residuals
  return g[..., None] * (jnp.exp(logits - lse[..., None]) - _is_target(x)), None


_nll.defvjp(_nll_fwd, _nll_bwd)


def _nll_per_subpixel(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  return _nll(logits_BHWCK.astype(jnp.float32), x_BHWC)


def bits_per_dim(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  """-log2 p(x) / (H * W * C) per image, float32 [B].

  logits: float [B, H, W, C, 256]; x: integer images with values 0..255
  (uint8, not normalised floats). Shapes and dtypes are always checked, the
  values of x whenever they are concrete (not under jit).
  """
  if (logits_BHWCK.ndim != 5 or logits_BHWCK.shape[-1] != NUM_LEVELS
      or logits_BHWCK.shape[:-1] != x_BHWC.shape):
    raise ValueError(f"logits {tuple(logits_BHWCK.shape)} do not match images "
                     f"{tuple(x_BHWC.shape)}: expected logits [B, H, W, C, 256]")
  if not jnp.issubdtype(logits_BHWCK.dtype, jnp.floating):
    raise ValueError(f"logits must be floating point, got {logits_BHWCK.dtype}")
  if not jnp.issubdtype(x_BHWC.dtype, jnp.integer):
    raise ValueError(f"images must be integers 0..255 (e.g. uint8), got "
                     f"{x_BHWC.dtype}; pass the 8-bit images, not normalised floats")
  if not isinstance(x_BHWC, jax.core.Tracer) and x_BHWC.size:
    low, high = int(jnp.min(x_BHWC)), int(jnp.max(x_BHWC))
    if low < 0 or high >= NUM_LEVELS:
      raise ValueError(f"image values must be in 0..255, got {low}..{high}")
  # Bits per sub-pixel first, then the mean: uniform logits give exactly 8.0
  # instead of a sum of H*W*C roundings.
  bits = _nll_per_subpixel(logits_BHWCK, x_BHWC) / math.log(2.0)
  return jnp.mean(bits, axis=(1, 2, 3))


def image_bits_per_dim(model, variables, images, h=None, batch_size: int = 128) -> np.ndarray:
  """bits_per_dim of each image under a GatedPixelCNN, float32 [N], in the
  images' order: `batch_size` images at a time through one jitted forward
  pass on the default device, the last batch padded so that one compilation
  serves them all.

  images: integer [N, H, W, C], values 0..255, C = model.channels, any H
  and W. h: as for model.apply, one row per image (labels [N] or vectors
  [N, D]), or None for an unconditional model. A batch's float32 logits take
  batch_size * H * W * C KiB.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  images = np.asarray(images)
  if (images.ndim != 4 or images.shape[-1] != model.channels or not len(images)
      or not np.issubdtype(images.dtype, np.integer)):
    raise ValueError(f"images must be integers 0..255 [N, H, W, {model.channels}] with "
                     f"N >= 1, got {images.dtype} {images.shape}")
  low, high = int(images.min()), int(images.max())
  if low < 0 or high >= NUM_LEVELS:
    raise ValueError(f"image values must be in 0..255, got {low}..{high}")
  num = len(images)
  if h is not None:
    h = np.asarray(h)
    if model.num_classes > 0:
      conditioning.check_labels(h, model.num_classes, "h")
  # Checked on the host, so that a bad h fails before any compilation.
  conditioning.embed(h, model.conditioning, model.num_classes, model.cond_dim, num)
  batch = min(batch_size, num)
  padded = -(-num // batch) * batch

  def pad(a):
    return None if a is None else np.concatenate([a, np.repeat(a[:1], padded - num, axis=0)])

  images, h = pad(images.astype(np.uint8)), pad(h)
  values = [_batch_bits_per_dim(model, variables, images[i:i + batch],
                                None if h is None else h[i:i + batch])
            for i in range(0, padded, batch)]
  return np.concatenate(jax.device_get(values)).astype(np.float32)[:num]


@functools.partial(jax.jit, static_argnums=0)
def _batch_bits_per_dim(model, variables, images, h):
  return bits_per_dim(model.apply(variables, images, h=h), images)
