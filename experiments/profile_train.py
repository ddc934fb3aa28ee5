"""Where a training step's device time goes: the top XLA ops of a traced step.

  python experiments/profile_train.py [--shape=15x132k3] [--dtype=bfloat16]
      [--batch=256] [--align=0] [--steps=5] [--top=25] [--out=FILE.jsonl] [--hlo=FILE.txt.gz]
      [--gaps] [--sources=REGEX] [--warmup=3] [--set=KEY=VALUE ...]

Traces --steps steps of the train step (after compiling it and running
--warmup steps) with jax.profiler, then reads the trace where it was written
and sums device time per XLA op (the "XLA Ops" line of each GPU plane; each
op is one fusion, convolution or library call), or per CUDA kernel where a
trace has no such line. Prints the top ops with their share of the device
time and time per step, and their kinds (cuDNN convolution, cuDNN's channel
padding, matmul, XLA fusion, memory) summed. The trace itself stays on the
machine (~100 MB for 5 steps); --hlo writes the compiled step's optimised
HLO, gzipped, which says what each named fusion holds, and adds each
fusion's rate: the bytes of its operands and results over its time, to set
against the card's memory rate (4.8 TB/s on an H200). --set overrides a
config entry, as in bench_train.py. --gaps also reads the kernels' timeline:
how long the GPU sat idle a step between kernels (the steps run back to
back, as in training), by the size of each idle gap and by the kind of
kernel that ends it, and the longest gaps with the kernels either side.
--sources=REGEX names the XLA op behind each kernel whose name matches
(`--sources=Memset` for the memsets, which a profile lists under no op of
their own), with its op_name where --hlo is given.
"""

import argparse
import collections
import datetime
import glob
import gzip
import json
import re
import tempfile

import jax
import numpy as np

from pixelcnn_jax import config_base
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train
from pixelcnn_jax import train_state as ts
from pixelcnn_jax import xla_defaults

import bench_train


def op_times(trace_dir: str, line_name) -> tuple[collections.Counter, collections.Counter]:
  """Device ns and occurrences per event name on the GPU planes' lines for
  which line_name(name) holds."""
  total_ns, count = collections.Counter(), collections.Counter()
  for start, end, name, _ in gpu_events(trace_dir, line_name):
    total_ns[name] += end - start
    count[name] += 1
  return total_ns, count


def gpu_events(trace_dir: str, line_name, stats: bool = False) -> list:
  """(start ns, end ns, name, {stat: value} where stats, else {}) of every
  event on the GPU planes' lines for which line_name(name) holds."""
  from jax.profiler import ProfileData
  events = []
  for path in glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True):
    for plane in ProfileData.from_file(path).planes:
      if plane.name.startswith("/device:GPU"):
        events += [(e.start_ns, e.end_ns, e.name, dict(e.stats) if stats else {})
                   for line in plane.lines
                   if line_name(line.name) for e in line.events]
  return events


KINDS = (  # (kind, pattern), first match wins; CUDA kernel names or XLA op names.
    ("cuDNN convolution", r"implicit_gemm|ImplicitGemmConvolution|^convolution|cudnn.*conv"),
    ("cuDNN channel padding", r"nhwcAddPadding"),
    ("matmul", r"nvjet|gemm|cublas|^dot|^custom-call"),
    ("XLA fusion", r"fusion|^wrapped_|triton_softmax|^loop_|^input_"),
    ("memset/memcpy", r"Memset|memcpy|^copy"),
)


DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4}


def shape_bytes(text: str) -> int:
  """Bytes of every array shape (`bf16[256,32,32,768]`) written in text."""
  total = 0
  for dtype, dims in re.findall(r"\b(%s)\[([\d,]*)\]" % "|".join(DTYPE_BYTES), text):
    total += DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d]))
  return total


def fusion_bytes(hlo: str) -> dict:
  """{kernel name: bytes of its operands and results} for each fusion of an
  optimised HLO module; a kernel is named as its fusion, dots as
  underscores. An upper bound on what the kernel moves: an operand it
  slices or broadcasts counts whole."""
  signatures = {m.group(1): m.group(2) + m.group(3) for m in re.finditer(
      r"^(%[\w.\-]+) \((.*)\) -> (.*) \{$", hlo, re.M)}
  return {name.replace(".", "_"): shape_bytes(signatures[called])
          for name, called in re.findall(
              r"^\s*(?:ROOT )?%([\w.\-]+) = .*? fusion\(.*?calls=(%[\w.\-]+)", hlo, re.M)
          if called in signatures}


def kind(op: str, kinds=KINDS) -> str:
  """What an op is, from its name: the first matching kind, else its name."""
  return next((k for k, pattern in kinds if re.search(pattern, op)), op.split("(")[0][:40])


