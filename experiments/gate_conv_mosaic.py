"""The vertical convolution and its gate as one Mosaic GPU kernel (Hopper).

bench_gate_conv.py times this against cuDNN with XLA's gate, and against
its Triton kernel. The layout is the same as there: images flat on the
padded grid, so that tap t reads the rows of the output block shifted by
(t // k) * cols + t % k.

The kernel is a persistent, warp-specialised implicit GEMM, after jax's
Hopper matmul example (jax.experimental.pallas.ops.gpu.hopper_matmul_mgpu).
One warpgroup copies blocks in with TMA. Two more each own `tile_m` rows
and keep f's and g's accumulators in registers, fed by wgmma. Each
accumulator spans the whole aligned width, so the gate is taken there,
before anything goes back to memory: f and g for the backward pass, and y.
That keeps it to narrow models: 160 channels fit a warpgroup's registers
and the shared memory, 384 do not.

`conv_gate_nhwc` is the same loop on images in the model's own layout,
unpadded, with 3D copies (its docstring). It is what a model would call.

wgmma reads its left operand from shared memory tiled in 8-row groups, and
Mosaic GPU (jax 0.11.2) copies such a tile only from a row that is a
multiple of 8. Image by image, the taps' row offsets (dy * cols + dx)
mostly are not. With Warpgroup semantics the compiler refuses them, asking
for a proof of divisibility; with Lane semantics it compiles them and the
sums come out wrong (experiments/RESULTS.md). With the batch inside each
position (`stride` = B, a multiple of 8) every offset is a multiple of B,
and the copies are exact. `aligned_taps=True` rounds every offset down to a
multiple of 8, a timing whose sums are wrong by construction.
"""

import functools

import jax
import jax.experimental.pallas as pl
import jax.experimental.pallas.mosaic_gpu as plgpu
import jax.numpy as jnp
from jax import lax
from jax.extend import backend

# conv_gate_nhwc's tiles: output positions per compute warpgroup (wgmma's M),
# and input channels per copy (64-byte swizzled rows).
TILE_M = 64
TILE_K = 32


def _tiled(minor: int) -> tuple:
  """Shared-memory transforms for a tile whose rows are `minor` bf16 wide:
  8-row tiles, swizzled by the largest span that divides a row."""
  swizzle = plgpu.find_swizzle(minor * 16)
  return (plgpu.TilingTransform((8, swizzle // 2)), plgpu.SwizzleTransform(swizzle))


def conv_gate(x_flat, w_KN, rows_out: int, *, kernel: int, cols: int, width: int,
              tile_m: int, tile_k: int, stages: int, stride: int = 1,
              aligned_taps: bool = False, lane: bool = True):
  """([rows_out, 2 * width] = [f | g], [rows_out, width] = tanh(f) * sigmoid(g)).

  x_flat: [rows, width] on the padded grid, `stride` rows between its
  positions (1 image by image, B with the batch inside), with at least the
  largest tap offset plus 2 * tile_m rows past rows_out. w_KN: [taps * width,
  2 * width], the rows of tap t at t * width, f's columns then g's. rows_out
  must be a multiple of 2 * tile_m.
  """
  dtype = x_flat.dtype
  kh, kw = kernel // 2 + 1, kernel
  chunks = width // tile_k
  block_m = 2 * tile_m
  span = block_m + ((kh - 1) * cols + kw - 1) * stride
  transforms, out_transforms = _tiled(tile_k), _tiled(width)

  def tap_offset(s):
    t = lax.div(s, jnp.int32(chunks))
    offset = (lax.div(t, jnp.int32(kw)) * cols + lax.rem(t, jnp.int32(kw))) * stride
    if aligned_taps:
      return pl.multiple_of(lax.div(offset, jnp.int32(8)) * 8, 8)
    return pl.multiple_of(offset, 8) if stride % 8 == 0 else offset

  def body(x_gmem, w_gmem, pre_gmem, y_gmem):
    def pipeline(step, compute_context):
      return plgpu.emit_pipeline_warp_specialized(
          step, grid=(kh * kw * chunks,), memory_registers=40,
          in_specs=[
              plgpu.BlockSpec((pl.Element(block_m), tile_k),
                              lambda s: (tap_offset(s), lax.rem(s, jnp.int32(chunks))),
                              transforms=transforms, memory_space=plgpu.SMEM),
              plgpu.BlockSpec((tile_k, 2 * width), lambda s: (s, jnp.int32(0)),
                              transforms=transforms, memory_space=plgpu.SMEM)],
          wg_axis="wg", num_compute_wgs=2, max_concurrent_steps=stages,
          compute_context=compute_context)

    unused = lambda *_, **__: None

    @functools.partial(
        pl.run_scoped,
        allocations=pipeline(unused, unused).get_allocations(
            x_gmem.at[pl.ds(0, span), :], w_gmem),
        out_smem=plgpu.SMEM((2, 2, tile_m, width), dtype, transforms=out_transforms),
        collective_axes="wg")
    def _scope(allocations, out_smem):
      wg = lax.axis_index("wg")

      @plgpu.nd_loop((rows_out // block_m,), collective_axes="blocks")
      def _block(info):
        (i,) = info.index
        rows = pl.ds(pl.multiple_of(i * block_m + wg * tile_m, tile_m), tile_m)
        own = pl.ds(pl.multiple_of(wg * tile_m, tile_m), tile_m)

        def compute_context(run):
          @functools.partial(pl.run_scoped, acc_f=plgpu.ACC((tile_m, width), jnp.float32),
                             acc_g=plgpu.ACC((tile_m, width), jnp.float32))
          def _accumulate(acc_f, acc_g):
            run((acc_f, acc_g))
            f, g = acc_f[...], acc_g[...]
            y = jnp.tanh(f) * jax.nn.sigmoid(g)
            plgpu.wait_smem_to_gmem(0, wait_read_only=True)
            out_smem[wg, 0] = f.astype(dtype)
            out_smem[wg, 1] = g.astype(dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], pre_gmem.at[rows, pl.ds(0, width)])
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 1], pre_gmem.at[rows, pl.ds(width, width)])
            plgpu.wait_smem_to_gmem(1, wait_read_only=True)  # f's slot is free again.
            out_smem[wg, 0] = y.astype(dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], y_gmem.at[rows, :])

        def step(_, a_smem, b_smem, accs):
          acc_f, acc_g = accs
          plgpu.wgmma(acc_f, a_smem.at[own], b_smem.at[:, pl.ds(0, width)])
          plgpu.wgmma(acc_g, a_smem.at[own], b_smem.at[:, pl.ds(width, width)])
          plgpu.wgmma_wait(0)
          return accs

        pipeline(step, compute_context)(
            x_gmem.at[pl.ds(pl.multiple_of(i * block_m, block_m), span), :], w_gmem,
            allocations=allocations)

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)

  semantics = plgpu.LoweringSemantics.Lane if lane else plgpu.LoweringSemantics.Warpgroup
  call = plgpu.kernel(
      body, out_type=(jax.ShapeDtypeStruct((rows_out, 2 * width), dtype),
                      jax.ShapeDtypeStruct((rows_out, width), dtype)),
      grid=(backend.get_default_device().core_count,), grid_names=("blocks",),
      cluster=(1,), cluster_names=("cluster",), num_threads=3, thread_name="wg",
      compiler_params=plgpu.CompilerParams(lowering_semantics=semantics))
  return call(x_flat, w_KN)


