"""The identity rate of several §3.3 runs (olivetti_h100.sh with RUNS > 1), pooled.

  python experiments/pool_identity.py OUT_DIR RUN_DIR [RUN_DIR ...]

Each RUN_DIR/identity.json is one run's `--mode=portraits` result at its
chosen checkpoint. Writes OUT_DIR/identity.json and prints one line: each
run's rate, the rate over all their portraits, and the mean of the runs with
its standard error. The error is over runs, not portraits: one run's
portraits of a person come from one photo and one pair of networks, so they
are far from independent draws.
"""

import json
import os
import statistics
import sys


def pooled(results: list) -> dict:
  totals = [len(r["people"]) * r["portraits_per_person"] for r in results]
  kept = [round(r["identity_top1"] * n) for r, n in zip(results, totals)]
  rates = [r["identity_top1"] for r in results]
  spread = statistics.stdev(rates) if len(rates) > 1 else float("nan")
  return {"runs": len(results), "portraits": sum(totals), "kept": sum(kept),
          "identity_top1": sum(kept) / sum(totals), "run_rates": rates,
          "run_steps": [r["step"] for r in results], "mean_of_runs": statistics.mean(rates),
          "standard_error": spread / len(rates) ** 0.5,
          "chance": results[0]["chance"], "temperature": results[0]["temperature"]}


def main(argv):
  if len(argv) < 3:
    raise SystemExit("usage: pool_identity.py OUT_DIR RUN_DIR [RUN_DIR ...]")
  results = []
  for run in argv[2:]:
    path = os.path.join(run, "identity.json")
    if not os.path.exists(path):
      raise SystemExit(f"error: {path} is missing: that run did not finish its portraits")
    with open(path) as f:
      results.append(json.load(f))
  summary = pooled(results)
  with open(os.path.join(argv[1], "identity.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(f"identity kept: {summary['identity_top1']:.4f} of {summary['portraits']} portraits "
        f"over {summary['runs']} runs (mean of runs {summary['mean_of_runs']:.4f} "
        f"+- {summary['standard_error']:.4f}; runs "
        f"{', '.join(f'{r:.4f}' for r in summary['run_rates'])}; chance {summary['chance']})")


if __name__ == "__main__":
  main(sys.argv)
