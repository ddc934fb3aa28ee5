"""The Mosaic GPU kernel behind gate_conv.py: a vertical layer's convolution
and gate in one pass, on Hopper (TMA copies, wgmma, warp-specialised).

Each block is 2 * TILE_M output positions of one image, whole rows of it.
Its loop runs over the taps and the input's TILE_K-channel chunks: one
warpgroup copies the tap's [rows, W, TILE_K] block of x, at the rows and
columns the tap reads, and the chunk's rows of f's and g's kernels; the
two compute warpgroups each multiply their TILE_M positions into f's and
g's float32 sums. The epilogue gates them and writes pre and y through
shared memory with TMA.
"""

import functools

import jax
import jax.experimental.pallas as pl
import jax.experimental.pallas.mosaic_gpu as plgpu
import jax.numpy as jnp
from jax import lax

TILE_M = 64
TILE_K = 32


def _tiled(minor: int) -> tuple:
  """Shared-memory transforms for a tile whose rows are `minor` bf16 wide:
  8-row tiles, swizzled by the largest span that divides a row."""
  swizzle = plgpu.find_swizzle(minor * 16)
  return (plgpu.TilingTransform((8, swizzle // 2)), plgpu.SwizzleTransform(swizzle))


def forward(x_BHWC, kernel, features: int, half: int, out_width: int, stages: int):
  """(y [B, H, W, out_width], pre [B, H, W, 2 * half]) as gate_conv describes;
  kernel: [k // 2 + 1, k, C_in, 2 * half]."""
  B, H, W, c_in = x_BHWC.shape
  kh, kw = kernel.shape[:2]
  m = kw // 2
  dtype = x_BHWC.dtype
  chunks = c_in // TILE_K
  block_m = 2 * TILE_M
  block_rows, wg_rows = block_m // W, TILE_M // W
  blocks_per_image = H * W // block_m
  positions = B * H * W
  extra = out_width - half
  # Each half's kernel as [half, taps * C_in]: wgmma reads it transposed, so
  # that a chunk is TILE_K contiguous columns.
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
      grid=(jax.devices()[0].core_count,), grid_names=("blocks",),
      cluster=(1,), cluster_names=("cluster",), num_threads=3, thread_name="wg",
      compiler_params=plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Lane))
  pre, y = call(x_BHWC, w_f, w_g)
  return y.reshape(B, H, W, out_width), pre.reshape(B, H, W, 2 * half)
