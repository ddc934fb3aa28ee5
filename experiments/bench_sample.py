"""Naive vs cached sampling of 32x32x3 images, and how far each is from its floor.

  python experiments/bench_sample.py [--batches=1,16,64,256] [--kernels=auto,xla,pallas]
      [--command_buffers=off,on] [--fused=auto,defaultx64x2,1x8] [--unroll=1,4]
      [--earlier=auto,on,off] [--conv_fusion=auto,on,off] [--aligns=0,1,8]
      [--dtypes=bfloat16,float32:highest] [--out=FILE] [--plot=FILE.png]

For each model shape, dtype (bfloat16 by default; DTYPE:PRECISION also
sets the model's matmul precision), channel alignment (model.channel_align:
the vertical stack's convolutions, computed by XLA once per row, pad their channels to its
multiples; 0, the default, is the library's choice, what pj.load gives, 32
on a GPU; the first also for agreement), batch, kernel of the cached sampler
(xla: XLA's ops; pallas: one fused kernel per colour pass; auto: the
library's choice) and command-buffer choice (off: XLA's defaults; on:
pj.sampling.COMMAND_BUFFERS) and, for the fused kernel, each --fused
setting (Triton's pipelining stages x the most images per kernel instance x
Triton's warps, fused_pass.OVERRIDE; auto: the library's settings for the
model, fused_pass.settings), each
--earlier choice (on: passes > 0 take the dots from earlier colour groups
from a kernel of their own, earlier_groups.py; off: from their own loop;
auto: the library's, fused_pass.earlier_kernel), each --unroll (columns
per iteration of the loop along a row, cached_loop.COLUMN_UNROLL, or auto:
the library's) and each --conv_fusion (on: the cached loop of bf16 models
compiled with cuDNN's convolution fusions at every batch on a GPU; auto:
the library's, up to pj.sampling.CONV_FUSION_MAX_BATCH images; rows say
what ran); the first of each also for agreement: its wall time (median of
3 after compile); the naive sampler's, measured in full where
--naive_full_limit allows and otherwise extrapolated as 3,072 x the time of
one full forward pass (the naive loop's body), marked "extrapolated".
Floors use the H100 SXM datasheet (3.35 TB/s HBM, 989 TFLOP/s dense bf16):
the weight bytes that one sampling step must read / bandwidth, and the FLOPs
of one step / the bf16 rate, each times the 3,072 steps; --plot draws
images/s against batch per shape. Also: the rate at which cached and naive
differ: per step, where the cached sampler's draw differs from what the naive
one draws with the same past (`pj.sampling.redraw`, one forward pass), and
over whole images from the two samplers (identical in fp32; in bf16 one early
difference changes everything after it).
"""

import argparse
import datetime
import itertools
import json
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import pixelcnn_jax as pj
from pixelcnn_jax import cached_loop, fused_pass, train_state

import bench_train

LIBRARY_CONV_FUSION_MAX_BATCH = pj.sampling.CONV_FUSION_MAX_BATCH

SHAPES = ((15, 132, 3), (20, 384, 5))
CHOICES = {"on": True, "off": False}  # --command_buffers, and --earlier with auto
HBM_BYTES_PER_S, BF16_FLOPS = 3.35e12, 989e12
STEPS = 32 * 32 * 3
DTYPE = r"(float32|bfloat16)(:(default|high|highest))?"
DTYPE_FORM = "DTYPE[:PRECISION] with float32 or bfloat16 and default, high or highest"


def make(layers, features, kernel, dtype, precision=None, align=0):
  model = pj.GatedPixelCNN(num_layers=layers, features=features, kernel_size=kernel,
                           channels=3, image_size=(32, 32), dtype=dtype,
                           precision=precision,
                           channel_align=train_state.channel_align(align))
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
  return model, variables


