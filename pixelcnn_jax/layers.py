"""Building blocks: colour masks, shifted convolutions and the colour-grouped gate.

Causality comes from geometry, not masks: every spatial convolution here has a
kernel that only covers the past (rows above, or columns to the left plus the
centre), and the caller chooses the padding that shifts it into place. Masks
remain only where the R -> G -> B order needs them: on the centre tap of the
horizontal convolution and on 1x1 convolutions between colour-grouped features.
"""

import functools
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
  return pad_to(x, axis, aligned_width(x.shape[axis], multiple))


def pad_to(x: jax.Array, axis: int, size: int) -> jax.Array:
  """x with zeros appended along `axis` up to `size` entries."""
  if x.shape[axis] == size:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, widths)


def aligned_width(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def with_ones(x: jax.Array, size: int) -> jax.Array:
  """x, then a channel of ones, then zeros up to `size` channels."""
  # A pad plus a constant, not a concatenate: XLA fuses both into the op that
  # makes x, where a concatenate at an unaligned channel runs at a third of
  # the memory rate (experiments/RESULTS.md).
  return add_ones(pad_to(x, -1, size), x.shape[-1])


def add_ones(x: jax.Array, index: int) -> jax.Array:
  """x plus 1 at channel `index`: a ones channel in x's padding, where
  one fits, for the next kernel to fold its bias from (fold_bias)."""
  if index >= x.shape[-1]:
    return x
  one_hot = np.zeros(x.shape[-1], np.float32)
  one_hot[index] = 1
  return x + jnp.asarray(one_hot, x.dtype)


def fold_bias(kernel: jax.Array, bias: jax.Array, tap: tuple, in_features: int,
              ones_out: bool = False) -> jax.Array:
  """An aligned [..., in, out] kernel that adds `bias` from the input's ones
  channel (index in_features) at `tap`, and with ones_out copies that channel
  to the first output channel past the bias, where the padding has room.

  The bias's gradient is then a row of the kernel's, which the convolution's
  or matmul's weight gradient computes anyway, instead of a pass over every
  position of its own (experiments/RESULTS.md). In bf16 that row is a float32
  sum rounded once to bf16, as every kernel gradient is.
  """
  kernel = kernel.at[(*tap, in_features, slice(0, bias.shape[0]))].set(bias)
  if ones_out and kernel.shape[-1] > bias.shape[0]:
    kernel = kernel.at[(*tap, in_features, bias.shape[0])].set(1)
  return kernel


def aligned_operands(x: jax.Array, kernel: jax.Array, in_features: int, features: int,
                     multiple: int, fold: bool) -> tuple[jax.Array, jax.Array, bool]:
  """x and an [..., in, out] kernel padded to the aligned widths, and whether
  the bias folds: where asked and the padding has room for a ones channel,
  which x then carries (x at its true width is given one)."""
  size = aligned_width(in_features, multiple)
  fold = fold and size > in_features
  if fold and x.shape[-1] == in_features:
    x = with_ones(x, size)
  x = pad_channels(x, -1, multiple)
  kernel = pad_to(pad_to(kernel, -2, x.shape[-1]), -1, aligned_width(features, multiple))
  return x, kernel, fold


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias in y's dtype. The bias is broadcast before it is cast, so that
  autodiff sums its gradient in float32: cast first, a bf16 y's bias gradient
  would be a bf16 sum over every position, rounded to 8 bits."""
  return y + jnp.broadcast_to(bias, y.shape).astype(y.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def dot_float32_out(x: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
  """x @ kernel over x's last axis, both in the compute dtype, accumulated and
  returned in float32."""
  return jnp.einsum("...i,io->...o", x, kernel, precision=precision,
                    preferred_element_type=jnp.float32)


@dot_float32_out.defjvp
def _dot_float32_out_jvp(precision, primals, tangents):
  (x, kernel), (dx, dkernel) = primals, tangents
  # The tangent is multiplied in the operands' dtype and only then widened,
  # so that the transpose (the gradient) rounds the float32 cotangent to it
  # first, as every other layer's cotangent is: otherwise both gradient
  # products multiply the float32 cotangent as TF32 GEMMs.
  dy = (jnp.einsum("...i,io->...o", dx, kernel, precision=precision)
        + jnp.einsum("...i,io->...o", x, dkernel, precision=precision))
  return dot_float32_out(x, kernel, precision), dy.astype(jnp.float32)


def gate(pre: jax.Array, features: Optional[int] = None,
         width: Optional[int] = None) -> jax.Array:
  """y = tanh(f) * sigmoid(g), with [f | g] stacked on the last axis; given
  `features`, pre may carry padding after them (an aligned width). Given
  `width`, y comes at that width, zeros after `features`."""
  p = pre.shape[-1] // 2 if features is None else features
  # One split, not slices: its gradient is one concatenate, zeros included.
  f, g, _ = jnp.split(pre, [p, 2 * p], axis=-1)
  if width is not None:
    # Padded before tanh, not after the product: the tanh(f) that the
    # backward pass keeps then has y's shape, so XLA writes both in one pass
    # over pre instead of a pass of its own for tanh(f) (experiments/RESULTS.md).
    f, g = pad_to(f, -1, width), pad_to(g, -1, width)
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
  `in_features` (default: x's channels) lets x carry padding after them, and
  `aligned=True` returns the output at its padded width: a model that keeps
  whole images at the aligned width never pads or crops a tensor between its
  kernels, nor its gradients. `fold=True` (aligned only, where the padding
  has room) adds the bias from a ones channel at index in_features, which x
  carries or, at its true width, is given (fold_bias). `extra_bias`
  ([features]) is added to the bias, for a caller that sums the output with
  another layer's whose bias is left to this one.
  """
  features: int
  kernel_size: tuple[int, int]
  centre_mask: Optional[np.ndarray] = None
  dtype: Any = jnp.float32
  precision: Any = None
  channel_align: int = 1
  in_features: Optional[int] = None

  @nn.compact
  def __call__(self, x: jax.Array, padding: Padding, aligned: bool = False,
               fold: bool = False, extra_bias: Optional[jax.Array] = None) -> jax.Array:
    in_features = self.in_features or x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, in_features, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    if extra_bias is not None:
      bias = bias + extra_bias
    if self.centre_mask is not None:
      tap_mask = np.ones(kernel.shape, np.float32)
      tap_mask[-1, -1] = self.centre_mask
      kernel = kernel * tap_mask
    x, kernel, fold = aligned_operands(x.astype(self.dtype), kernel, in_features,
                                       self.features, self.channel_align, aligned and fold)
    if fold:
      # The tap at (top, left) padding reads each output's own position,
      # which is inside the image, so its ones channel is 1 there.
      kernel = fold_bias(kernel, bias, (padding[0][0], padding[1][0]), in_features)
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(self.dtype), window_strides=(1, 1), padding=tuple(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=self.precision)
    if fold:
      return y
    if aligned:
      return add_bias(y, pad_to(bias, 0, y.shape[-1]))
    return add_bias(y[..., :self.features], bias)


class MaskedDense(nn.Module):
  """A 1x1 convolution with an optional [in, out] colour mask; `channel_align`,
  `in_features`, `aligned` and `fold` as in ShiftedConv; `ones_out=True` also
  writes ones at output channel `features`, for the next kernel to fold from. With
  `float32_out`, the product is accumulated and returned in float32 whatever
  the compute `dtype` (`dot_float32_out`). `with_bias=False` leaves the bias
  (still a parameter) for the caller to add elsewhere."""
  features: int
  mask: Optional[np.ndarray] = None
  use_bias: bool = True
  dtype: Any = jnp.float32
  precision: Any = None
  channel_align: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()
  in_features: Optional[int] = None
  float32_out: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, aligned: bool = False, fold: bool = False,
               ones_out: bool = False, with_bias: bool = True) -> jax.Array:
    in_features = self.in_features or x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
    if self.mask is not None:
      kernel = kernel * self.mask
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
            if self.use_bias else None)
    with_bias = with_bias and self.use_bias
    x, kernel, fold = self._operands(x, kernel, aligned and fold and with_bias)
    if fold:
      kernel = fold_bias(kernel, bias, (), in_features, ones_out)
    kernel = kernel.astype(self.dtype)
    if self.float32_out:
      y = dot_float32_out(x, kernel, self.precision)
    else:
      y = jnp.einsum("...i,io->...o", x, kernel, precision=self.precision)
    if not aligned:
      y = y[..., :self.features]
    if with_bias and not fold:
      y = add_bias(y, pad_to(bias, 0, y.shape[-1]))
    return y

  def _operands(self, x, kernel, fold):
    return aligned_operands(x.astype(self.dtype), kernel, self.in_features or x.shape[-1],
                            self.features, self.channel_align, fold)

  def operands(self, x: jax.Array) -> tuple[jax.Array, jax.Array, Optional[jax.Array]]:
    """(x, kernel, bias) as the layer multiplies them unaligned, without a
    folded bias: x and the masked kernel padded to the aligned widths and
    cast to the compute dtype, the bias in float32 (None without one). For a
    caller that fuses the product with what consumes it (head_loss); the
    layer must have been called once at init, which makes its parameters."""
    params = self.variables["params"]
    kernel = params["kernel"] if self.mask is None else params["kernel"] * self.mask
    x, kernel, _ = self._operands(x, kernel, False)
    return x, kernel.astype(self.dtype), params.get("bias")
