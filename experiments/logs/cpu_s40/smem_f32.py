import sys, jax.numpy as jnp
sys.path.insert(0, '.')
import fused_smem, bench_sample
for f in (132,):
  model, _ = bench_sample.make(15, f, 3, jnp.float32, "highest", 32), None
  model = model[0] if isinstance(model, tuple) else model
  for block in (8, 4):
    ks = fused_smem.triton_kernels(model, block)
    print("float32 15x%d k3 block %d:" % (f, block), [fused_smem.shared_bytes(ir, w, s, 90) for ir, w, s in ks], flush=True)
