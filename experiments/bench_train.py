"""Train throughput: img/s, MFU and weak scaling.

  python experiments/bench_train.py [--shapes=15x132k3,20x384k5] [--image=32x32x3]
      [--dtypes=bfloat16] [--aligns=0] [--batches=128,256] [--meshes=1] [--steps=20]
      [--optimizers=adamw] [--set=KEY=VALUE ...] [--out=FILE] [--plot=FILE.png]

One case per shape x dtype x channel_align x batch x mesh. A mesh is DEVICES or DEVICESxFSDP
(e.g. 4x2: 4 devices, params split 2 ways, batch over all 4); --batches is per
device, so the cases of one shape and batch are a weak-scaling series, whose
efficiency img/s(N) / (N * img/s(1)) is printed. --image is the images'
HEIGHTxWIDTHxCHANNELS (28x28x1: MNIST's). --set overrides a config entry in
every case (e.g. --set=model.dropout=0.1 --set=train.muon_products=bfloat16);
each row records them. Time: the median step after
compilation, each step waited for, so that the host's dispatch is not
hidden behind the previous step (img/s); and the same steps dispatched back
to back, as a training loop does, waited for once at the end (img/s
pipelined; bench_main.py compares a training run with it). MFU, of the
waited step: a training step costs 3 forward passes, and a forward pass
2 FLOPs per kernel weight per pixel (biases aside; what a shifted or masked
kernel skips is counted too), against --peak_tflops (790: the bf16 matrix rate
measured on this workplace's H100s and H200s). Runs under the XLA flags that
`pixelcnn_jax.main` sets (pixelcnn_jax/xla_defaults.py), and each row
records XLA_FLAGS. Memory: the compiled step's scratch space (temp GiB: the
activations kept for the backward pass, and workspaces), which
--set=train.microbatches=N divides. On NVIDIA GPUs each row also records
the SM clock and power draw of the case's GPUs during the pipelined steps
(gpu_power.py): an H100 at its 700 W limit runs them at a lower clock.
"""

import argparse
import datetime
import itertools
import json
import os
import re
import statistics
import time

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from pixelcnn_jax import config_base
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train
from pixelcnn_jax import train_state as ts
from pixelcnn_jax import xla_defaults
from pixelcnn_jax.errors import UserError

import gpu_power

PEAK_TFLOPS = 790.0  # The bf16 matrix rate measured on this workplace's H100s and H200s.


IMAGE = (32, 32, 3)


def config_for(layers, features, kernel, dtype, batch, align=0, image=IMAGE,
               optimizer="adamw", overrides=()):
  c = config_base.base()
  c.model.update(num_layers=layers, features=features, kernel_size=kernel,
                 channels=image[2], dtype=dtype, channel_align=align)
  c.data.image_size = image[:2]
  c.train.update(warmup_steps=10, num_steps=1000, batch_size=batch, optimizer=optimizer)
  c.update_from_flattened_dict(dict(overrides))
  config_base.validate(c)
  return c


def parse_override(text: str, config) -> tuple:
  """(key, value) of --set's KEY=VALUE, the value of the entry's own type."""
  key, sep, raw = text.partition("=")
  if not sep:
    raise SystemExit(f"--set: KEY=VALUE, e.g. model.dropout=0.1, got {text!r}")
  section, _, name = key.rpartition(".")
  parent = config[section] if section in config else None
  if parent is None or name not in parent or not isinstance(parent[name], (bool, int, float, str)):
    raise SystemExit(f"--set: no config entry {key!r} to set")
  kind = type(parent[name])
  try:
    if kind is bool:
      value = {"true": True, "false": False}[raw.lower()]
    else:
      value = kind(raw)
  except (KeyError, ValueError):
    raise SystemExit(f"--set: {key} takes a {kind.__name__}, got {raw!r}") from None
  return key, value


def train_flops_per_image(params, pixels: int) -> float:
  kernel_weights = sum(p.size for p in jax.tree_util.tree_leaves(params) if p.ndim > 1)
  return 3 * 2 * kernel_weights * pixels


