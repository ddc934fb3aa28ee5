"""Each model's mean over seeds, and each decoder against the unconditional
model seed by seed, from a summary.txt of autoencoder_cifar10.sh.

  python experiments/seed_summary.py OUT_DIR/summary.txt

Reads the lines NAME_sSEED: SPLIT bits/dim|mse VALUE ... that the recipe
writes when SEEDS lists more than one seed. The paired difference (model
minus unconditional, at the same seed) removes what a seed does to both,
so its standard error over seeds is the test of section 3.4's claim that a
code lowers the bits/dim.
"""

import argparse
import collections
import math
import re
import statistics
import sys

LINE = re.compile(r"^(?P<model>.+)_s(?P<seed>\d+): \S+ (?P<unit>bits/dim|mse) (?P<value>[\d.]+)")
BASELINE = "unconditional"


def read(path):
  """{model: {seed: value}} and {model: unit}."""
  values, units = collections.defaultdict(dict), {}
  with open(path) as f:
    for line in f:
      m = LINE.match(line)
      if m:
        values[m["model"]][int(m["seed"])] = float(m["value"])
        units[m["model"]] = m["unit"]
  return values, units


def summarise(values, units):
  lines = []
  for model in sorted(values):
    v = list(values[model].values())
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    lines.append(f"{model}: mean {statistics.mean(v):.4f}, sd {sd:.4f} over {len(v)} seeds")
  base = values.get(BASELINE, {})
  for model in sorted(values):
    if model == BASELINE or units[model] != "bits/dim":
      continue
    seeds = sorted(set(values[model]) & set(base))
    if not seeds:
      continue
    d = [values[model][s] - base[s] for s in seeds]
    se = (f"standard error {statistics.stdev(d) / math.sqrt(len(d)):.4f}" if len(d) > 1
          else "no standard error from one seed")
    lower = sum(x < 0 for x in d)
    lines.append(f"{model} - {BASELINE}: mean {statistics.mean(d):+.4f}, {se}, "
                 f"lower at {lower} of {len(d)} seeds")
  return lines


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("summary")
  args = p.parse_args()
  try:
    values, units = read(args.summary)
  except OSError as e:
    sys.exit(f"error: cannot read {args.summary}: {e.strerror}")
  if not values:
    sys.exit(f"error: {args.summary} has no per-seed results (NAME_sSEED: ...); "
             "the recipe writes them when SEEDS lists more than one seed")
  print("\n".join(summarise(values, units)))


if __name__ == "__main__":
  main()