def conv_gate_nhwc(x_BHWC, kernel, features: int, half: int, out_width: int, stages: int):
  """(y [B, H, W, out_width], pre [B, H, W, 2 * half]) on images in the
  model's own layout, unpadded: x [B, H, W, C_in] with its ones channel;
  kernel [k // 2 + 1, k, C_in, 2 * half], f's columns in [0, features) and
  g's in [half, half + features) (bench_gate_conv.halves); pre in that
  layout; y the next layer's input: the gate, ones at `features` when
  out_width leaves room, zeros after.

  Each block is 2 * TILE_M output positions of one image, whole rows of it.
  A tap's block of x is a 3D copy [rows, W, TILE_K] whose rows and columns
  start above and left of the image; TMA fills what lies outside it with
  zeros, so x needs no padded copy. The copies are swizzled but not tiled
  (a tiled copy must start on an 8-row tile), and each compute warpgroup
  loads its rows into registers, from which wgmma takes its left operand.
  f's and g's kernels are read transposed, so that a chunk is TILE_K
  contiguous columns. TILE_M must be a multiple of W, and H * W of
  2 * TILE_M; 2 * half accumulators of TILE_M rows must fit the registers
  (half <= 160)."""
  B, H, W, c_in = x_BHWC.shape
  if (TILE_M % W or H * W % (2 * TILE_M) or c_in % TILE_K or half % 16 or half > 160
      or out_width < half or out_width % 16):
    raise ValueError(f"conv_gate_nhwc takes W dividing {TILE_M}, H * W a multiple of "
                     f"{2 * TILE_M}, channels a multiple of {TILE_K}, half a multiple of 16 "
                     f"up to 160 and out_width >= half, a multiple of 16; got {x_BHWC.shape}, "
                     f"half {half}, out_width {out_width}")
  kh, kw = kernel.shape[:2]
  m = kw // 2
  dtype = x_BHWC.dtype
  chunks = c_in // TILE_K
  block_m = 2 * TILE_M
  block_rows, wg_rows = block_m // W, TILE_M // W
  blocks_per_image = H * W // block_m
  positions = B * H * W
  extra = out_width - half
  w_f, w_g = (kernel[..., i * half:(i + 1) * half].reshape(-1, half).T for i in (0, 1))
  ones_at = features if out_width > features else -1
  k_swizzle = plgpu.find_swizzle(TILE_K * 16)

  def tap(part, s):
    t = lax.div(s, jnp.int32(chunks))
    return (part * block_rows + lax.div(t, jnp.int32(kw)) - (kh - 1),
            lax.rem(t, jnp.int32(kw)) - m, lax.rem(s, jnp.int32(chunks)))

  def body(x_gmem, wf_gmem, wg_gmem, pre_gmem, y_gmem):
    def pipeline(part, step, compute_context):
      w_spec = plgpu.BlockSpec((half, TILE_K), lambda s: (jnp.int32(0), s),
                               transforms=_tiled(TILE_K), memory_space=plgpu.SMEM)
      return plgpu.emit_pipeline_warp_specialized(
          step, grid=(kh * kw * chunks,), memory_registers=40,
          in_specs=[
              plgpu.BlockSpec((pl.Element(block_rows), pl.Element(W), TILE_K),
                              functools.partial(tap, part),
                              transforms=(plgpu.SwizzleTransform(k_swizzle),),
                              memory_space=plgpu.SMEM),
              w_spec, w_spec],
          wg_axis="wg", num_compute_wgs=2, max_concurrent_steps=stages,
          compute_context=compute_context)

    unused = lambda *_, **__: None
    scratch = dict(out_smem=plgpu.SMEM((2, 2, TILE_M, half), dtype, transforms=_tiled(half)))
    if extra:
      scratch["extra_smem"] = plgpu.SMEM((2, TILE_M, extra), dtype, transforms=_tiled(extra))

    @functools.partial(
        pl.run_scoped,
        allocations=pipeline(jnp.int32(0), unused, unused).get_allocations(
            x_gmem.at[0], wf_gmem, wg_gmem),
        collective_axes="wg", **scratch)
    def _scope(allocations, out_smem, extra_smem=None):
      wg = lax.axis_index("wg")

      @plgpu.nd_loop((positions // block_m,), collective_axes="blocks")
      def _block(info):
        (i,) = info.index
        image = lax.div(i, jnp.int32(blocks_per_image))
        part = lax.rem(i, jnp.int32(blocks_per_image))
        rows = pl.ds(pl.multiple_of(i * block_m + wg * TILE_M, TILE_M), TILE_M)

        def compute_context(run):
          @functools.partial(pl.run_scoped, acc_f=plgpu.ACC((TILE_M, half), jnp.float32),
                             acc_g=plgpu.ACC((TILE_M, half), jnp.float32))
          def _accumulate(acc_f, acc_g):
            run((acc_f, acc_g))
            f, g = acc_f[...], acc_g[...]
            # The last block's stores from these tiles must have read them.
            plgpu.wait_smem_to_gmem(0, wait_read_only=True)
            out_smem[wg, 0] = f.astype(dtype)
            out_smem[wg, 1] = g.astype(dtype)
            if extra:
              column = plgpu.broadcasted_iota(jnp.int32, (TILE_M, extra), 1,
                                              layout=plgpu.Layout.WGMMA)
              extra_smem[wg] = jnp.where(column + half == ones_at, 1.0, 0.0).astype(dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], pre_gmem.at[rows, pl.ds(0, half)])
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 1], pre_gmem.at[rows, pl.ds(half, half)])
            if extra:
              plgpu.copy_smem_to_gmem(extra_smem.at[wg], y_gmem.at[rows, pl.ds(half, extra)])
            # The gate while those stores run.
            column = plgpu.broadcasted_iota(jnp.int32, (TILE_M, half), 1,
                                            layout=plgpu.Layout.WGMMA)
            y = jnp.where(column == ones_at, 1.0, jnp.tanh(f) * jax.nn.sigmoid(g))
            # f's tile takes y once its own store has read it.
            plgpu.wait_smem_to_gmem(1 + bool(extra), wait_read_only=True)
            out_smem[wg, 0] = y.astype(dtype)
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[wg, 0], y_gmem.at[rows, pl.ds(0, half)])

        def step(_, x_smem, f_smem, g_smem, accs):
          acc_f, acc_g = accs
          own = x_smem.at[pl.ds(wg * wg_rows, wg_rows)].reshape(TILE_M, TILE_K)
          a = plgpu.load(own, (), layout=plgpu.Layout.WGMMA)
          plgpu.wgmma(acc_f, a, plgpu.transpose_ref(f_smem, (1, 0)))
          plgpu.wgmma(acc_g, a, plgpu.transpose_ref(g_smem, (1, 0)))
          plgpu.wgmma_wait(0)
          return accs

        pipeline(part, step, compute_context)(
            x_gmem.at[image], wf_gmem, wg_gmem, allocations=allocations)

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)

  call = plgpu.kernel(
      body, out_type=(jax.ShapeDtypeStruct((positions, 2 * half), dtype),
                      jax.ShapeDtypeStruct((positions, out_width), dtype)),
      grid=(backend.get_default_device().core_count,), grid_names=("blocks",),
      cluster=(1,), cluster_names=("cluster",), num_threads=3, thread_name="wg",
      compiler_params=plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Lane))
  pre, y = call(x_BHWC, w_f, w_g)
  return y.reshape(B, H, W, out_width), pre.reshape(B, H, W, 2 * half)
