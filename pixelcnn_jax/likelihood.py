"""Exact discrete log-likelihood of 8-bit images under 256-way softmaxes."""

import math

import jax
import jax.numpy as jnp
from jax import lax

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


def subpixel_nll(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  """-log softmax(logits)[x] per sub-pixel, float32, unchecked."""
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
  check_images(x_BHWC)
  return mean_bits(subpixel_nll(logits_BHWCK, x_BHWC))


def check_images(x_BHWC: jax.Array) -> None:
  """Raises ValueError in one line unless x holds integer images 0..255; the
  values are checked whenever they are concrete (not under jit)."""
  if not jnp.issubdtype(x_BHWC.dtype, jnp.integer):
    raise ValueError(f"images must be integers 0..255 (e.g. uint8), got "
                     f"{x_BHWC.dtype}; pass the 8-bit images, not normalised floats")
  if not isinstance(x_BHWC, jax.core.Tracer) and x_BHWC.size:
    low, high = int(jnp.min(x_BHWC)), int(jnp.max(x_BHWC))
    if low < 0 or high >= NUM_LEVELS:
      raise ValueError(f"image values must be in 0..255, got {low}..{high}")


def mean_bits(nll_B: jax.Array) -> jax.Array:
  """Bits/dim per image, float32 [B], from each sub-pixel's NLL in nats [B, ...]."""
  # Bits per sub-pixel first, then the mean: uniform logits give exactly 8.0
  # instead of a sum of H*W*C roundings.
  return jnp.mean(nll_B / math.log(2.0), axis=tuple(range(1, nll_B.ndim)))
