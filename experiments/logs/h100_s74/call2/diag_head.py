"""s74 diagnostic: where head_loss's kernels spend their time (variants, batch 256, 15x132 head)."""
import functools, sys
sys.path.insert(0, "experiments")
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
import bench_head_loss as bhl
from bench_nll import timed
from pixelcnn_jax import head_loss as hl
L = hl.NUM_LEVELS
LOG2E = 1.4426950408889634

def ex2(x):
  return pltriton.elementwise_inline_asm("ex2.approx.ftz.f32 $0, $1;", args=[x], constraints="=f,f",
                                         pack=1, result_shape_dtypes=[jax.ShapeDtypeStruct.like(x)])[0]

def fwd_kernel(x_ref, w_ref, b_ref, t_ref, nll_ref, lse_ref, *, colours, chunks, mode):
  for c in range(colours):
    logits = hl._logits(x_ref, w_ref, b_ref, c, chunks)
    m = jnp.max(logits, axis=1)
    if mode == "matmul":
      nll_ref[:, c] = m; lse_ref[:, c] = m; continue
    if mode == "ex2":
      s = jnp.sum(ex2((logits - m[:, None]) * LOG2E), axis=1)
    elif mode == "noexp":
      s = jnp.sum(logits - m[:, None], axis=1) + 1.0
    else:
      s = jnp.sum(jnp.exp(logits - m[:, None]), axis=1)
    lse = m + jnp.log(s)
    if mode == "notarget":
      picked = m
    else:
      picked = jnp.sum(jnp.where(hl._is_target(t_ref, c, logits.shape), logits, 0.0), axis=1)
    nll_ref[:, c] = lse - picked
    lse_ref[:, c] = lse

def bwd_kernel(x_ref, w_ref, b_ref, t_ref, lse_ref, g_ref, wt_ref, dlogits_ref, dx_ref, *, colours, chunks, mode):
  dx = [None] * len(chunks)
  for c in range(colours):
    logits = hl._logits(x_ref, w_ref, b_ref, c, chunks)
    p = ex2((logits - lse_ref[:, c][:, None]) * LOG2E)
    dlogits = g_ref[:, c][:, None] * (p - hl._is_target(t_ref, c, p.shape).astype(jnp.float32))
    dlogits = dlogits.astype(dlogits_ref.dtype)
    cols = pl.ds(c * L, L)
    dlogits_ref[:, cols] = dlogits
    if mode == "nodx":
      continue
    for j, (start, size) in enumerate(chunks):
      if mode == "wt":
        part = jnp.dot(dlogits, wt_ref[cols, pl.ds(start, size)], preferred_element_type=jnp.float32)
      else:
        part = lax.dot_general(dlogits, w_ref[pl.ds(start, size), cols], (((1,), (1,)), ((), ())),
                               preferred_element_type=jnp.float32)
      dx[j] = part if dx[j] is None else dx[j] + part
  for (start, size), part in zip(chunks, dx):
    dx_ref[:, pl.ds(start, size)] = (jnp.zeros((x_ref.shape[0], size), jnp.float32) if part is None else part).astype(dx_ref.dtype)

x, w, b, t = bhl.operands(256 * 1024, 132, 160, 3)
g = jnp.full(t.shape, 1.0 / t.size, jnp.float32)
rows = x.shape[0]
out = jax.ShapeDtypeStruct((rows, 3), jnp.float32)
for block, warps in ((64, 8), (128, 8), (64, 4)):
  hl.BLOCK_ROWS, hl.WARPS = block, warps
  for mode in ("exp", "ex2", "noexp", "notarget", "matmul"):
    f = jax.jit(lambda x, w, b, t, mode=mode: hl._call(functools.partial(fwd_kernel, mode=mode), (x, w, b, t), 1, [out, out]))
    print(f"fwd b{block} w{warps} {mode:9s} {timed(f, (x, w, b, t), 20):.3f} ms", flush=True)
  for mode in ("trans", "wt", "nodx"):
    f = jax.jit(lambda x, w, b, t, l, g, mode=mode: hl._call(
        lambda *refs, colours, chunks: bwd_kernel(*refs, colours=colours, chunks=chunks, mode=mode),
        (x, w, b, t, l, g, w.T), 3,
        [jax.ShapeDtypeStruct((rows, w.shape[1]), x.dtype), jax.ShapeDtypeStruct(x.shape, x.dtype)]))
    print(f"bwd b{block} w{warps} {mode:9s} {timed(f, (x, w, b, t, g, g), 20):.3f} ms", flush=True)
# XLA's pieces for reference: the matmul alone (f32 out), and dx, dW from bf16 dlogits
dl = jnp.asarray(np.random.default_rng(1).normal(0, 1e-6, (rows, 768)), jnp.bfloat16)
print(f"xla matmul f32 out {timed(jax.jit(lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.float32)), (x, w), 20):.3f} ms")
print(f"xla dx {timed(jax.jit(lambda d, w: jnp.dot(d, w.T)), (dl, w), 20):.3f} ms")
print(f"xla dW {timed(jax.jit(lambda x, d: jnp.einsum('nk,nl->kl', x, d, preferred_element_type=jnp.float32)), (x, dl), 20):.3f} ms")
