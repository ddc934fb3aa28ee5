"""The head's last 1x1 and the likelihood as a GPU kernel that never writes
the logits.

A training step's float32 logits are the largest tensor it makes (256 per
sub-pixel: 805 MB at batch 256 of CIFAR-10). XLA writes them from the 1x1's
matmul, reads them for the log-sum-exp and again for their gradient. Here a
Pallas (Triton) kernel makes them block by block in registers, in float32,
and keeps each sub-pixel's NLL; when a gradient is wanted, also softmax
minus one-hot in the compute dtype, half the logits' bytes. The backward
pass scales that by each image's cotangent on the smaller side of its two
products (experiments/RESULTS.md). Each program owns one colour and loops
over row blocks, loading that colour's weights once: a program per block
loaded all of them per block, 2 GB a step from L2 at batch 256.

`image_bits` takes the 1x1's operands as `layers.MaskedDense.operands` gives
them and uses the kernel on a GPU where `kernel_fits`, XLA's ops elsewhere.
Rows split over devices stay split: each device runs the kernel on its own
(XLA's ops on a device whose share is not whole blocks).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.custom_partitioning import custom_partitioning
from jax.experimental.pallas import triton as pltriton
from jax.sharding import NamedSharding, PartitionSpec as P

from pixelcnn_jax import layers, likelihood
from pixelcnn_jax.likelihood import NUM_LEVELS

# (rows per block, warps, pipeline stages) without and with the residual
# (experiments/bench_head_loss.py).
CONFIG = ((64, 4, 1), (32, 4, 2))
# Programs over all colours: two per SM of an H100 (132 SMs) was faster than
# one or three (experiments/RESULTS.md).
PROGRAMS = 264
# Heads wider than this keep XLA's ops, which were faster at 384
# (experiments/RESULTS.md).
MAX_DEPTH = 256
# Triton's tensors have power-of-two sizes and its matmuls a depth of 16 or more.
MIN_CHUNK = 16
# Where the kernel runs; elsewhere XLA's ops (tests add "cpu": the kernel
# then runs in Pallas's interpreter).
BACKENDS = ("gpu",)
LOG2E = 1.0 / math.log(2.0)


def kernel_fits(rows: int, depth: int, dtype, config=CONFIG) -> bool:
  """Whether the kernel takes rows x depth inputs of `dtype`: whole blocks of
  rows, a depth made of power-of-two chunks, 16-bit operands (float32 ones
  keep XLA's matmuls and their precision)."""
  return (all(rows % block == 0 for block, *_ in config)
          and depth % MIN_CHUNK == 0
          and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)))


def _chunks(depth: int) -> tuple[tuple[int, int], ...]:
  """(start, size) of power-of-two chunks covering 0..depth, largest first,
  so that each starts at a multiple of its size."""
  out, start = [], 0
  for bit in reversed(range(depth.bit_length())):
    size = 1 << bit
    if depth - start >= size:
      out.append((start, size))
      start += size
  return tuple(out)


def _exp(x, interpret: bool):
  if interpret:
    return jnp.exp(x)
  # The hardware's 2^x: libdevice's expf, which jnp.exp lowers to, takes
  # several instructions more a logit.
  return pltriton.elementwise_inline_asm(
      "ex2.approx.ftz.f32 $0, $1;", args=[x * LOG2E], constraints="=f,f", pack=1,
      result_shape_dtypes=[jax.ShapeDtypeStruct.like(x)])[0]


