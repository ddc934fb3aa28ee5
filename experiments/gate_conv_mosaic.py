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
  swizzle = plgpu.find_swizzle(tile_k * 16)
  transforms = (plgpu.TilingTransform((8, swizzle // 2)), plgpu.SwizzleTransform(swizzle))
  out_swizzle = plgpu.find_swizzle(width * 16)
  out_transforms = (plgpu.TilingTransform((8, out_swizzle // 2)),
                    plgpu.SwizzleTransform(out_swizzle))

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
