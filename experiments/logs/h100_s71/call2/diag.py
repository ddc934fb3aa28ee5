import statistics, sys, time, tempfile
sys.path.insert(0, "experiments")
import jax, numpy as np
import bench_train, profile_train
from pixelcnn_jax import train, xla_defaults, mesh as mesh_lib
xla_defaults.apply()
cfg = bench_train.config_for(15, 132, 3, "bfloat16", 256)
mesh = bench_train.make_mesh(1, 1)
model, tx, shardings, step = train.setup(cfg, mesh)
state = train.fresh_state(cfg, model, tx, shardings)
key = jax.random.PRNGKey(1)
rng = np.random.default_rng(0)
host = [rng.integers(0, 256, (256, 32, 32, 3), np.uint8) for _ in range(4)]
sh = mesh_lib.batch_sharding(mesh)
batches = [jax.device_put(b, sh) for b in host]
for _ in range(3):
  state, m = step(state, batches[0], None, key)
jax.block_until_ready(m)
def waited(n=30):
  ts, ds = [], []
  for i in range(n):
    t0 = time.perf_counter(); s, mm = step(state_box[0], batches[i % 4], None, key)
    t1 = time.perf_counter(); jax.block_until_ready(mm); t2 = time.perf_counter()
    state_box[0] = s; ts.append(t2 - t0); ds.append(t1 - t0)
  return statistics.median(ts), statistics.median(ds)
def piped(n=30, host_batches=False):
  t0 = time.perf_counter(); ds = []
  for i in range(n):
    b = jax.device_put(host[i % 4], sh) if host_batches else batches[i % 4]
    t1 = time.perf_counter(); s, mm = step(state_box[0], b, None, key); ds.append(time.perf_counter() - t1)
    state_box[0] = s
  jax.block_until_ready(mm)
  return (time.perf_counter() - t0) / n, statistics.median(ds)
state_box = [state]
for rep in range(2):
  w, wd = waited(); p, pd = piped(); ph, phd = piped(host_batches=True)
  print(f"waited {w*1e3:.2f} ms (dispatch {wd*1e3:.2f})  piped {p*1e3:.2f} ms (dispatch {pd*1e3:.2f}) "
        f" piped+device_put {ph*1e3:.2f} ms (dispatch {phd*1e3:.2f})  img/s {256/w:.0f} {256/p:.0f} {256/ph:.0f}", flush=True)
# a profile of waited steps: where the GPU idles between them
d = tempfile.mkdtemp()
with jax.profiler.trace(d):
  for i in range(5):
    s, mm = step(state_box[0], batches[i % 4], None, key); jax.block_until_ready(mm); state_box[0] = s
kern = profile_train.kernel_intervals(d, lambda n: n.startswith("Stream"))
g = profile_train.idle_gaps(kern, 5)
profile_train.print_gaps(g)
from jax.profiler import ProfileData
import glob, collections
for path in glob.glob(f"{d}/**/*.xplane.pb", recursive=True):
  for plane in ProfileData.from_file(path).planes:
    print("PLANE", plane.name, [(l.name, len(list(l.events))) for l in plane.lines][:30])