def kernel_intervals(trace_dir: str, line_name) -> list:
  """(start ns, end ns, name) of every event on the GPU planes' lines for
  which line_name(name) holds, by start."""
  return sorted((start, end, name) for start, end, name, _ in gpu_events(trace_dir, line_name))


GAP_BUCKETS_US = (2, 5, 20, 100, float("inf"))


def idle_gaps(kernels: list, steps: int, longest: int = 15) -> dict:
  """Where the GPU sat idle between kernels (kernel_intervals, any stream), a
  step at a time: idle by gap size and by the kind of the kernel that ends
  the gap; the longest gaps."""
  gaps, busy_end, prev = [], kernels[0][1], kernels[0][2]
  for start, end, name in kernels[1:]:
    if start > busy_end:
      gaps.append((start - busy_end, busy_end, prev, name))
    if end >= busy_end:
      busy_end, prev = end, name
  by_size, by_next = collections.Counter(), collections.Counter()
  for g, _, _, name in gaps:
    by_size[next(f"<{b:g} us" for b in GAP_BUCKETS_US if g / 1e3 < b)] += g
    by_next[kind(name)] += g
  per_step = lambda ns: ns / 1e6 / steps
  return {
      "span_ms_per_step": per_step(busy_end - kernels[0][0]),
      "gaps_per_step": len(gaps) / steps,
      "idle_ms_per_step": per_step(sum(g for g, *_ in gaps)),
      "idle_ms_by_size": {f"<{b:g} us": per_step(by_size[f"<{b:g} us"])
                          for b in GAP_BUCKETS_US if f"<{b:g} us" in by_size},
      "idle_ms_by_next_kind": {k: per_step(v) for k, v in by_next.most_common(8)},
      "longest": [{"us": g / 1e3, "after": a[:60], "before": b[:60]}
                  for g, _, a, b in sorted(gaps, reverse=True)[:longest]]}


def print_gaps(gaps: dict) -> None:
  print(f"idle: {gaps['idle_ms_per_step']:.2f} ms a step in {gaps['gaps_per_step']:.0f} "
        f"gaps, span {gaps['span_ms_per_step']:.2f} ms")
  for key in ("idle_ms_by_size", "idle_ms_by_next_kind"):
    print(f"  {key}: " + ", ".join(f"{k} {v:.3f}" for k, v in gaps[key].items()))
  for g in gaps["longest"]:
    print(f"  {g['us']:8.1f} us  after {g['after']}  before {g['before']}")


def launch_sources(events: list, pattern: str, steps: int, op_names=None) -> list:
  """For the kernels whose name matches pattern, the XLA op that launched
  them (the event's hlo_op stat), most time first: calls and us a step, and
  the op's op_name from op_names where given. The memsets and cuDNN's
  workspace kernels of a profile name no op of their own."""
  calls, ns, details = collections.Counter(), collections.Counter(), {}
  for start, end, name, stats in events:
    if re.search(pattern, name):
      op = str(stats.get("hlo_op", "?"))
      calls[op] += 1
      ns[op] += end - start
      details.setdefault(op, str(stats.get("memset_details", "")) or name[:60])
  return [{"hlo_op": op, "calls_per_step": calls[op] / steps,
           "us_per_step": t / 1e3 / steps, "details": details[op],
           "op_name": (op_names or {}).get(op, "")} for op, t in ns.most_common()]


def hlo_op_names(hlo: str) -> dict:
  """{instruction name: its metadata's op_name} of an optimised HLO module."""
  return dict(re.findall(r'^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"', hlo, re.M))


def device_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """op_times per XLA op, or per CUDA kernel where a trace has no op lines."""
  total_ns, count = op_times(trace_dir, lambda name: name == "XLA Ops")
  if not total_ns:  # Traces without op lines still list the CUDA kernels per stream.
    total_ns, count = op_times(trace_dir, lambda name: name.startswith("Stream"))
  if not total_ns:
    raise SystemExit(f"error: no GPU ops in the trace under {trace_dir} "
                     f"(devices: {jax.devices()})")
  return total_ns, count


def kind_shares(total_ns: collections.Counter, kinds=KINDS) -> dict:
  """{kind: share of the device time}, largest first; printed, the top 8."""
  all_ns = sum(total_ns.values())
  by_kind = collections.Counter()
  for op, ns in total_ns.items():
    by_kind[kind(op, kinds)] += ns
  shares = {k: v / all_ns for k, v in by_kind.most_common()}
  for k, share in list(shares.items())[:8]:
    print(f"  {share:6.1%}  {k}")
  return shares


