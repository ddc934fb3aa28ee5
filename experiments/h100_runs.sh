#!/usr/bin/env bash
# The first real runs of experiments/RESULTS.md ("Real runs, H100"), as run on
# one H100: two runs at a time share the GPU (each gets about half of it), each
# stops at its wall-clock limit (train.time_limit_s), then --mode=eval and
# --mode=sample run from the checkpoint it left.
#
#   experiments/h100_runs.sh MNIST_DIR CIFAR_DIR OUT_DIR
#
# MNIST_DIR  npz folder with train.npz and test.npz (the full MNIST).
# CIFAR_DIR  npz folder with train_*.npz; the last 5,000 images are held out
#            for validation and are the eval split (RESULTS used 15,000).
# OUT_DIR    one workdir and log per run: mnist, mnist_classcond, cifar10,
#            cifar10_classcond.
set -euo pipefail
. "$(dirname "$0")/side_by_side.sh"
mnist_dir=${1:?usage: h100_runs.sh MNIST_DIR CIFAR_DIR OUT_DIR}
cifar_dir=${2:?usage: h100_runs.sh MNIST_DIR CIFAR_DIR OUT_DIR}
out=${3:?usage: h100_runs.sh MNIST_DIR CIFAR_DIR OUT_DIR}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 PYTHONUNBUFFERED=1
mnist=(--config.data.dataset=npz --config.data.npz_dir="$mnist_dir"
  --config.train.num_steps=5500 --config.train.time_limit_s=240
  --config.train.warmup_steps=200 --config.train.ema_decay=0.995
  --config.train.eval_every=100000 --config.train.sample_every=100000
  --config.train.log_every=200)
cifar=(--config.data.dataset=npz --config.data.npz_dir="$cifar_dir"
  --config.data.holdout=5000 --config.data.eval_split=holdout
  --config.model.num_layers=12 --config.model.features=192
  --config.train.batch_size=64 --config.train.num_steps=4000
  --config.train.time_limit_s=200 --config.train.warmup_steps=200
  --config.train.ema_decay=0.995 --config.train.eval_every=100000
  --config.train.sample_every=100000 --config.train.log_every=200)

one_run() {  # NAME CONFIG ARGS...: train, then eval and sample its last checkpoint.
  local name=$1 config=$2
  shift 2
  local args=(--config="$config" --workdir="$out/$name" "$@")
  time python3 -m pixelcnn_jax.main "${args[@]}"
  python3 -m pixelcnn_jax.main "${args[@]}" --mode=eval
  python3 -m pixelcnn_jax.main "${args[@]}" --mode=sample
}

pair() {  # NAME_A CONFIG_A NAME_B CONFIG_B ARGS...: side by side on the GPU.
  local a=$1 ca=$2 b=$3 cb=$4
  shift 4
  spawn "$out/$a.log" one_run "$a" "$ca" "$@"
  spawn "$out/$b.log" one_run "$b" "$cb" "$@"
  reap
  stop_if_failed 2 runs
}

pair mnist configs/mnist.py mnist_classcond configs/mnist_classcond.py "${mnist[@]}"
pair cifar10 configs/cifar10.py cifar10_classcond configs/cifar10_classcond.py "${cifar[@]}"
grep -h -E "parameters|eval_bpd|bits/dim|stopped|real" "$out"/*.log
