#!/usr/bin/env bash
# The real runs of experiments/RESULTS.md, as run on one H100 through the
# device tool: two runs at a time share the GPU (each gets about half of it),
# each stops at its wall-clock budget (train.time_limit_s), then --mode=eval
# and --mode=sample run from the checkpoint it left.
#   experiments/h100_runs.sh OUT_DIR
# Data (not in git): .data/mnist/{train,test}.npz (full MNIST) and
# .data/cifar10/train_{0,1}.npz (15,000 CIFAR-10 training images; the last
# 5,000 are held out for validation).
set -u
out=${1:?usage: h100_runs.sh OUT_DIR}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 PYTHONUNBUFFERED=1
main="python3 -m pixelcnn_jax.main"
mnist="--config.data.dataset=npz --config.data.npz_dir=.data/mnist
  --config.train.num_steps=5500 --config.train.time_limit_s=240
  --config.train.warmup_steps=200 --config.train.ema_decay=0.995
  --config.train.eval_every=100000 --config.train.sample_every=100000
  --config.train.log_every=200"
cifar="--config.data.dataset=npz --config.data.npz_dir=.data/cifar10
  --config.data.holdout=5000 --config.data.eval_split=holdout
  --config.model.num_layers=12 --config.model.features=192
  --config.train.batch_size=64 --config.train.num_steps=4000
  --config.train.time_limit_s=200 --config.train.warmup_steps=200
  --config.train.ema_decay=0.995 --config.train.eval_every=100000
  --config.train.sample_every=100000 --config.train.log_every=200"

pair() {  # NAME_A CONFIG_A NAME_B CONFIG_B ARGS
  local a=$1 ca=$2 b=$3 cb=$4 args=$5
  (time $main --config=$ca --workdir="$out/$a" $args) >"$out/$a.log" 2>&1 &
  (time $main --config=$cb --workdir="$out/$b" $args) >"$out/$b.log" 2>&1 &
  wait
  for n in "$a:$ca" "$b:$cb"; do
    $main --config="${n#*:}" --workdir="$out/${n%%:*}" --mode=eval $args \
      >>"$out/${n%%:*}.log" 2>&1
    $main --config="${n#*:}" --workdir="$out/${n%%:*}" --mode=sample $args \
      >>"$out/${n%%:*}.log" 2>&1
  done
}

pair mnist configs/mnist.py mnist_classcond configs/mnist_classcond.py "$mnist"
pair cifar10 configs/cifar10.py cifar10_classcond configs/cifar10_classcond.py "$cifar"
grep -h -E "parameters|eval_bpd|bits/dim|stopped|real" "$out"/*.log
