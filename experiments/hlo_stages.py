"""How many kernels a compiled training step launches, by stage and kind.

  python experiments/hlo_stages.py HLO.txt.gz [...]      # written by profile_train.py --hlo
  python experiments/hlo_stages.py [--shape=15x132k3] [--dtype=bfloat16] [--batch=8]
      [--align=0] [--optimizer=adamw] [--set=KEY=VALUE ...] [--out=FILE.jsonl]

Counts the instructions of the optimised HLO's entry computation that run
work (fusions, library calls, copies; not parameters, tuples or bitcasts),
each in the stage its op_name names: `forward` (inside JAX's jvp),
`backward` (inside its transpose), `update` (everything else the step
traces: the optimizer, the EMA, the norms and the health check), and
`unnamed` (ops XLA made itself: layout changes and casts). Without files, it
compiles the step of `bench_train.py`'s model on this machine's backend, so
two checkouts compare on a CPU; a GPU's counts come from its own HLO, since
XLA fuses differently there. A profile's trace names kernels, not
instructions (identical fusions share a kernel), so it cannot split device
time by stage; these counts say where the launches are.
"""

import argparse
import collections
import datetime
import gzip
import json
import re

STAGES = ("forward", "backward", "update", "unnamed")
SKIPPED = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
KINDS = (  # (kind, pattern on "name opcode custom_call_target"), first match wins.
    ("convolution", r"\bconvolution\b|cudnn-conv|__cudnn\$conv"),
    ("matmul", r"\bdot\b|gemm|cublas|matmul"),
    ("convolution or matmul (CPU)", r"\b[xy]nn_fusion"),  # XLA:CPU's XNNPACK/YNNPACK calls.
    ("reduction", r"reduce"),
    ("transpose or copy", r"transpose|\bcopy\b"),
    ("other fusion", r"fusion"),
)
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([\w\-]+)\(")


def entry_lines(hlo: str) -> list[str]:
  """The instruction lines of the entry computation."""
  start = re.search(r"^ENTRY .*\{$", hlo, re.M)
  if start is None:
    raise SystemExit("error: no ENTRY computation in the HLO")
  body = hlo[start.end():]
  return body[:body.index("\n}")].splitlines()


def stage(line: str) -> str:
  op_name = re.search(r'op_name="([^"]*)"', line)
  name = op_name.group(1) if op_name else ""
  if not name:
    return "unnamed"
  return "backward" if "transpose(" in name else "forward" if "jvp(" in name else "update"


def kind(name: str, opcode: str, line: str) -> str:
  target = re.search(r'custom_call_target="([^"]*)"', line)
  text = f"{name} {opcode} {target.group(1) if target else ''}"
  return next((k for k, pattern in KINDS if re.search(pattern, text)), opcode)


def count(hlo: str) -> dict:
  """{stage: {kind: instructions}} over the entry computation, and a total."""
  counts = {s: collections.Counter() for s in STAGES}
  for line in entry_lines(hlo):
    m = INSTRUCTION.match(line)
    if m and m.group(2) not in SKIPPED:
      counts[stage(line)][kind(m.group(1), m.group(2), line)] += 1
  return {"stages": {s: dict(c.most_common()) for s, c in counts.items()},
          "total": sum(sum(c.values()) for c in counts.values())}


def compiled_step_hlo(args) -> tuple[str, dict]:
  """The optimised HLO of bench_train.py's step for these arguments, compiled
  here without running, and the case it describes."""
  import jax
  import jax.numpy as jnp

  import bench_train
  from pixelcnn_jax import train
  from pixelcnn_jax import train_state as ts

  layers, features, kernel = bench_train.parse_shape(args.shape, "--shape")
  base = bench_train.config_for(layers, features, kernel, args.dtype, args.batch, args.align,
                                optimizer=args.optimizer)
  cfg = bench_train.config_for(
      layers, features, kernel, args.dtype, args.batch, args.align,
      optimizer=args.optimizer,
      overrides=[bench_train.parse_override(s, base) for s in args.set])
  mesh = bench_train.make_mesh(1, 1)
  model, tx, _, step = train.setup(cfg, mesh)
  state = ts.state_shapes(cfg, model, tx)
  images = jax.ShapeDtypeStruct((args.batch, *cfg.data.image_size, cfg.model.channels),
                                jnp.uint8)
  hlo = step.lower(state, images, None, jax.random.PRNGKey(0)).compile().as_text()
  case = {"shape": args.shape, "dtype": args.dtype, "batch": args.batch,
          "channel_align": ts.channel_align(args.align), "optimizer": args.optimizer,
          "set": args.set, "backend": jax.default_backend(), "jax": jax.__version__}
  return hlo, case


def report(source: str, result: dict) -> None:
  print(f"{source}: {result['total']} kernels")
  for s, kinds in result["stages"].items():
    listed = ", ".join(f"{k} {n}" for k, n in kinds.items())
    print(f"  {s:9s}{sum(kinds.values()):6d}  {listed}")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("hlo", nargs="*", help="gzipped or plain optimised HLO text files")
  p.add_argument("--shape", default="15x132k3")
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--align", type=int, default=0)
  p.add_argument("--optimizer", default="adamw")
  p.add_argument("--set", action="append", default=[])
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  rows = []
  for path in args.hlo:
    try:
      with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
        hlo = f.read()
    except OSError as e:
      raise SystemExit(f"error: cannot read {path}: {e}") from None
    rows.append(({"hlo": path}, hlo))
  if not args.hlo:
    hlo, case = compiled_step_hlo(args)
    rows.append((case, hlo))
  for case, hlo in rows:
    result = {**case, **count(hlo), "date": datetime.date.today().isoformat()}
    report(case.get("hlo") or f"{args.shape} batch {args.batch} on {case['backend']}", result)
    if args.out:
      with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  main()