def _kernel(x_ref, w_ref, b_ref, t_ref, nll_ref, *residual_ref, block, blocks, chunks, interpret):
  """One colour (w, b, t, nll and the residual are that colour's) over the
  row blocks p, p + programs, ...; the last steps of some programs redo the
  last block, writing what it wrote."""
  p, programs = pl.program_id(0), pl.num_programs(0)
  w_chunks = [w_ref[pl.ds(start, size), :] for start, size in chunks]
  bias = b_ref[...]

  def row_block(j, carry):
    rows = pl.ds(pl.multiple_of(jnp.minimum(p + j * programs, blocks - 1) * block, block), block)
    logits = bias[None, :]
    for (start, size), w in zip(chunks, w_chunks):
      logits = logits + jnp.dot(x_ref[rows, pl.ds(start, size)], w,
                                preferred_element_type=jnp.float32)
    m = jnp.max(logits, axis=1)
    e = _exp(logits - m[:, None], interpret)
    s = jnp.sum(e, axis=1)
    is_target = (lax.broadcasted_iota(jnp.int32, logits.shape, 1)
                 == t_ref[rows].astype(jnp.int32)[:, None])
    picked = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
    nll_ref[rows] = m + jnp.log(s) - picked
    if residual_ref:
      residual_ref[0][rows, :] = (e / s[:, None] - is_target.astype(jnp.float32)).astype(
          residual_ref[0].dtype)
    return carry

  lax.fori_loop(0, pl.cdiv(blocks, programs), row_block, 0)


def _rows_xla(x_NK, w_KL, b_L, t_NC, residual: bool):
  """_rows_kernel's results from XLA's ops: likelihood's NLL, and its
  gradient for a cotangent of one."""
  logits = (jnp.dot(x_NK, w_KL, preferred_element_type=jnp.float32) + b_L).reshape(
      *t_NC.shape, NUM_LEVELS)
  nll, saved = likelihood._nll_fwd(logits, t_NC)
  if not residual:
    return (nll,)
  dlogits = likelihood._nll_bwd(saved, jnp.ones_like(nll))[0]
  return nll, dlogits.astype(x_NK.dtype).reshape(x_NK.shape[0], -1)


