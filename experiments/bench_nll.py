"""The NLL's forward pass over a training step's float32 logits: XLA's
reduction (likelihood.py) against a Pallas kernel (below).

  python experiments/bench_nll.py [--batches=256,128] [--image=32x32x3]
      [--blocks=64,32,16] [--warps=4,8] [--reps=50] [--out=FILE.jsonl]

Per case: ms a call (calls back to back, the median of 5 rounds of --reps),
the logits' read rate (TB/s), and the largest difference from XLA's NLL
and log-sum-exp. "xla+grad" and "kernel+grad" time the forward and backward
passes together, as a training step runs them (the backward pass is XLA's
in both). XLA's reduction combines partial log-sum-exps online, two
exponentials a logit; the kernel holds blocks of whole rows (a sub-pixel's
256 logits), takes the max first and one exponential a logit. It saved
0.05 ms of a 43 ms step on an H100 (experiments/RESULTS.md); the library's
kernel (pixelcnn_jax/head_loss.py, bench_head_loss.py) also makes the
logits, so that they are never written.
"""

import argparse
import datetime
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pixelcnn_jax import likelihood

NUM_LEVELS = likelihood.NUM_LEVELS


def _kernel(logits_ref, x_ref, nll_ref, lse_ref):
  logits = logits_ref[...]
  m = jnp.max(logits, axis=1)
  # A row of -inf logits would give (-inf) - (-inf) = nan below; XLA's path
  # gives -inf there too, and the step's health check stops either.
  shift = jnp.where(jnp.isfinite(m), m, 0.0)
  s = jnp.sum(jnp.exp(logits - shift[:, None]), axis=1)
  target = x_ref[...].astype(jnp.int32)
  levels = lax.broadcasted_iota(jnp.int32, logits.shape, 1)
  picked = jnp.sum(jnp.where(levels == target[:, None], logits, 0.0), axis=1)
  lse = shift + jnp.log(s)
  nll_ref[...] = lse - picked
  lse_ref[...] = lse


@functools.lru_cache(maxsize=None)
def _call(rows: int, block: int, warps: int, interpret: bool):
  spec = pl.BlockSpec((block,), lambda i: (i,))
  return pl.pallas_call(
      _kernel, grid=(rows // block,),
      in_specs=[pl.BlockSpec((block, NUM_LEVELS), lambda i: (i, 0)), spec],
      out_specs=[spec, spec],
      out_shape=[jax.ShapeDtypeStruct((rows,), jnp.float32)] * 2,
      compiler_params=None if interpret else pltriton.CompilerParams(num_warps=warps),
      interpret=interpret)


def nll_and_lse(logits_RK, x_R, block: int, warps: int, interpret: bool):
  """(-log softmax(logits)[x], logsumexp(logits)) per row, float32 [R] each,
  from float32 logits [R, 256] and integer x [R]; block rows per kernel
  instance, a divisor of R."""
  return tuple(_call(logits_RK.shape[0], block, warps, interpret)(logits_RK, x_R))


def timed(fn, args, reps: int) -> float:
  """Median ms a call over 5 rounds of reps calls back to back."""
  jax.block_until_ready(fn(*args))
  rounds = []
  for _ in range(5):
    start = time.perf_counter()
    for _ in range(reps):
      out = fn(*args)
    jax.block_until_ready(out)
    rounds.append((time.perf_counter() - start) / reps * 1e3)
  return statistics.median(rounds)


def int_list(text: str, flag: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",")]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    raise SystemExit(f"{flag}: expected positive integers separated by commas, got {text!r}")
  return values


def image_shape(text: str) -> tuple[int, int, int]:
  """(height, width, channels) of --image's HEIGHTxWIDTHxCHANNELS."""
  image = tuple(int_list(text.replace("x", ","), "--image"))
  if len(image) != 3:
    raise SystemExit(f"--image: HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3, got {text!r}")
  return image


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batches", default="256,128")
  p.add_argument("--image", default="32x32x3", help="HEIGHTxWIDTHxCHANNELS")
  p.add_argument("--blocks", default="64,32,16", help="rows per kernel instance")
  p.add_argument("--warps", default="4,8")
  p.add_argument("--reps", type=int, default=50)
  p.add_argument("--out", default="")
  args = p.parse_args()
  image = image_shape(args.image)
  blocks, warps_list = int_list(args.blocks, "--blocks"), int_list(args.warps, "--warps")
  # Off a GPU the kernel runs in Pallas's interpreter: a check, not a timing.
  interpret = jax.default_backend() != "gpu"
  for batch in int_list(args.batches, "--batches"):
    shape = (batch, *image)
    rows = int(np.prod(shape))
    bad = [b for b in blocks if rows % b]
    if bad:
      raise SystemExit(f"--blocks: {bad} do not divide the {rows} rows of batch {batch}")
    rng = np.random.default_rng(0)
    logits = jax.device_put(rng.normal(0, 3, (*shape, NUM_LEVELS)).astype(np.float32))
    x = jax.device_put(rng.integers(0, NUM_LEVELS, shape, np.uint8))
    ref_nll = jax.jit(lambda l, t: likelihood._nll_fwd(l, t)[0])(logits, x)
    ref_lse = jax.jit(lambda l: jax.nn.logsumexp(l, axis=-1))(logits)

    def grad_of(fwd):
      @jax.custom_vjp
      def nll(l, t):
        return fwd(l, t)[0]
      nll.defvjp(fwd, likelihood._nll_bwd)
      return jax.jit(jax.grad(lambda l, t: jnp.sum(nll(l, t)) / rows))

    cases = [("xla", jax.jit(lambda l, t: likelihood._nll_fwd(l, t)[0]), None),
             ("xla+grad", grad_of(likelihood._nll_fwd), None)]
    for block in blocks:
      for warps in warps_list:
        def fwd(l, t, block=block, warps=warps):
          nll, lse = nll_and_lse(l.reshape(-1, NUM_LEVELS), t.reshape(-1), block, warps,
                                 interpret)
          return nll.reshape(t.shape), (l, lse.reshape(t.shape), t)
        cases.append((f"kernel b{block} w{warps}", jax.jit(lambda l, t, f=fwd: f(l, t)[0]),
                      fwd))
        cases.append((f"kernel+grad b{block} w{warps}", grad_of(fwd), None))
    for name, fn, fwd in cases:
      ms = timed(fn, (logits, x), args.reps)
      row = {"case": name, "batch": batch, "image": args.image, "ms": ms,
             "read_tb_per_s": None if fwd is None and "grad" in name
             else rows * NUM_LEVELS * 4 / 1e9 / ms}
      if fwd is not None:
        nll, (_, lse, _) = jax.jit(fwd)(logits, x)
        row["max_nll_diff"] = float(jnp.max(jnp.abs(nll - ref_nll)))
        row["max_lse_diff"] = float(jnp.max(jnp.abs(lse - ref_lse)))
      row.update(device=jax.devices()[0].device_kind,
                 date=datetime.date.today().isoformat(), jax=jax.__version__)
      print(f"{batch:4d} {name:22s} {ms:7.3f} ms"
            + (f" {row['read_tb_per_s']:5.2f} TB/s" if row["read_tb_per_s"] else "")
            + (f"  diff nll {row['max_nll_diff']:.1e} lse {row['max_lse_diff']:.1e}"
               if fwd is not None else ""))
      if args.out:
        with open(args.out, "a") as f:
          f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
