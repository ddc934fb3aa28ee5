"""Exact discrete log-likelihood of 8-bit images under 256-way softmaxes."""

import math

import jax
import jax.numpy as jnp


def _nll_per_subpixel(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(logits_BHWCK.astype(jnp.float32), axis=-1)
  target = x_BHWC.astype(jnp.int32)[..., None]
  return -jnp.take_along_axis(logp, target, axis=-1)[..., 0]


def bits_per_dim(logits_BHWCK: jax.Array, x_BHWC: jax.Array) -> jax.Array:
  """-log2 p(x) / (H * W * C) per image, float32 [B]."""
  if logits_BHWCK.shape[:-1] != x_BHWC.shape or logits_BHWCK.ndim != 5:
    raise ValueError(f"logits {tuple(logits_BHWCK.shape)} do not match images "
                     f"{tuple(x_BHWC.shape)}: expected logits [B, H, W, C, 256]")
  # Bits per sub-pixel first, then the mean: uniform logits give exactly 8.0
  # instead of a sum of H*W*C roundings.
  bits = _nll_per_subpixel(logits_BHWCK, x_BHWC) / math.log(2.0)
  return jnp.mean(bits, axis=(1, 2, 3))
