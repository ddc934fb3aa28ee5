"""What the host's dispatch costs the train step: waited against pipelined steps.

  python experiments/bench_dispatch.py [--shape=15x132k3] [--batch=256] [--steps=30]
      [--sleeps_ms=0,2,5,10,20] [--repeats=2] [--profile_steps=5] [--out=FILE]

bench_train.py's step (AdamW, random images), timed three ways, --repeats
times: each step waited for, with how long the call takes to return; the
steps dispatched back to back and waited for once at the end, as a training
loop runs them, each also with a host batch put on the device first; and
back to back with the host asleep for each of --sleeps_ms between two calls,
standing for a training loop's own work between steps. Then traces
--profile_steps waited steps (0: none) and reads the GPU's idle gaps from
the trace (profile_train.py --gaps): the gaps between two waited steps are
the host's time from its call to the step's first kernel.
"""

import argparse
import tempfile

import jax

import bench_train
import profile_train
from pixelcnn_jax import xla_defaults


def main():
  xla_defaults.apply()
  p = argparse.ArgumentParser()
  p.add_argument("--shape", default="15x132k3", help="LAYERSxFEATURESkKERNEL")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--sleeps_ms", default="0,2,5,10,20")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--profile_steps", type=int, default=5)
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  layers, features, kernel = bench_train.parse_shape(args.shape, "--shape")
  try:
    sleeps = [float(s) for s in args.sleeps_ms.split(",")]
  except ValueError:
    sleeps = [-1.0]
  if min(sleeps) < 0:
    raise SystemExit(f"--sleeps_ms: milliseconds >= 0, comma-separated, e.g. 0,5, "
                     f"got {args.sleeps_ms!r}")
  if min(args.batch, args.steps, args.repeats) < 1 or args.profile_steps < 0:
    raise SystemExit("--batch, --steps and --repeats must be >= 1, --profile_steps >= 0")
  run = bench_train.Stepper(
      bench_train.config_for(layers, features, kernel, "bfloat16", args.batch),
      bench_train.make_mesh(1, 1), args.batch)
  for i in range(3):  # Compiles, and warms the allocator.
    run(i)
  run.wait()
  rows = []
  for repeat in range(args.repeats):
    cases = {"waited": bench_train.waited(run, args.steps),
             "pipelined": bench_train.pipelined(run, args.steps),
             "pipelined, batch from the host": bench_train.pipelined(run, args.steps,
                                                                     from_host=True)}
    cases.update({f"pipelined, host asleep {s:g} ms a step":
                  bench_train.pipelined(run, args.steps, s) for s in sleeps if s})
    for case, r in cases.items():
      rows.append({"case": case, "repeat": repeat, **r,
                   "img_per_s": args.batch * 1e3 / r["step_ms"]})
      print(f"{case:40} {r['step_ms']:8.2f} ms a step ({rows[-1]['img_per_s']:6.0f} img/s), "
            f"the call returns in {r['call_ms']:6.2f} ms", flush=True)
  summary = {"shape": args.shape, "batch": args.batch, "steps": args.steps, "rows": rows}
  if args.profile_steps:
    trace_dir = tempfile.mkdtemp(prefix="bench_dispatch_")
    with jax.profiler.trace(trace_dir):
      for i in range(args.profile_steps):
        run(i)
        run.wait()
    kernels = profile_train.kernel_intervals(trace_dir, lambda name: name.startswith("Stream"))
    if kernels:
      print("waited steps under the profiler:")
      summary["waited_gaps"] = profile_train.idle_gaps(kernels, args.profile_steps)
      profile_train.print_gaps(summary["waited_gaps"])
    else:
      print(f"no GPU kernels in the trace ({jax.devices()[0].device_kind}): no gaps to read")
  profile_train.write_summary(summary, args.out)


if __name__ == "__main__":
  main()
