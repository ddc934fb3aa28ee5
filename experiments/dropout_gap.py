"""Dropout's train/eval gap in a trained workdir, checkpoint by checkpoint.

  python experiments/dropout_gap.py WORKDIR --npz_dir=DIR --split=holdout \
      [--holdout=5000] [--examples=1000] [--masks=4] [--weights=live] \
      [--steps=all] [--dropout=RATE] [--per_layer] [--out=gap.jsonl]

For each kept checkpoint (or --steps), on the first --examples images of
--split (read as the workdir's config reads npz data, with --npz_dir and
--holdout in place of its own):
- bits/dim in eval mode (dropout off) and in train mode (dropout on, the
  mean over --masks masks): a train-mode score far below the eval-mode one
  means the weights depend on dropout's noise, which overfitting does not
  explain when training images score like held-out ones in eval mode;
- per layer, the RMS of the residual stream in eval mode, and how far
  dropout moves it (RMS of train minus eval, over the eval RMS), which shows
  where along the depth the noise grows;
- per layer, the RMS of the horizontal gate's pre-activation in eval mode
  (how far into tanh's and the sigmoid's flat ends it reaches), and of
  each kernel of the gated stacks;
- with --per_layer, bits/dim with dropout on in one layer at a time (the
  others off), which finds the layer whose noise the weights depend on.
One JSON line per checkpoint to --out, and a table on stdout.
"""

import argparse
import json
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pixelcnn_jax import checkpoint, datasets, input_pipeline, likelihood
from pixelcnn_jax import train_state as ts
from pixelcnn_jax.errors import UserError

KERNELS = ("v_conv", "h_conv", "v_to_h", "h_out")


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  # One line, not argparse's usage block: every refusal here reads the same.
  p.error = lambda message: sys.exit(f"error: {message}")
  p.add_argument("workdir")
  p.add_argument("--npz_dir", required=True, help="folder of the npz files trained on")
  p.add_argument("--split", default="holdout", help="holdout, train or test")
  p.add_argument("--holdout", type=int, default=-1,
                 help="data.holdout (-1: the workdir's own)")
  p.add_argument("--examples", type=int, default=1000)
  p.add_argument("--batch", type=int, default=250)
  p.add_argument("--masks", type=int, default=4, help="dropout masks averaged in train mode")
  p.add_argument("--weights", default="live", choices=("live", "ema"))
  p.add_argument("--dropout", type=float, default=-1.0,
                 help="dropout rate in train mode (-1: the workdir's own)")
  p.add_argument("--steps", default="all", help="'all' or comma-separated checkpoint steps")
  p.add_argument("--per_layer", action="store_true",
                 help="also score train mode with dropout in one layer at a time")
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args(argv)
  if not args.npz_dir.strip():
    p.error("--npz_dir is empty (an unset shell variable?); name the folder of the npz "
            "files")
  for name in ("examples", "batch", "masks"):
    if getattr(args, name) < 1:
      p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
  if args.dropout != -1.0 and not 0.0 <= args.dropout < 1.0:
    p.error(f"--dropout must be in [0, 1), got {args.dropout}")
  if args.steps != "all":
    try:
      args.steps = [int(s) for s in args.steps.split(",")]
    except ValueError:
      p.error(f"--steps: 'all' or comma-separated step numbers, got {args.steps!r}")
  return args


def kernel_rms(params, num_layers: int) -> list[dict]:
  """Per layer, the RMS of each gated-stack kernel (masked entries included:
  they are what the optimizer sees)."""
  return [{name: float(jnp.sqrt(jnp.mean(jnp.square(layer[name]["kernel"]))))
           for name in KERNELS if name in layer}
          for layer in (params[f"layers_{i}"] for i in range(num_layers))]


def only_in_layer(layer):
  """A method interceptor that turns off every Dropout outside `layer`."""
  def intercept(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout) and context.module.path[0] != f"layers_{layer}":
      kwargs = {**kwargs, "deterministic": True}
    return next_fun(*args, **kwargs)
  return intercept


def make_scorer(model):
  """(bits/dim, [residual stream after each layer], [its mean square], [mean
  square of its move from `clean`], [RMS of the horizontal gate's
  pre-activation]) in either mode; `only`: dropout in that layer alone."""
  two_p = 2 * model.features

  def score(params, images, h, key, train, clean, only=None):
    apply = lambda: model.apply(
        {"params": params}, images, h=h, train=train, rngs={"dropout": key},
        capture_intermediates=lambda mdl, method: (
            method in ("horizontal", "vertical")
            or (method == "__call__" and mdl.name == "h_conv")),
        mutable=["intermediates"])
    if only is None:
      logits, state = apply()
    else:
      with nn.intercept_methods(only_in_layer(only)):
        logits, state = apply()
    layers = [state["intermediates"][f"layers_{i}"] for i in range(model.num_layers)]
    out = [v["horizontal"][0][0][..., :model.features].astype(jnp.float32) for v in layers]
    # The gate's input: the row's convolution (its bias and the link's
    # folded in) plus the link from the vertical stack.
    pre = [(v["h_conv"]["__call__"][0] + v["vertical"][0][1])[..., :two_p]
           .astype(jnp.float32) for v in layers]
    moves = [jnp.mean(jnp.square(o - c)) for o, c in zip(out, clean or out)]
    return (likelihood.bits_per_dim(logits, images), out,
            jnp.stack([jnp.mean(jnp.square(o)) for o in out]), jnp.stack(moves),
            jnp.stack([jnp.sqrt(jnp.mean(jnp.square(x))) for x in pre]))
  return jax.jit(score, static_argnums=(4, 6))