def set_fused(setting, unroll, earlier):
  """The fused kernel's (stages, block, warps), or None for the library's,
  the columns per loop iteration and the earlier-groups choice, for the next
  pj.sample; compiled loops are cached by their arguments, which these are
  not, so the caches go too."""
  now = (fused_pass.OVERRIDE, cached_loop.COLUMN_UNROLL, fused_pass.EARLIER_OVERRIDE)
  if now != (setting, unroll, earlier):
    fused_pass.OVERRIDE, cached_loop.COLUMN_UNROLL, fused_pass.EARLIER_OVERRIDE = (
        setting, unroll, earlier)
    jax.clear_caches()


def parse_fused(spec: str):
  """"auto" -> None (the library's settings); "STAGESxBLOCK[xWARPS]" -> a
  fused_pass.OVERRIDE tuple, "default" for Triton's own value."""
  if spec == "auto":
    return None
  return (tuple(None if v == "default" else int(v) for v in spec.split("x")) + (None,))[:3]


def fused_label(setting, model):
  """STAGESxBLOCK[xWARPS] of a setting, "auto:..." where it is the library's,
  whose block is the most images per instance that fit so far
  (pj.sampling.fused_block)."""
  stages, block, warps = setting or fused_pass.settings(model)
  if setting is None:
    block = pj.sampling.fused_block(model)
  return (f"{'auto:' if setting is None else ''}{stages or 'default'}x{block}"
          + (f"x{warps}" if warps else ""))


def earlier_label(earlier, model):
  return choice_label(earlier, fused_pass.earlier_kernel(model))


def set_conv_fusion(choice):
  """pj.sampling.CONV_FUSION_MAX_BATCH for the next pj.sample: every batch,
  none, or (None) the library's."""
  pj.sampling.CONV_FUSION_MAX_BATCH = (LIBRARY_CONV_FUSION_MAX_BATCH if choice is None
                                       else sys.maxsize if choice else 0)


def conv_fusion_label(choice, model, batch):
  """Set after set_conv_fusion(choice)."""
  return choice_label(choice, pj.sampling._conv_fusion(model, batch))


def choice_label(choice, used):
  """on / off as `used`, "auto:..." where `choice` is None: the library's."""
  return f"{'auto:' if choice is None else ''}{'on' if used else 'off'}"


def timed(fn, repeats=3):
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def floors(variables, batch, dtype_bytes):
  """Seconds: (weight bytes per step / HBM, FLOPs per step / bf16 rate) x steps.

  Every sub-pixel step reads each horizontal-stack and head weight once; the
  vertical stack's weights are read once per row and spread over its W*C steps,
  and its work (W positions a row) comes to per_row / C multiply-adds a step.
  """
  params = variables["params"]
  per_step, per_row = 0, 0
  for name, sub in params.items():
    n = sum(x.size for x in jax.tree_util.tree_leaves(sub))
    if name.startswith("layers_"):
      vert = sum(x.size for k, v in sub.items() if k in ("v_conv", "v_to_h")
                 for x in jax.tree_util.tree_leaves(v))
      per_step += n - vert
      per_row += vert
    else:
      per_step += n
  weights = per_step + per_row / (32 * 3)
  flops = 2 * batch * (per_step + per_row * 32 * 32 / STEPS)
  return (weights * dtype_bytes / HBM_BYTES_PER_S * STEPS,
          flops / BF16_FLOPS * STEPS)


def dtype_label(row):
  precision = row.get("precision", "default")
  return row.get("dtype", "bfloat16") + ("" if precision == "default" else f":{precision}")