def make_mesh(devices: int, fsdp: int) -> Mesh:
  grid = np.array(jax.devices()[:devices]).reshape(devices // fsdp, fsdp)
  return Mesh(grid, (mesh_lib.DATA, mesh_lib.FSDP), axis_types=(AxisType.Auto,) * 2)


class Stepper:
  """The jitted train step of `cfg` on `mesh` and its state, advanced by each
  call, on 4 batches of random images (on the mesh, and on the host)."""

  def __init__(self, cfg, mesh: Mesh, batch: int, image=IMAGE):
    model, tx, shardings, self.step = train.setup(cfg, mesh)
    self.state = train.fresh_state(cfg, model, tx, shardings)
    self.key = jax.random.PRNGKey(1)
    rng = np.random.default_rng(0)
    self.host_batches = [rng.integers(0, 256, (batch, *image), np.uint8) for _ in range(4)]
    self.sharding = mesh_lib.batch_sharding(mesh)
    self.batches = [jax.device_put(b, self.sharding) for b in self.host_batches]
    self.metrics = None

  def __call__(self, i: int, from_host: bool = False) -> float:
    """Dispatches a step on batch i % 4 (put on the device first, from_host);
    returns the seconds the call took to return."""
    images = (jax.device_put(self.host_batches[i % 4], self.sharding) if from_host
              else self.batches[i % 4])
    start = time.perf_counter()
    self.state, self.metrics = self.step(self.state, images, None, self.key)
    return time.perf_counter() - start

  def wait(self):
    jax.block_until_ready(self.metrics)


def waited(run: Stepper, steps: int) -> dict:
  """Median ms of a step waited for, and of its call."""
  totals, calls = [], []
  for i in range(steps):
    start = time.perf_counter()
    calls.append(run(i))
    run.wait()
    totals.append(time.perf_counter() - start)
  return {"step_ms": 1e3 * statistics.median(totals), "call_ms": 1e3 * statistics.median(calls)}


def pipelined(run: Stepper, steps: int, sleep_ms: float = 0.0, from_host: bool = False) -> dict:
  """ms a step of steps dispatched back to back (the host asleep sleep_ms
  after each call) and waited for once, and the median ms of a call."""
  calls = []
  start = time.perf_counter()
  for i in range(steps):
    calls.append(run(i, from_host))
    if sleep_ms:
      time.sleep(sleep_ms / 1e3)
  run.wait()
  return {"step_ms": 1e3 * (time.perf_counter() - start) / steps,
          "call_ms": 1e3 * statistics.median(calls)}


def bench(layers, features, kernel, dtype, per_device_batch, devices, fsdp, steps,
          peak_tflops, align=0, image=IMAGE, optimizer="adamw", overrides=()):
  batch = per_device_batch * devices
  cfg = config_for(layers, features, kernel, dtype, batch, align, image, optimizer, overrides)
  run = Stepper(cfg, make_mesh(devices, fsdp), batch, image)
  t0 = time.perf_counter()
  run(0)
  run.wait()
  compile_s = time.perf_counter() - t0
  loss_first = train_loss(run.metrics)
  # The step's scratch memory (activations kept for the backward pass, and
  # workspaces), from the executable the call above compiled and cached.
  memory = run.step.lower(run.state, run.batches[0], None, run.key).compile().memory_analysis()
  med = waited(run, steps)["step_ms"] / 1e3
  loss_last = train_loss(run.metrics)
  gpus = gpu_power.smi_indices(
      [d.local_hardware_id for d in run.sharding.mesh.devices.flat if d.platform == "gpu"])
  with gpu_power.Sampler(gpus) as power:
    pipelined_s = pipelined(run, steps)["step_ms"] / 1e3
  flops = train_flops_per_image(run.state.params, image[0] * image[1])
  return {"layers": layers, "features": features, "kernel": kernel, "dtype": dtype,
          "image": "x".join(map(str, image)),
          "batch": batch, "per_device_batch": per_device_batch, "devices": devices,
          "fsdp": fsdp, "channel_align": ts.channel_align(align), "optimizer": optimizer,
          "set": dict(overrides),
          "img_per_s": batch / med,
          "median_step_s": med,
          "img_per_s_pipelined": batch / pipelined_s, "pipelined_step_s": pipelined_s,
          "compile_s": compile_s, "loss_first": loss_first, "loss_last": loss_last,
          "temp_gib": memory.temp_size_in_bytes / 2**30 if memory else None,
          "params": ts.param_count(run.state.params),
          "train_gflop_per_img": flops / 1e9,
          "mfu": batch / med * flops / (devices * peak_tflops * 1e12),
          "device": jax.devices()[0].device_kind,
          "date": datetime.date.today().isoformat(), "jax": jax.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), **power.result}