def gap_at(score, params, batches, masks: int, per_layer: int = 0) -> dict:
  """The row's scores; `per_layer`: the number of layers to score one by one."""
  eval_bpd, train_bpd, square, move, pre = [], [], [], [], []
  only = [[] for _ in range(per_layer)]
  for b, (images, h) in enumerate(batches):
    key = jax.random.key(b)
    bpd, clean, sq, _, pre_rms = score(params, images, h, key, False, None)
    eval_bpd.append(np.asarray(bpd))
    square.append(np.asarray(sq))
    pre.append(np.asarray(pre_rms))
    for m in range(masks):
      bpd_m, _, _, mv, _ = score(params, images, h, jax.random.fold_in(key, m + 1), True,
                                clean)
      train_bpd.append(np.asarray(bpd_m))
      move.append(np.asarray(mv))
      for i in range(per_layer):
        only[i].append(np.asarray(score(params, images, h, jax.random.fold_in(key, m + 1),
                                        True, None, i)[0]))
  square, move = np.mean(square, axis=0), np.mean(move, axis=0)
  row = {"eval_bpd": float(np.mean(np.concatenate(eval_bpd))),
         "train_bpd": float(np.mean(np.concatenate(train_bpd))),
         "stream_rms": np.sqrt(square).tolist(),
         "noise_ratio": np.sqrt(move / square).tolist(),
         "pre_rms": np.mean(pre, axis=0).tolist()}
  if per_layer:
    row["only_layer_bpd"] = [float(np.mean(np.concatenate(o))) for o in only]
  return row


def main(argv=None) -> int:
  args = parse(sys.argv[1:] if argv is None else argv)
  with checkpoint.manager(args.workdir, read_only=True) as mngr:
    kept = sorted(mngr.all_steps())
  if not kept:
    raise UserError(f"no checkpoints in {args.workdir}")
  steps = kept if args.steps == "all" else args.steps
  missing = sorted(set(steps) - set(kept))
  if missing:
    raise UserError(f"no checkpoint at step(s) {missing} in {args.workdir} (kept: {kept})")
  for step in steps:
    model, weights, _, _, config = checkpoint.restore_weights(args.workdir, step=step,
                                                              which=args.weights)
    if step == steps[0]:
      config.data.dataset, config.data.npz_dir = "npz", args.npz_dir
      if args.holdout >= 0:
        config.data.holdout = args.holdout
      split = datasets.open_for_model(config, args.split)
      if len(split) < args.examples or args.examples % args.batch:
        raise UserError(f"--examples={args.examples} must be a multiple of --batch="
                        f"{args.batch} and at most the split's {len(split)} images")
      batches = [(jnp.asarray(b["image"]), None if b["h"] is None else jnp.asarray(b["h"]))
                 for b in input_pipeline.eval_batches(split, args.batch, config.model,
                                                      args.examples)]
      if args.dropout >= 0:
        config.model.dropout = args.dropout
        model = ts.make_model(config.model, config.data.image_size)
      # One compilation for every checkpoint: they share the architecture.
      score = make_scorer(model)
    params = weights[args.weights]
    if params is None:
      raise UserError(f"checkpoint {step} keeps no {args.weights} weights")
    row = {"step": step, "weights": args.weights, "split": args.split,
           "examples": args.examples, "masks": args.masks,
           **gap_at(score, params, batches, args.masks,
                    model.num_layers if args.per_layer else 0),
           "kernel_rms": kernel_rms(params, model.num_layers)}
    print(f"step {step:>7}  eval mode {row['eval_bpd']:.4f}  train mode {row['train_bpd']:.4f}"
          f"  gap {row['eval_bpd'] - row['train_bpd']:+.4f}  noise/stream by layer "
          + " ".join(f"{r:.2f}" for r in row["noise_ratio"]) + "  gate input RMS "
          + " ".join(f"{r:.1f}" for r in row["pre_rms"])
          + ("  dropout in one layer only " + " ".join(f"{b:.4f}" for b in row["only_layer_bpd"])
             if args.per_layer else ""), flush=True)
    if args.out:
      with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except UserError as e:
    sys.exit(f"error: {e}")