def main():
  xla_defaults.apply()
  p = argparse.ArgumentParser()
  p.add_argument("--shape", default="15x132k3")
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--align", type=int, default=0,
                 help="model.channel_align (0: the library's choice, 32 on a GPU)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=3,
                 help="steps run before the traced ones; some hundred bring an H100 to its "
                      "power limit, as training does")
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  p.add_argument("--hlo", default="")
  p.add_argument("--gaps", action="store_true", help="also the idle time between kernels")
  p.add_argument("--sources", default="", metavar="REGEX",
                 help="the XLA ops that launch the kernels whose names match, e.g. Memset")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  args = p.parse_args()
  layers, features, kernel = bench_train.parse_shape(args.shape, "--shape")
  if args.warmup < 1:
    raise SystemExit(f"--warmup: at least 1 step, the one that compiles, got {args.warmup}")
  try:
    re.compile(args.sources)
  except re.error as e:
    raise SystemExit(f"--sources: not a regular expression ({e}): {args.sources!r}")
  overrides = tuple(bench_train.parse_override(o, config_base.base()) for o in args.set)
  cfg = bench_train.config_for(layers, features, kernel, args.dtype, args.batch, args.align,
                               overrides=overrides)
  mesh = bench_train.make_mesh(1, 1)
  model, tx, shardings, step = train.setup(cfg, mesh)
  state = train.fresh_state(cfg, model, tx, shardings)
  key = jax.random.PRNGKey(1)
  images = jax.device_put(
      np.random.default_rng(0).integers(0, 256, (args.batch, 32, 32, 3), np.uint8),
      mesh_lib.batch_sharding(mesh))
  moved, op_names = {}, {}
  if args.hlo:
    hlo = step.lower(state, images, None, key).compile().as_text()
    with gzip.open(args.hlo, "wt") as f:
      f.write(hlo)
    moved, op_names = fusion_bytes(hlo), hlo_op_names(hlo)
  for _ in range(args.warmup):
    state, m = step(state, images, None, key)
  jax.block_until_ready(m)
  trace_dir = tempfile.mkdtemp(prefix="profile_train_")
  with jax.profiler.trace(trace_dir):
    for _ in range(args.steps):
      state, m = step(state, images, None, key)
    jax.block_until_ready(m)
  total_ns, count = device_times(trace_dir)
  all_ns = sum(total_ns.values())
  rows = [{"op": op, "ms_per_step": ns / 1e6 / args.steps, "share": ns / all_ns,
           "calls_per_step": count[op] / args.steps}
          for op, ns in total_ns.most_common(args.top)]
  for r in rows:
    if r["op"] in moved:
      r["bytes_per_call"] = moved[r["op"]]
      r["tb_per_s"] = moved[r["op"]] * r["calls_per_step"] / (r["ms_per_step"] * 1e9)
  print(f"{args.shape} {args.dtype} batch {args.batch} "
        f"align {ts.channel_align(args.align)}: "
        f"{all_ns / 1e6 / args.steps:.2f} ms of device time a step, "
        f"{sum(count.values()) / args.steps:.0f} ops")
  summary = {"shape": args.shape, "dtype": args.dtype, "batch": args.batch,
             "warmup": args.warmup,
             "set": dict(overrides), "channel_align": ts.channel_align(args.align),
             "device_ms_per_step": all_ns / 1e6 / args.steps,
             "ops_per_step": sum(count.values()) / args.steps,
             "kinds": kind_shares(total_ns),
             "top": rows, "trace_dir": trace_dir}
  for r in rows:
    rate = f"{r['tb_per_s']:5.2f} TB/s" if "tb_per_s" in r else ""
    print(f"  {r['share']:6.1%} {r['ms_per_step']:8.3f} ms x{r['calls_per_step']:<3.0f} "
          f"{rate:>10}  {r['op'][:90]}")
  if args.gaps:
    kernels = kernel_intervals(trace_dir, lambda name: name.startswith("Stream"))
    if not kernels:
      raise SystemExit(f"error: no GPU kernels in the trace under {trace_dir}")
    summary["gaps"] = idle_gaps(kernels, args.steps)
    print_gaps(summary["gaps"])
  if args.sources:
    summary["sources"] = launch_sources(
        gpu_events(trace_dir, lambda name: name.startswith("Stream"), stats=True), args.sources,
        args.steps, op_names)
    for r in summary["sources"][:args.top]:
      print(f"  {r['us_per_step']:8.1f} us x{r['calls_per_step']:<4.0f} {r['hlo_op'][:28]:28} "
            f"{r['details'][:40]:40} {r['op_name'][-70:]}")
  write_summary(summary, args.out)


def write_summary(summary: dict, path: str) -> None:
  """Stamps the summary with the card, date and jax version; adds it to
  path as one JSON line where a path is given."""
  summary.update(device=jax.devices()[0].device_kind,
                 date=datetime.date.today().isoformat(), jax=jax.__version__)
  if path:
    with open(path, "a") as f:
      f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
  main()