def _rows_kernel(x_NK, w_KL, b_L, t_NC, residual: bool, block: int, warps: int, stages: int):
  """(NLL [N, C] float32, and with `residual` softmax - one-hot [N, C * 256]
  in x's dtype) for one device's rows."""
  (rows, depth), colours = x_NK.shape, t_NC.shape[1]
  if rows % block:
    # A device's share of rows that are whole blocks overall, but not here.
    return _rows_xla(x_NK, w_KL, b_L, t_NC, residual)
  interpret = jax.default_backend() != "gpu"
  blocks = rows // block

  # A colour's NLL and targets are a row of colour-major arrays; its logits'
  # weights, bias and residual, 256 columns.
  colour_row = pl.BlockSpec((None, rows), lambda p, c: (c, 0))

  def colour_columns(height):
    return pl.BlockSpec((height, NUM_LEVELS), lambda p, c: (0, c))

  out_shape = [jax.ShapeDtypeStruct((colours, rows), jnp.float32)]
  out_specs = [colour_row]
  if residual:
    out_shape.append(jax.ShapeDtypeStruct((rows, w_KL.shape[1]), x_NK.dtype))
    out_specs.append(colour_columns(rows))
  nll_CN, *rest = pl.pallas_call(
      functools.partial(_kernel, block=block, blocks=blocks, chunks=_chunks(depth),
                        interpret=interpret),
      grid=(max(1, min(PROGRAMS // colours, blocks)), colours),
      in_specs=[pl.BlockSpec((rows, depth), lambda p, c: (0, 0)), colour_columns(depth),
                pl.BlockSpec((NUM_LEVELS,), lambda p, c: (c,)), colour_row],
      out_specs=out_specs, out_shape=out_shape,
      compiler_params=(None if interpret
                       else pltriton.CompilerParams(num_warps=warps, num_stages=stages)),
      interpret=interpret)(x_NK, w_KL, b_L, t_NC.T)
  return (nll_CN.T, *rest)


@functools.lru_cache(maxsize=None)
def _split_rows(residual: bool, block: int, warps: int, stages: int):
  """_rows_kernel under custom_partitioning: x, t and the results split over
  devices as x's rows are, the weights and bias whole on each."""
  def rows_kernel(*args):
    return _rows_kernel(*args, residual, block, warps, stages)

  def shardings(mesh, arg_shapes):
    spec = arg_shapes[0].sharding.spec
    return NamedSharding(mesh, P(spec[0] if spec else None, None)), NamedSharding(mesh, P())

  def partition(mesh, arg_shapes, result_shape):
    rows, whole = shardings(mesh, arg_shapes)
    return mesh, rows_kernel, (rows,) * (1 + residual), (rows, whole, whole, rows)

  def infer(mesh, arg_shapes, result_shape):
    return (shardings(mesh, arg_shapes)[0],) * (1 + residual)

  fn = custom_partitioning(rows_kernel)
  fn.def_partition(partition, infer_sharding_from_operands=infer,
                   sharding_rule="n k, k l, l, n c -> n c" + (", n l" if residual else ""),
                   need_replication_factors=("k", "l", "c"))
  return fn


def _mean_bits(nll_NC, images: int):
  return likelihood.mean_bits(nll_NC.reshape(images, -1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _image_bits(x_NK, w_KL, b_L, t_NC, images: int, ones: int, config):
  return _mean_bits(_split_rows(False, *config[0])(x_NK, w_KL, b_L, t_NC)[0], images)


def _image_bits_fwd(x_NK, w_KL, b_L, t_NC, images, ones, config):
  nll, residual = _split_rows(True, *config[1])(x_NK, w_KL, b_L, t_NC)
  return _mean_bits(nll, images), (x_NK, w_KL, residual)


def _image_bits_bwd(images, ones, config, residuals, g_B):
  x_NK, w_KL, residual_NL = residuals
  rows, colours = x_NK.shape[0], w_KL.shape[1] // NUM_LEVELS
  # d bits / d logits is softmax - one-hot over ln 2 and the image's
  # sub-pixels, times the image's cotangent: one factor a row, applied to
  # the products' smaller operand or result, not to the residual.
  g_N = jnp.repeat(g_B * (LOG2E * images / (rows * colours)), rows // images)
  dx = jnp.dot(residual_NL, w_KL.T) * g_N[:, None].astype(x_NK.dtype)
  dw = jnp.einsum("nk,nl->kl", (x_NK * g_N[:, None]).astype(x_NK.dtype), residual_NL,
                  preferred_element_type=jnp.float32)
  # x's channel `ones` is 1 at every row, so the weights' gradient holds the
  # bias's in that row; without one, a pass over the residual.
  db = (dw[ones] if ones >= 0 else
        jnp.einsum("n,nl->l", g_N, residual_NL, preferred_element_type=jnp.float32))
  return dx.astype(x_NK.dtype), dw.astype(w_KL.dtype), db, None


_image_bits.defvjp(_image_bits_fwd, _image_bits_bwd)


def image_bits(x_BHWK: jax.Array, w_KL: jax.Array, b_L: jax.Array, images_BHWC: jax.Array,
               in_features: int, precision=None, config=CONFIG) -> jax.Array:
  """Bits/dim of each image, float32 [B], under softmax(x @ w + b).

  x: the 1x1's input in the compute dtype, its first `in_features` channels
  true ones, the rest zeros; w: [K, C * 256] in the same dtype, rows past
  in_features zero; b: float32 [C * 256]; images: integers 0..255. As
  likelihood.bits_per_dim of `layers.dot_float32_out`'s logits; on a GPU,
  where `kernel_fits`, by the kernel above, with `config` as CONFIG.
  """
  B, H, W, K = x_BHWK.shape
  C = images_BHWC.shape[-1]
  if (jax.default_backend() not in BACKENDS or K > MAX_DEPTH
      or not kernel_fits(B * H * W, K, x_BHWK.dtype, config)):
    logits = layers.add_bias(layers.dot_float32_out(x_BHWK, w_KL, precision), b_L)
    return likelihood.mean_bits(likelihood.subpixel_nll(
        logits.reshape(B, H, W, C, NUM_LEVELS), images_BHWC))
  # A ones channel in the padding, where there is room, whose row of the
  # weights is zero: the products do not change, and the weights' gradient
  # holds the bias's (_image_bits_bwd).
  x_NK = layers.add_ones(x_BHWK, in_features).reshape(B * H * W, K)
  return _image_bits(x_NK, w_KL, b_L.astype(jnp.float32), images_BHWC.reshape(-1, C), B,
                     in_features if in_features < K else -1, config)
