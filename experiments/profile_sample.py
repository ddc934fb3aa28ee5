"""Where the cached sampler's time goes: device time per op, and the gaps.

  python experiments/profile_sample.py [--shape=15x132k3] [--batch=16]
      [--kernel=auto] [--fused=auto|STAGESxBLOCK[xWARPS]] [--top=25] [--out=FILE.jsonl]

Traces one pj.sample call of 32x32x3 images (after compiling and warming
it) with jax.profiler and sums device time per XLA op or CUDA kernel
(profile_train.op_times). The sampler makes 3,072 sequential steps, so what
matters is a sub-pixel's cost: the script prints the launches and device
microseconds per sub-pixel, each op's share, and how much of the wall time
the device was idle (launch and host gaps, which fusing removes; device
time, which it does not).
"""

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import pixelcnn_jax as pj
from pixelcnn_jax import fused_pass

import bench_sample
import bench_train
import profile_train

SUBPIXELS = 32 * 32 * 3
KINDS = (("fused colour pass (Pallas)", r"pass_kernel|pallas"),) + profile_train.KINDS


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--shape", default="15x132k3")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--kernel", default="auto", choices=pj.sampling.KERNELS)
  p.add_argument("--fused", default="auto")
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  layers, features, kernel_size = bench_train.parse_shape(args.shape, "--shape")
  fused_pass.OVERRIDE = bench_sample.parse_fused(args.fused)
  model, variables = bench_sample.make(layers, features, kernel_size, jnp.bfloat16)
  one_device = Mesh(np.array(jax.devices()[:1]), ("data",))
  draw = lambda: pj.sample(model, variables, jax.random.PRNGKey(1), args.batch,
                           kernel=args.kernel, mesh=one_device)
  draw()
  draw()
  trace_dir = tempfile.mkdtemp(prefix="profile_sample_")
  with jax.profiler.trace(trace_dir):
    t0 = time.perf_counter()
    draw()
    wall_s = time.perf_counter() - t0
  total_ns, count = profile_train.device_times(trace_dir)
  all_ns = sum(total_ns.values())
  idle = max(0.0, 1 - all_ns / 1e9 / wall_s)
  print(f"{args.shape} batch {args.batch} kernel={args.kernel} fused={args.fused}: "
        f"{wall_s:.3f} s wall, {all_ns / 1e9:.3f} s device ({idle:.0%} idle); a sub-pixel: "
        f"{sum(count.values()) / SUBPIXELS:.1f} launches, "
        f"{all_ns / 1e3 / SUBPIXELS:.1f} us of device time")
  summary = {
      "shape": args.shape, "batch": args.batch, "kernel": args.kernel,
      "fused": args.fused, "wall_s": wall_s, "device_s": all_ns / 1e9,
      "device_idle_share": idle,
      "launches_per_subpixel": sum(count.values()) / SUBPIXELS,
      "device_us_per_subpixel": all_ns / 1e3 / SUBPIXELS,
      "kinds": profile_train.kind_shares(total_ns, KINDS),
      "top": [{"op": op, "share": ns / all_ns, "us_per_subpixel": ns / 1e3 / SUBPIXELS,
               "calls_per_subpixel": count[op] / SUBPIXELS}
              for op, ns in total_ns.most_common(args.top)],
      "trace_dir": trace_dir}
  for r in summary["top"]:
    print(f"  {r['share']:6.1%} {r['us_per_subpixel']:7.2f} us x{r['calls_per_subpixel']:.2f}  "
          f"{r['op'][:90]}")
  profile_train.write_summary(summary, args.out)


if __name__ == "__main__":
  main()
