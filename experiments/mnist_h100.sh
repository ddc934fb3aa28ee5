#!/usr/bin/env bash
# MNIST (256 grey levels) in one 15-minute run on one H100: configs/mnist.py, budgeted.
#
#   experiments/mnist_h100.sh DATA_DIR OUT_DIR [FLAG ...]
#
# DATA_DIR  npz folder with train.npz and test.npz (image uint8 [N, 28, 28, 1], label).
# OUT_DIR   the workdir: metrics.jsonl, eval/*.json, samples/, curves.png.
# FLAG      further config flags for every step, e.g. --config.model.dropout=0.3.
#
# The last 5,000 training images are held out to choose the weights (live or
# EMA) and the best checkpoint; the rest train. Training stops inside BUDGET_S
# seconds (default 870: 14.5 minutes, compilation and evals included) with its
# learning rate decayed; the best checkpoint's test bits/dim over all of
# test.npz is the result.
# VARIANT=:smoke tries the recipe on a CPU (tests/test_recipes.py).
set -euo pipefail
data=${1:?usage: mnist_h100.sh DATA_DIR OUT_DIR}
out=${2:?usage: mnist_h100.sh DATA_DIR OUT_DIR}
shift 2
mkdir -p "$out"
args=(--config=configs/mnist.py${VARIANT:-} --workdir="$out" --config.data.dataset=npz
      --config.data.npz_dir="$data" --config.data.holdout=5000
      --config.data.eval_split=holdout "$@")
main() { python3 -m pixelcnn_jax.main "${args[@]}" "$@"; }

main --config.train.time_budget_s="${BUDGET_S:-870}" \
  2>&1 | tee "$out/train.log"
main --mode=eval --config.eval.step=best --config.data.eval_split=test \
  2>&1 | tee "$out/eval.log"
main --mode=sample --config.eval.step=best 2>&1 | tee -a "$out/eval.log"
python3 experiments/plot_curves.py "$out" "$out/curves.png" --title="MNIST, configs/mnist.py"
