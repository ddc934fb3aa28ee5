"""A vertical layer's convolution and gate as one kernel (Mosaic GPU, Hopper).

At narrow widths a training step moves more bytes than it multiplies: in
XLA's step each vertical layer is cuDNN's convolution, which writes the
pre-activation, then a fusion that reads it back for the gate and writes the
next layer's input. The kernel here computes the convolution as an implicit
GEMM and takes the gate while the sums are still in registers, writing the
pre-activation (which the v->h link and the backward pass read) and the next
layer's input in one pass. The backward pass stays XLA's: the gate's
gradient in a fusion and cuDNN's gradient convolutions (a custom_vjp).

Layouts, the same on both paths, so that either gives the same numbers:
- x: [B, H, W, C_in], at the aligned width, with the ones channel that
  the folded bias reads (layers.fold_bias);
- pre: [B, H, W, 2 * half], f in [0, p) and g in [half, half + p), zeros
  elsewhere (layers.halves): the kernel keeps f's and g's sums in two
  accumulators, and takes the gate where their columns meet;
- y: the next layer's input, [B, H, W, C_out], the gate in [0, p), ones at
  p when there is room for them, zeros after.

The kernel is a persistent, warp-specialised loop after jax's Hopper matmul
example: one warpgroup copies each tap's block of x and of the kernel in
with TMA, two more multiply them with wgmma. A tap's block is a 3D copy
[rows, W, tile_k] whose rows and columns start above and left of the
image; TMA fills what lies outside the image with zeros, so that x needs
no padded copy. The copies are swizzled but not tiled (a tiled copy must
start on an 8-row tile), and each warpgroup loads its rows into registers,
from which wgmma takes its left operand.
"""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax import lax

from pixelcnn_jax import gate_conv_kernel
from pixelcnn_jax import layers

TILE_M, TILE_K = gate_conv_kernel.TILE_M, gate_conv_kernel.TILE_K
MAX_HALF = 160  # f's and g's float32 sums for TILE_M rows must fit the registers.
SMEM_BYTES = 227 * 1024


def conv(x_BHWC: jax.Array, kernel: jax.Array, precision: Any = None) -> jax.Array:
  """The vertical convolution: k // 2 + 1 rows of k taps, over the rows
  above and the own row of the (already shifted) input."""
  m = kernel.shape[1] // 2
  return lax.conv_general_dilated(x_BHWC, kernel, (1, 1), ((m, 0), (m, m)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=precision)


def next_input(pre: jax.Array, features: int, half: int, out_width: int) -> jax.Array:
  """The gate of a halves-layout pre-activation, as the next layer's input:
  out_width channels, ones at `features` when out_width leaves room."""
  y = jnp.tanh(pre[..., :features]) * jax.nn.sigmoid(pre[..., half:half + features])
  if out_width > features:
    return layers.with_ones(y, out_width)
  return y


def vertical_gate(x_BHWC: jax.Array, kernel: jax.Array, bias: Optional[jax.Array] = None,
                  addend: Optional[jax.Array] = None, *, features: int, half: int,
                  out_width: int, use_kernel: bool = False,
                  precision: Any = None) -> tuple[jax.Array, jax.Array]:
  """(the next layer's input, pre) of one vertical layer, in the layouts above.

  kernel: [k // 2 + 1, k, C_in, 2 * half] in the compute dtype; bias (when
  not folded into the kernel) and addend (the conditioning's V h) are added
  to the pre-activation. With use_kernel, the Mosaic kernel computes the
  forward pass where `fits` says it can; everything else is XLA's.
  """
  if use_kernel and bias is None and addend is None and on_hopper() and fits(
      x_BHWC.shape, kernel.shape, x_BHWC.dtype, features, half, out_width):
    return _fused(x_BHWC, kernel, features, half, out_width)
  pre = conv(x_BHWC, kernel, precision)
  if bias is not None:
    pre = layers.add_bias(pre, bias)
  if addend is not None:
    pre = pre + addend
  return next_input(pre, features, half, out_width), pre


def on_hopper() -> bool:
  """Whether the default device is a Hopper GPU (compute capability 9.x),
  the only one Mosaic GPU's wgmma runs on."""
  device = jax.devices()[0]
  return device.platform == "gpu" and str(getattr(device, "compute_capability", "")).startswith("9")


def fits(x_shape, kernel_shape, dtype, features: int, half: int, out_width: int) -> bool:
  """Whether the kernel takes these operands: bf16; whole rows of W that
  divide a warpgroup's 64 positions, and images of whole 128-position
  blocks; channels in whole copies; f's and g's sums within the registers;
  and the shared memory for at least three stages."""
  _, height, width, c_in = x_shape
  return (jnp.dtype(dtype) == jnp.bfloat16 and TILE_M % width == 0 and width % 8 == 0
          and height * width % (2 * TILE_M) == 0 and c_in % TILE_K == 0
          and kernel_shape[2] == c_in and kernel_shape[3] == 2 * half
          and half % 16 == 0 and half <= MAX_HALF and out_width % 16 == 0
          and out_width >= half and stages(half, out_width) >= 3)


def stages(half: int, out_width: int) -> int:
  """How many of the pipeline's buffers (a tap's block of x and of f's and
  g's kernels) fit the shared memory beside the epilogue's tiles, at most 5."""
  per_stage = 2 * TILE_M * TILE_K * 2 + 2 * half * TILE_K * 2
  epilogue = 2 * (2 * TILE_M * half + TILE_M * (out_width - half)) * 2
  return min(5, (SMEM_BYTES - epilogue) // per_stage)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _fused(x_BHWC, kernel, features, half, out_width):
  return gate_conv_kernel.forward(x_BHWC, kernel, features, half, out_width,
                                  stages(half, out_width))


def _fused_fwd(x_BHWC, kernel, features, half, out_width):
  y, pre = _fused(x_BHWC, kernel, features, half, out_width)
  return (y, pre), (x_BHWC, kernel, pre)


def _fused_bwd(features, half, out_width, residuals, cotangents):
  x_BHWC, kernel, pre = residuals
  dy, dpre = cotangents
  _, gate_vjp = jax.vjp(lambda p: next_input(p, features, half, out_width), pre)
  _, conv_vjp = jax.vjp(conv, x_BHWC, kernel)
  return conv_vjp(dpre + gate_vjp(dy)[0])


_fused.defvjp(_fused_fwd, _fused_bwd)