def plot(rows, path):
  import matplotlib  # Only for --plot.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4.5))
  names = ("fused", "earlier groups", "command buffers", "conv fusion", "unroll",
           "channels aligned to")
  # An automatic choice can differ from one batch to the next (conv fusion stops
  # at 64 images, a block halves to fit); one curve per setting asked for, not per choice.
  asked = lambda v: "auto" if str(v).startswith("auto:") else v
  extra = lambda r: tuple(map(asked, (
      r.get("fused", ""), r.get("earlier", ""), r["command_buffers"],
      r.get("conv_fusion", "off"), r.get("unroll", 1), r.get("channel_align", 1))))
  case = lambda r: (r["shape"], dtype_label(r), r["kernel"], extra(r))
  cases = list(dict.fromkeys(map(case, rows)))
  # Settings that every curve of one kernel shares would only lengthen the
  # legend until it crowds out the axes; only those that tell curves apart stay.
  varying = [i for i in range(len(names))
             if len({(k, e[i]) for _, _, k, e in cases}) > len({k for _, _, k, _ in cases})]
  several_dtypes = len({d for _, d, _, _ in cases}) > 1
  for shape, dt, kernel, settings in cases:
    points = [(r["batch"], r["batch"] / r["cached_s"]) for r in rows
              if case(r) == (shape, dt, kernel, settings)]
    label = ", ".join([shape] + [dt] * several_dtypes + [kernel]
                      + [f"{names[i]} {settings[i]}" for i in varying if settings[i] != ""])
    ax.plot(*zip(*points), "o-", label=label)
  ax.set(xscale="log", yscale="log", xlabel="batch (images)", ylabel="images/s",
         title=f"32x32x3 sampling, {', '.join(dict.fromkeys(map(dtype_label, rows)))}, "
               f"{rows[0]['device']}, {rows[0]['date']}")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return fig


