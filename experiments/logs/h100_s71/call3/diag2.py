import statistics, sys, time
sys.path.insert(0, "experiments")
import jax, numpy as np
import bench_train
from pixelcnn_jax import train, xla_defaults, mesh as mesh_lib
xla_defaults.apply()
cfg = bench_train.config_for(15, 132, 3, "bfloat16", 256)
mesh = bench_train.make_mesh(1, 1)
model, tx, shardings, step = train.setup(cfg, mesh)
state = train.fresh_state(cfg, model, tx, shardings)
key = jax.random.PRNGKey(1)
rng = np.random.default_rng(0)
sh = mesh_lib.batch_sharding(mesh)
batches = [jax.device_put(rng.integers(0, 256, (256, 32, 32, 3), np.uint8), sh) for _ in range(4)]
for _ in range(3):
  state, m = step(state, batches[0], None, key)
jax.block_until_ready(m)
box = [state]
def piped(n=30, sleep_ms=0.0):
  t0 = time.perf_counter(); ds = []; rs = []
  for i in range(n):
    t1 = time.perf_counter(); s, mm = step(box[0], batches[i % 4], None, key); t2 = time.perf_counter()
    ds.append(t2 - t1); box[0] = s
    if sleep_ms: time.sleep(sleep_ms / 1e3)
  jax.block_until_ready(mm)
  return (time.perf_counter() - t0) / n, statistics.median(ds)
for rep in range(2):
  for sl in (0, 2, 5, 10, 20):
    p, d = piped(sleep_ms=sl)
    print(f"piped, host sleeps {sl:2d} ms a step: {p*1e3:.2f} ms a step ({256/p:.0f} img/s), call returns in {d*1e3:.2f} ms", flush=True)
step = jax.jit(step.__wrapped__)
s, mm = step(box[0], batches[0], None, key); jax.block_until_ready(mm); box[0] = s
for sl in (0, 5, 10):
  p, d = piped(sleep_ms=sl)
  print(f"no donation, host sleeps {sl:2d} ms a step: {p*1e3:.2f} ms a step ({256/p:.0f} img/s), call returns in {d*1e3:.2f} ms", flush=True)