def train_loss(metrics) -> float:
  """The step's training loss, which a flag that changes numerics (XLA_FLAGS)
  shows against a run without it: the batches and key are fixed."""
  return float(next(v for k, v in metrics.items() if k.startswith("train_")))


def add_efficiency(rows):
  """img/s(N) / (N * img/s(1)) against the one-device case of the same series."""
  series = lambda r: (r["layers"], r["features"], r["kernel"], r.get("image"), r["dtype"],
                      r.get("per_device_batch"), r.get("channel_align"),
                      r.get("optimizer", "adamw"))
  base = {series(r): r["img_per_s"] for r in rows if "error" not in r and r["devices"] == 1}
  for r in rows:
    one = base.get(series(r))
    if one and "error" not in r:
      r["scaling_efficiency"] = r["img_per_s"] / (r["devices"] * one)


def plot(rows, path):
  import matplotlib  # Only for --plot; the GPU image has it.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  series = {}
  for r in rows:
    if "error" not in r:
      name = (f"{r['layers']}x{r['features']} k{r['kernel']} {r['image']} {r['dtype']}, "
              f"align {r['channel_align']}, "
              f"{r['per_device_batch']}/device, fsdp={r['fsdp']}")
      series.setdefault(name, []).append((r["devices"], r["img_per_s"]))
  for name, points in sorted(series.items()):
    points.sort()
    ax.plot(*zip(*points), "o-", label=name)
  ones = [p for s in series.values() for p in s if p[0] == 1]
  if ones:
    most = max(p[0] for s in series.values() for p in s)
    ax.plot([1, most], [ones[0][1], most * ones[0][1]], "k:", label="linear")
  ax.set_xlabel("GPUs")
  ax.set_ylabel("train img/s")
  ax.set_title(f"Weak scaling, {rows[0].get('device', '')}, {rows[0].get('date', '')}")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def parse_ints(pattern, text, flag, form, default=None):
  """The integers that `pattern`'s groups match in `text`; else one error line."""
  m = re.fullmatch(pattern, text)
  if m is None:
    raise SystemExit(f"{flag}: {form}, got {text!r}")
  return tuple(int(v if v is not None else default) for v in m.groups())


def parse_shape(text, flag):
  """(layers, features, kernel) of LAYERSxFEATURESkKERNEL."""
  return parse_ints(r"(\d+)x(\d+)k(\d+)", text, flag, "LAYERSxFEATURESkKERNEL, e.g. 15x132k3")