def _listed(args, flag, item, form, empty=False):
  """The comma-separated items of --flag, each matching `item`; else one error line."""
  text = getattr(args, flag)
  if empty and not text:
    return []
  if not re.fullmatch(rf"({item})(,({item}))*", text):
    raise SystemExit(f"--{flag}: comma-separated {form}, got {text!r}")
  return text.split(",")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batches", default="1,16,64,256")
  p.add_argument("--naive_full_limit", type=float, default=20.0,
                 help="run naive in full when its estimate is below this (s)")
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  p.add_argument("--plot", default="")
  p.add_argument("--kernels", default="xla,pallas")
  p.add_argument("--command_buffers", default="off",
                 help="comma-separated: off (XLA's defaults, the library's), on (all ops)")
  p.add_argument("--fused", default="auto",
                 help="auto (the library's) or STAGESxBLOCK[xWARPS] (Triton pipelining "
                 "stages, or default; the most images per instance of the fused kernel; "
                 "Triton warps, default 4), comma-separated; the first also for agreement")
  p.add_argument("--unroll", default="auto",
                 help="columns per iteration of the loop along a row, or auto (the "
                 "library's), comma-separated; the first also for agreement")
  p.add_argument("--earlier", default="auto",
                 help="auto (the library's), on or off: passes > 0 take the dots from "
                 "earlier colour groups from a kernel of their own; comma-separated, "
                 "the first also for agreement")
  p.add_argument("--conv_fusion", default="auto",
                 help="auto (the library's: up to pj.sampling.CONV_FUSION_MAX_BATCH "
                 "images), on (every batch) or off: the cached loop of bf16 models on a GPU "
                 "compiled with cuDNN's convolution fusions; comma-separated, the first "
                 "also for agreement")
  p.add_argument("--aligns", default="0",
                 help="model.channel_align values (0: the library's choice, 32 on a GPU), "
                 "comma-separated; the first also for agreement")
  p.add_argument("--dtypes", default="bfloat16",
                 help="DTYPE[:PRECISION] of the timed models, comma-separated")
  p.add_argument("--agreement_dtypes", default="float32:highest,float32,bfloat16",
                 help="DTYPE[:PRECISION],... to check cached against the reference; "
                 "empty: skip")
  p.add_argument("--agreement_naive", type=int, default=1,
                 help="also run the whole naive sampler (0: the one-pass redraw only)")
  p.add_argument("--agreement_shape", default="15x132k3")
  p.add_argument("--agreement_num", type=int, default=16)
  p.add_argument("--shapes", default=",".join(f"{l}x{f}k{k}" for l, f, k in SHAPES),
                 help="comma-separated LAYERSxFEATURESkKERNEL; empty: time none (agreement only)")
  args = p.parse_args()
  fused = [parse_fused(spec) for spec in _listed(
      args, "fused", r"auto|(default|[1-9]\d*)x[1-9]\d*(x[1-9]\d*)?",
      "auto or STAGESxBLOCK[xWARPS], e.g. defaultx64 or 1x8x16")]
  unrolls = [None if u == "auto" else int(u) for u in _listed(
      args, "unroll", r"auto|[1-9]\d*", "integers >= 1 or auto")]
  earliers = [{**CHOICES, "auto": None}[e]
              for e in _listed(args, "earlier", r"auto|on|off", "auto, on or off")]
  conv_fusions = [{**CHOICES, "auto": None}[c] for c in _listed(
      args, "conv_fusion", r"auto|on|off", "auto, on or off")]
  aligns = [int(a) for a in _listed(args, "aligns", r"\d+", "integers >= 0")]
  dtypes = [spec.partition(":")[::2] for spec in _listed(args, "dtypes", DTYPE, DTYPE_FORM)]
  batches = [int(b) for b in _listed(args, "batches", r"[1-9]\d*", "integers >= 1")]
  kernels = _listed(args, "kernels", "|".join(pj.sampling.KERNELS),
                    "of " + ", ".join(pj.sampling.KERNELS))
  graphs_list = _listed(args, "command_buffers", r"on|off", "on or off")
  shapes = [bench_train.parse_shape(s, "--shapes") for s in _listed(
      args, "shapes", r"\d+x\d+k\d+", "LAYERSxFEATURESkKERNEL, e.g. 15x132k3",
      empty=True)]
  agreement_shape = bench_train.parse_shape(args.agreement_shape, "--agreement_shape")
  agreement_dtypes = _listed(args, "agreement_dtypes", DTYPE, DTYPE_FORM, empty=True)
  key = jax.random.PRNGKey(1)
  rows = []
  one_device = Mesh(np.array(jax.devices()[:1]), ("data",))
  for (layers, features, kernel_size), align, (dtype_name, precision) in itertools.product(
      shapes, aligns, dtypes):
    model, variables = make(layers, features, kernel_size, jnp.dtype(dtype_name),
                            None if precision in ("", "default") else precision, align)
    forward = jax.jit(model.apply)
    for batch in batches:
      x = jnp.zeros((batch, 32, 32, 3), jnp.uint8)
      fwd = timed(lambda: jax.block_until_ready(forward(variables, x)))
      naive_est = fwd * STEPS
      if naive_est < args.naive_full_limit:
        naive, how = timed(lambda: pj.sample(model, variables, key, batch,
                                             method="naive"), 1), "measured"
      else:
        naive, how = naive_est, "extrapolated"
      bw_floor, flop_floor = floors(variables, batch, jnp.dtype(dtype_name).itemsize)
      cases = [(k, g, f, u, e, c) for k, g, u, c
               in itertools.product(kernels, graphs_list, unrolls, conv_fusions)
               for f in (fused if k != "xla" else [fused[0]])
               for e in (earliers if k != "xla" else [earliers[0]])]
      for kernel, graphs, setting, unroll, earlier, conv_fusion in cases:
        set_fused(setting, unroll, earlier)
        set_conv_fusion(conv_fusion)
        label = {"kernel": kernel, "command_buffers": graphs,
                 "conv_fusion": conv_fusion_label(conv_fusion, model, batch),
                 "fused": fused_label(setting, model) if kernel != "xla" else "",
                 "earlier": earlier_label(earlier, model) if kernel != "xla" else "",
                 "unroll": cached_loop.column_unroll()}
        try:
          cached = timed(lambda: pj.sample(model, variables, key, batch, kernel=kernel,
                                           mesh=one_device,
                                           command_buffers=CHOICES[graphs]))
        except Exception as e:  # A kernel that fails to build must not end the sweep.
          print(json.dumps({"shape": f"{layers}x{features} k{kernel_size}", **label,
                            "batch": batch, "error": repr(e)[:2000]}), flush=True)
          continue
        if kernel != "xla":  # The library may have halved its block to fit.
          label["fused"] = fused_label(setting, model)
        r = {"shape": f"{layers}x{features} k{kernel_size}", "dtype": dtype_name,
             "precision": precision or "default",
             "channel_align": model.channel_align, **label, "batch": batch,
             "cached_s": cached, "naive_s": naive,
             "naive": how, "speedup": naive / cached, "floor_bytes_s": bw_floor,
             "floor_flops_s": flop_floor, "device": jax.devices()[0].device_kind,
             "date": datetime.date.today().isoformat(),
             "xla_flags": os.environ.get("XLA_FLAGS", "")}
        print(json.dumps(r), flush=True)
        rows.append(r)

  set_fused(fused[0], unrolls[0], earliers[0])
  set_conv_fusion(conv_fusions[0])
  agree = []
  for spec in agreement_dtypes:
    dtype, _, precision = spec.partition(":")
    model, variables = make(*agreement_shape, jnp.dtype(dtype),
                            None if precision in ("", "default") else precision, aligns[0])
    num = args.agreement_num
    naive = (pj.sample(model, variables, key, num, method="naive", mesh=one_device)
             if args.agreement_naive else None)
    for kernel in kernels:
      try:
        cached = pj.sample(model, variables, key, num, kernel=kernel, mesh=one_device)
      except Exception as e:
        print(json.dumps({"agreement": dtype, "kernel": kernel, "error": repr(e)[:2000]}),
              flush=True)
        continue
      redrawn = pj.sampling.redraw(model, variables, key, cached)
      r = {"agreement": dtype, "precision": precision or "default", "kernel": kernel,
           "channel_align": model.channel_align, "fused": args.fused.split(",")[0],
           "earlier": args.earlier.split(",")[0], "unroll": cached_loop.column_unroll(),
           "conv_fusion": conv_fusion_label(conv_fusions[0], model, num),
           "shape": args.agreement_shape, "num": num, "subpixels": cached.size,
           "per_step_disagreement": float((redrawn != cached).mean()),
           "per_step_disagreements": int((redrawn != cached).sum()),
           "device": jax.devices()[0].device_kind,
           "date": datetime.date.today().isoformat(),
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
      if naive is not None:
        first = np.flatnonzero((naive != cached).reshape(num, -1).any(0))
        r.update(identical=bool((naive == cached).all()),
                 differing_subpixel_rate=float((naive != cached).mean()),
                 first_difference_at=int(first[0]) if len(first) else None)
      print(json.dumps(r), flush=True)
      agree.append(r)
  if args.out:
    with open(args.out, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows + agree)
  print(f"\n{'shape':>10} {'dtype':>16} {'align':>5} {'kernel':>7} {'fused':>15} "
        f"{'earlier':>8} {'graphs':>6} {'convfu':>7} {'unroll':>6} {'batch':>5} "
        f"{'cached s':>9} {'naive s':>9} {'':>5} {'speedup':>8} {'floor(B) s':>10} "
        f"{'floor(F) s':>10}")
  for r in rows:
    print(f"{r['shape']:>10} {dtype_label(r):>16} {r['channel_align']:5d} {r['kernel']:>7} "
          f"{r['fused']:>15} {r['earlier']:>8} {r['command_buffers']:>6} {r['conv_fusion']:>7} "
          f"{r['unroll']:6d} {r['batch']:5d} "
          f"{r['cached_s']:9.3f} {r['naive_s']:9.1f} "
          f"{r['naive'][:5]:>5} {r['speedup']:8.0f} {r['floor_bytes_s']:10.4f} "
          f"{r['floor_flops_s']:10.4f}")
  if args.plot and rows:
    plot(rows, args.plot)


if __name__ == "__main__":
  main()
