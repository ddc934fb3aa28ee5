"""Exact discrete log-likelihood of 8-bit images under 256-way softmaxes."""

import math

import jax
import jax.numpy as jnp

NUM_LEVELS = 256


def _nll_per_subpixel(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  logits = logits_BHWCK.astype(jnp.float32)
  # The target's logit through a comparison rather than a gather: its
  # gradient is then elementwise, fused with the softmax's into one pass.
  target = x_BHWC.astype(jnp.int32)[..., None] == jnp.arange(NUM_LEVELS)
  picked = jnp.sum(jnp.where(target, logits, 0.0), axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - picked


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
