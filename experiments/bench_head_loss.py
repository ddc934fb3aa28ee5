"""The head's last 1x1 and the likelihood: XLA's ops against head_loss's kernel.

  python experiments/bench_head_loss.py [--batches=256,128] [--image=32x32x3]
      [--features=132] [--depth=160] [--configs=64x4x1:32x4x2,...]
      [--programs=264] [--reps=20] [--out=FILE.jsonl]

The operands are a training step's: the head's bf16 input [B, H, W, depth]
(its width aligned, zeros past --features), bf16 weights [depth, C*256],
float32 biases, uint8 images. Per case: ms a call (calls back to back, the
median of 5 rounds of --reps), bits/dim only and with the gradients of the
input, the weights and the bias, and the largest difference from XLA's.
A config is ROWSxWARPS[xSTAGES] of the kernel without the residual, then
with it (head_loss.CONFIG; stages 1 where left out); --programs, the
kernel's programs over all colours (head_loss.PROGRAMS). Off a GPU the
kernel runs in Pallas's interpreter: a check, not a timing.
"""

import argparse
import datetime
import json

import jax
import jax.numpy as jnp
import numpy as np

from bench_nll import image_shape, int_list, timed
from pixelcnn_jax import head_loss

LEVELS = head_loss.NUM_LEVELS


def operands(batch: int, image, features: int, depth: int, seed: int = 0):
  (height, width, colours), rng = image, np.random.default_rng(seed)
  x = np.zeros((batch, height, width, depth), np.float32)
  x[..., :features] = np.maximum(rng.normal(0, 1, (batch, height, width, features)), 0)
  w = np.zeros((depth, colours * LEVELS), np.float32)
  w[:features] = rng.normal(0, features ** -0.5, (features, colours * LEVELS))
  return (jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16),
          jnp.asarray(rng.normal(0, 1, colours * LEVELS), jnp.float32),
          jnp.asarray(rng.integers(0, LEVELS, (batch, *image)), jnp.uint8))


def functions(features: int, config):
  """(bits/dim, bits/dim and gradients), jitted; config None: XLA's ops."""
  def bits(x, w, b, t):
    head_loss.BACKENDS = () if config is None else (jax.default_backend(),)
    head_loss.MAX_DEPTH = x.shape[-1]
    return head_loss.image_bits(x, w, b, t, features, config=config or head_loss.CONFIG)

  def mean(x, w, b, t):
    return jnp.mean(bits(x, w, b, t))
  return jax.jit(bits), jax.jit(jax.value_and_grad(mean, argnums=(0, 1, 2)))


def max_diff(a, b) -> float:
  return max(float(jnp.max(jnp.abs(jnp.asarray(u, jnp.float32) - jnp.asarray(v, jnp.float32))))
             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def config_name(config) -> str:
  return ":".join("x".join(str(n) for n in half) for half in config)


def _with_stages(numbers):
  return numbers + (1,) if len(numbers) == 2 else numbers


def parse_configs(text: str):
  try:
    configs = [tuple(_with_stages(tuple(int(n) for n in half.split("x")))
                     for half in c.split(":")) for c in text.split(",")]
  except ValueError:
    configs = []
  if not configs or any(len(c) != 2 or any(len(h) != 3 or min(h) < 1 for h in c)
                        for c in configs):
    raise SystemExit("--configs: ROWSxWARPS[xSTAGES]:ROWSxWARPS[xSTAGES], comma-separated, "
                     f"got {text!r}")
  return configs


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batches", default="256,128")
  p.add_argument("--image", default="32x32x3", help="HEIGHTxWIDTHxCHANNELS")
  p.add_argument("--features", type=int, default=132, help="the head's true width")
  p.add_argument("--depth", type=int, default=160, help="its aligned width")
  p.add_argument("--configs", default=config_name(head_loss.CONFIG))
  p.add_argument("--programs", type=int, default=head_loss.PROGRAMS)
  p.add_argument("--reps", type=int, default=20)
  p.add_argument("--out", default="")
  args = p.parse_args()
  image = image_shape(args.image)
  if not 0 < args.features <= args.depth:
    raise SystemExit(f"--features must be in 1..--depth ({args.depth}), got {args.features}")
  configs = parse_configs(args.configs)
  if args.programs < 1:
    raise SystemExit(f"--programs must be at least 1, got {args.programs}")
  head_loss.PROGRAMS = args.programs
  for batch in int_list(args.batches, "--batches"):
    rows = batch * image[0] * image[1]
    bad = [c for c in configs if not head_loss.kernel_fits(rows, args.depth, jnp.bfloat16, c)]
    if bad:
      raise SystemExit(f"--configs {','.join(config_name(c) for c in bad)} or --depth "
                       f"{args.depth}: the kernel needs blocks that divide the {rows} rows "
                       f"and a depth that is a multiple of {head_loss.MIN_CHUNK}")
    ops = operands(batch, image, args.features, args.depth)
    xla_bits, xla_grad = functions(args.features, None)
    ref_bits, ref_grad = xla_bits(*ops), xla_grad(*ops)[1]

    # The weights' rows past the true width are padding, whose gradient the
    # model drops; the kernel's holds the bias's in one of them.
    def true_rows(grads):
      dx, dw, db = grads
      return dx, dw[:args.features], db
    for config in [None, *configs]:
      bits, grad = functions(args.features, config)
      name = "xla" if config is None else "kernel " + config_name(config)
      row = {"case": name, "batch": batch, "image": args.image, "depth": args.depth,
             "programs": args.programs,
             "ms_forward": timed(bits, ops, args.reps),
             "ms_with_grad": timed(grad, ops, args.reps),
             "max_bits_diff": max_diff(bits(*ops), ref_bits),
             "max_grad_diffs": [max_diff(a, b) for a, b in
                                zip(true_rows(grad(*ops)[1]), true_rows(ref_grad))],
             "max_grads": [max_diff(a, jnp.zeros_like(a)) for a in true_rows(ref_grad)],
             "device": jax.devices()[0].device_kind,
             "date": datetime.date.today().isoformat(), "jax": jax.__version__}
      print(f"{batch:4d} {name:18s} bits {row['ms_forward']:7.3f} ms  with grads "
            f"{row['ms_with_grad']:7.3f} ms  diff bits {row['max_bits_diff']:.1e} grads "
            + " ".join(f"{d:.1e}/{m:.1e}" for d, m in zip(row["max_grad_diffs"],
                                                         row["max_grads"])))
      if args.out:
        with open(args.out, "a") as f:
          f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
