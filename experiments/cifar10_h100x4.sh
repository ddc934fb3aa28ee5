#!/usr/bin/env bash
# CIFAR-10 in one 20-minute run on 4 H100s: configs/cifar10.py, budgeted.
#
#   experiments/cifar10_h100x4.sh DATA_DIR EVAL_SPLIT OUT_DIR [FLAG ...]
#
# DATA_DIR   npz folder: train_*.npz, plus EVAL_SPLIT*.npz unless EVAL_SPLIT is
#            "holdout" (then the held-out training images are the eval set).
# EVAL_SPLIT the split that gives the final number: "holdout", or e.g. "test".
# OUT_DIR    the workdir: metrics.jsonl, eval/*.json, samples/, curves.png.
# FLAG       further config flags for every step, e.g. on one GPU (see
#            configs/cifar10.py) --config.train.batch_size=32
#            --config.train.learning_rate=1e-3 --config.train.weight_decay=0.1.
#
# The last 5,000 images of train_*.npz are held out: the run validates on them
# (live against EMA weights, and which checkpoint is best) and trains on the
# rest. Training stops inside BUDGET_S seconds (default 1170: 19.5 minutes,
# compilation, evals and sample grids included) with its learning rate decayed;
# then the best checkpoint is evaluated on EVAL_SPLIT and sampled. Uses every
# visible GPU (the config's global batch is split over them).
# VARIANT=:smoke tries the recipe on a CPU (tests/test_recipes.py).
set -euo pipefail
data=${1:?usage: cifar10_h100x4.sh DATA_DIR EVAL_SPLIT OUT_DIR}
split=${2:?usage: cifar10_h100x4.sh DATA_DIR EVAL_SPLIT OUT_DIR}
out=${3:?usage: cifar10_h100x4.sh DATA_DIR EVAL_SPLIT OUT_DIR}
shift 3
mkdir -p "$out"
args=(--config=configs/cifar10.py${VARIANT:-} --workdir="$out" --config.data.dataset=npz
      --config.data.npz_dir="$data" --config.data.holdout=5000
      --config.data.eval_split=holdout "$@")
main() { python3 -m pixelcnn_jax.main "${args[@]}" "$@"; }

main --config.train.time_budget_s="${BUDGET_S:-1170}" \
  2>&1 | tee "$out/train.log"
main --mode=eval --config.eval.step=best --config.data.eval_split="$split" \
  2>&1 | tee "$out/eval.log"
main --mode=sample --config.eval.step=best 2>&1 | tee -a "$out/eval.log"
python3 experiments/plot_curves.py "$out" "$out/curves.png" \
  --title="CIFAR-10, configs/cifar10.py, $(nvidia-smi -L 2>/dev/null | wc -l) GPUs"
