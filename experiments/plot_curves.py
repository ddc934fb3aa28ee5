"""Train and held-out bits/dim against wall-clock minutes, from a workdir's metrics.

  python experiments/plot_curves.py WORKDIR OUT.png [--title=TEXT]

Reads WORKDIR/metrics.jsonl (one JSON object per line, with `time`); minutes
count from its first line, the start of training.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend choice)


def curves(workdir: str) -> dict:
  """{name: [(minutes, value), ...]} of the train_<objective> metric and of
  each eval_<objective>_<weights> and eval_train_<objective>_<weights> one."""
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      records = [json.loads(line) for line in f if line.strip()]
  except OSError as e:
    raise SystemExit(f"error: cannot read {path}: {e.strerror}") from None
  if not records:
    raise SystemExit(f"error: {workdir}/metrics.jsonl is empty")
  start = records[0]["time"]
  out = {}
  for r in records:
    for name, value in r.items():
      if (name.startswith("train_") and name != "train_step") or (
          name.startswith("eval_") and name.endswith(("_live", "_ema"))):
        out.setdefault(name, []).append(((r["time"] - start) / 60.0, value))
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("out")
  p.add_argument("--title", default="")
  args = p.parse_args()
  fig, ax = plt.subplots(figsize=(6, 4))
  found = curves(args.workdir)
  unit = next((n[len("train_"):] for n in found if n.startswith("train_")), "bpd")
  fit = lambda n: n.startswith("eval_train_")  # Training images, dropout off.
  weights = lambda n: "live weights" if n.endswith("_live") else "EMA"
  label = lambda n: ("train (window mean)" if n.startswith("train_") else
                     f"train images, eval mode, {weights(n)}" if fit(n) else
                     f"held-out, {weights(n)}")
  for name, points in sorted(found.items()):
    train = name.startswith("train_")
    ax.plot(*zip(*points), "-" if train else "x--" if fit(name) else "o-", label=label(name),
            lw=1 if train or fit(name) else 1.5)
  best = min((v for n, pts in found.items() if n.startswith("eval_") and not fit(n)
              for _, v in pts), default=None)
  if best is not None:
    ax.axhline(best, color="gray", ls=":", lw=1)
    ax.set_ylim(best - 0.1 * abs(best), best + 0.3 * abs(best) + 0.1)
  ax.set_xlabel("wall-clock minutes since the start of training")
  ax.set_ylabel({"bpd": "bits/dim"}.get(unit, unit))
  ax.set_title(args.title or os.path.basename(os.path.normpath(args.workdir)))
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(args.out, dpi=120)
  print(args.out)


if __name__ == "__main__":
  main()
