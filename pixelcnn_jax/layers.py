"""Building blocks: colour masks, shifted convolutions and the colour-grouped gate.

Causality comes from geometry, not masks: every spatial convolution here has a
kernel that only covers the past (rows above, or columns to the left plus the
centre), and the caller chooses the padding that shifts it into place. Masks
remain only where the R -> G -> B order needs them: on the centre tap of the
horizontal convolution and on 1x1 convolutions between colour-grouped features.
"""

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Padding = Sequence[tuple[int, int]]


def channel_colours(num_channels: int, num_colours: int) -> np.ndarray:
  """Colour id of each channel when `num_channels` are split into equal groups."""
  if num_channels % num_colours:
    raise ValueError(
        f"{num_channels} channels cannot be split into {num_colours} colour groups")
  return np.arange(num_channels) // (num_channels // num_colours)


def gated_colours(features: int, num_colours: int) -> np.ndarray:
  """Colour ids of the 2p pre-activation maps: [tanh half | sigmoid half].

  Both halves use the same grouping, so `gate` pairs channel k of the tanh half
  with channel k of the sigmoid half: always the same colour.
  """
  return np.tile(channel_colours(features, num_colours), 2)


def colour_mask(in_colours: np.ndarray, out_colours: np.ndarray,
                include_same: bool) -> np.ndarray:
  """[in, out] 0/1 mask: output colour c may read input colour c' < c (or <= c)."""
  if include_same:
    allowed = in_colours[:, None] <= out_colours[None, :]
  else:
    allowed = in_colours[:, None] < out_colours[None, :]
  return allowed.astype(np.float32)


def pad_channels(x: jax.Array, axis: int, multiple: int) -> jax.Array:
  """x with zeros appended along `axis` up to a multiple of `multiple`.

  GPU convolution and matmul kernels want channel counts that are multiples
  of 8; given others, cuDNN pads every operand itself, in a pass of its own
  before each call. Zeros appended here add nothing to any sum, and XLA can
  fuse the padding into the op that makes x.
  """
  extra = -x.shape[axis] % multiple
  if not extra:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths)


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias in y's dtype. The bias is broadcast before it is cast, so that
  autodiff sums its gradient in float32: cast first, a bf16 y's bias gradient
  would be a bf16 sum over every position, rounded to 8 bits."""
  return y + jnp.broadcast_to(bias, y.shape).astype(y.dtype)


def gate(pre: jax.Array) -> jax.Array:
  """y = tanh(f) * sigmoid(g), with [f | g] stacked on the last axis."""
  f, g = jnp.split(pre, 2, axis=-1)
  return jnp.tanh(f) * jax.nn.sigmoid(g)


class ShiftedConv(nn.Module):
  """A 2D convolution whose placement is chosen per call by explicit padding.

  The same parameters serve the full-image forward pass (padding shifts the
  kernel so it only sees the past) and the cached sampler (padding (0, 0) on
  an explicit window of past rows or columns), so both compute the same sums.

  `centre_mask` ([in, out]) multiplies the last tap of the last kernel row,
  which is the current pixel for the horizontal stack's (1 x k) kernel.
  `channel_align` > 1 computes with input and output channels padded to its
  multiples (pad_channels); the parameters keep their true shapes.
  """
  features: int
  kernel_size: tuple[int, int]
  centre_mask: Optional[np.ndarray] = None
  dtype: Any = jnp.float32
  precision: Any = None
  channel_align: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, padding: Padding) -> jax.Array:
    in_features = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, in_features, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    if self.centre_mask is not None:
      tap_mask = np.ones(kernel.shape, np.float32)
      tap_mask[-1, -1] = self.centre_mask
      kernel = kernel * tap_mask
    a = self.channel_align
    y = jax.lax.conv_general_dilated(
        pad_channels(x.astype(self.dtype), 3, a),
        pad_channels(pad_channels(kernel.astype(self.dtype), 2, a), 3, a),
        window_strides=(1, 1), padding=tuple(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=self.precision)
    return add_bias(y[..., :self.features], bias)


class MaskedDense(nn.Module):
  """A 1x1 convolution with an optional [in, out] colour mask; `channel_align`
  as in ShiftedConv."""
  features: int
  mask: Optional[np.ndarray] = None
  use_bias: bool = True
  dtype: Any = jnp.float32
  precision: Any = None
  channel_align: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init,
                        (x.shape[-1], self.features), jnp.float32)
    if self.mask is not None:
      kernel = kernel * self.mask
    a = self.channel_align
    y = jnp.einsum("...i,io->...o", pad_channels(x.astype(self.dtype), -1, a),
                   pad_channels(pad_channels(kernel.astype(self.dtype), 0, a), 1, a),
                   precision=self.precision)[..., :self.features]
    if self.use_bias:
      y = add_bias(y, self.param("bias", nn.initializers.zeros, (self.features,),
                                 jnp.float32))
    return y