def main():
  xla_defaults.apply()
  p = argparse.ArgumentParser()
  p.add_argument("--shapes", default="15x132k3,20x384k5",
                 help="comma-separated LAYERSxFEATURESkKERNEL")
  p.add_argument("--image", default="x".join(map(str, IMAGE)),
                 help="HEIGHTxWIDTHxCHANNELS of the images")
  p.add_argument("--dtypes", default="bfloat16")
  p.add_argument("--batches", default="128,256",
                 help="per-device batch sizes (128: the paper's global batch)")
  p.add_argument("--meshes", default="1", help="DEVICES or DEVICESxFSDP, comma-separated")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--aligns", default="0",
                 help="model.channel_align values, comma-separated (0: the library's "
                 "choice, 32 on a GPU; 8: channels padded to multiples of 8 while "
                 "computing)")
  p.add_argument("--optimizers", default="adamw",
                 help="train.optimizer values, comma-separated: " + ", ".join(ts.OPTIMIZERS))
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="a config entry for every case, e.g. model.dropout=0.1; repeatable")
  p.add_argument("--peak_tflops", type=float, default=PEAK_TFLOPS)
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  p.add_argument("--plot", default="")
  args = p.parse_args()
  shapes = [parse_shape(s, "--shapes") for s in args.shapes.split(",")]
  image = parse_ints(r"(\d+)x(\d+)x(\d+)", args.image, "--image",
                     "HEIGHTxWIDTHxCHANNELS, e.g. 28x28x1")
  meshes = [parse_ints(r"(\d+)(?:x(\d+))?", m, "--meshes", "DEVICES or DEVICESxFSDP, e.g. 4x2",
                       default="1") for m in args.meshes.split(",")]
  aligns = [parse_ints(r"(\d+)", a, "--aligns", "integers >= 0, e.g. 0,8,32")[0]
            for a in args.aligns.split(",")]
  batches = [parse_ints(r"([1-9]\d*)", b, "--batches", "integers >= 1, e.g. 128,256")[0]
             for b in args.batches.split(",")]
  optimizers = args.optimizers.split(",")
  if not set(optimizers) <= set(ts.OPTIMIZERS):
    raise SystemExit(f"--optimizers: comma-separated {', '.join(ts.OPTIMIZERS)}, "
                     f"got {args.optimizers!r}")
  defaults = config_base.base()
  overrides = tuple(parse_override(o, defaults) for o in args.set)
  try:
    config_for(*shapes[0], "bfloat16", batches[0] * meshes[0][0], image=image,
               optimizer=optimizers[0], overrides=overrides)
  except UserError as e:
    raise SystemExit(f"--set: {e}") from None
  rows = []
  for layers, features, kernel in shapes:
    for dtype, align, optimizer in itertools.product(args.dtypes.split(","), aligns,
                                                     optimizers):
      for per_device in batches:
        for devices, fsdp in meshes:
          try:
            r = bench(layers, features, kernel, dtype, per_device, devices, fsdp,
                      args.steps, args.peak_tflops, align, image, optimizer, overrides)
          except Exception as e:  # An OOM on one case should not hide the others.
            r = {"layers": layers, "features": features, "kernel": kernel,
                 "image": "x".join(map(str, image)), "dtype": dtype,
                 "per_device_batch": per_device, "devices": devices, "fsdp": fsdp,
                 "channel_align": ts.channel_align(align), "optimizer": optimizer,
                 "set": dict(overrides), "error": str(e).splitlines()[0][:200]}
          print(json.dumps(r), flush=True)
          rows.append(r)
  add_efficiency(rows)
  if args.out:
    with open(args.out, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  if args.plot:
    plot(rows, args.plot)
  print(f"\n{'shape':>12} {'image':>9} {'dtype':>8} {'optim':>5} {'align':>5} {'batch':>6} "
        f"{'GPUs':>4} "
        f"{'fsdp':>4} {'img/s':>8} {'MFU':>5} {'piped':>8} {'eff.':>5} {'temp GiB':>8} {'SM MHz':>6}  device")
  for r in rows:
    shape = f"{r['layers']}x{r['features']}k{r['kernel']}"
    head = (f"{shape:>12} {r['image']:>9} {r['dtype']:>8} {r['optimizer']:>5} "
            f"{r['channel_align']:>5} "
            f"{r['per_device_batch']:>6} {r['devices']:>4} {r['fsdp']:>4}")
    if "error" in r:
      print(f"{head}  error: {r['error'][:60]}")
    else:
      eff = r.get("scaling_efficiency")
      temp = r["temp_gib"]
      print(f"{head} {r['img_per_s']:8.0f} {r['mfu']:5.1%} {r['img_per_s_pipelined']:8.0f} "
            f"{'' if eff is None else format(eff, '.1%'):>5} "
            f"{'' if temp is None else format(temp, '.2f'):>8} "
            f"{format(r['sm_mhz_mean'], '.0f') if 'sm_mhz_mean' in r else '':>6}  {r['device']}")


if __name__ == "__main__":
  main()
