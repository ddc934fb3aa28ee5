#!/usr/bin/env bash
# Section 3.4 on CIFAR-10: PixelCNN auto-encoders at m = 10 and 100, their MSE
# baselines, and the unconditional PixelCNN at the same steps and data.
#
#   experiments/autoencoder_cifar10.sh DATA_DIR EVAL_SPLIT OUT_DIR [FLAG ...]
#
# DATA_DIR   npz folder: train_*.npz, plus EVAL_SPLIT*.npz unless EVAL_SPLIT is
#            "holdout" (the last 5,000 training images, which are then not
#            trained on; they are held out in every case).
# OUT_DIR    one workdir per model (unconditional, ae10, ae100, mse10, mse100),
#            each with eval/*.json; the Fig. 6 grids of ae10 and ae100 under
#            their samples/ (the path is the last line of NAME.log: when the
#            best step is the last, training's own grid of it keeps its name
#            and Fig. 6 is reconstruct_STEP_2.png); summary.txt with every
#            number.
# FLAG       further config flags for the three PixelCNNs (not the MSE
#            baselines), e.g. --config.train.optimizer=adamw.
# STEPS (default 5000), BATCH (64) and the learning rate are the same for the
# three PixelCNNs.
# SEEDS (default "0") lists the seeds of the PixelCNNs: with more than one,
# each PixelCNN trains once per seed (workdirs NAME_sSEED) and summary.txt
# ends with each model's mean and standard deviation over them, and each
# decoder's difference from the unconditional model seed by seed, with its
# standard error (seed_summary.py), since one run of a PixelCNN at a few
# thousand steps can land 0.2 bits/dim from the next. The MSE baselines,
# which repeat, train once.
# CONDITIONING (default "vector", eq. 4) names how the decoders read the
# code; "vector spatial" also trains both with eq. 5 (s = m(h)), in
# ae10_spatial and ae100_spatial.
# GPUS (default "0") lists the GPUs: the runs go to them in turn, and run
# in parallel when there are several; a GPU may be listed more than once to
# hold several runs (XLA then allocates memory as needed instead of taking
# 75% of the GPU per process). VARIANT=:smoke tries it all on a CPU.
set -euo pipefail
. "$(dirname "$0")/side_by_side.sh"
data=${1:?usage: autoencoder_cifar10.sh DATA_DIR EVAL_SPLIT OUT_DIR}
split=${2:?usage: autoencoder_cifar10.sh DATA_DIR EVAL_SPLIT OUT_DIR}
out=${3:?usage: autoencoder_cifar10.sh DATA_DIR EVAL_SPLIT OUT_DIR}
shift 3
pixelcnn_flags=("$@")
read -r -a gpus <<< "${GPUS:-0}"
read -r -a conditionings <<< "${CONDITIONING:-vector}"
for c in "${conditionings[@]}"; do
  if [[ $c != vector && $c != spatial ]]; then
    echo "error: CONDITIONING takes vector and/or spatial, got '$c'" >&2
    exit 2
  fi
done
read_seeds "${SEEDS:-0}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p "$out"
common=(--config.data.dataset=npz --config.data.npz_dir="$data" --config.data.holdout=5000
        --config.data.eval_split=holdout --config.train.num_steps="${STEPS:-5000}"
        --config.train.batch_size="${BATCH:-64}" --config.eval.batch_size=500)
run() {  # NAME GPU CONFIG ARGS...: train, then evaluate the best step on $split.
  local name=$1 gpu=$2 config=$3
  shift 3
  local args=(--config="$config${VARIANT:-}" --workdir="$out/$name" "${common[@]}" "$@")
  if [[ $name != mse* ]]; then args+=("${pixelcnn_flags[@]}"); fi
  CUDA_VISIBLE_DEVICES=$gpu python3 -m pixelcnn_jax.main "${args[@]}"
  CUDA_VISIBLE_DEVICES=$gpu python3 -m pixelcnn_jax.main "${args[@]}" --mode=eval \
    --config.eval.step=best --config.data.eval_split="$split"
}
jobs=("mse10 configs/cifar10_mse_autoencoder.py --config.model.code_dim=10"
      "mse100 configs/cifar10_mse_autoencoder.py --config.model.code_dim=100")
decoders=()  # NAME:M:CONDITIONING:SEED
for seed in "${seeds[@]}"; do
  suffix=""
  if (( ${#seeds[@]} > 1 )); then suffix=_s$seed; fi
  # The unconditional model at the auto-encoder's learning rate: equal settings.
  jobs+=("unconditional$suffix configs/cifar10.py --config.train.learning_rate=1e-3 --config.model.dropout=0.25 --config.seed=$seed")
  for c in "${conditionings[@]}"; do
    for m in 10 100; do
      name=ae$m
      if [[ $c == spatial ]]; then name+=_spatial; fi
      jobs+=("$name$suffix configs/cifar10_autoencoder.py --config.model.code_dim=$m --config.model.conditioning=$c --config.seed=$seed")
      decoders+=("$name$suffix:$m:$c:$seed")
    done
  done
done
for i in "${!jobs[@]}"; do
  name=${jobs[$i]%% *}
  # shellcheck disable=SC2086  # Each job is NAME CONFIG ARGS, split on purpose.
  spawn "$out/$name.log" run "$name" "${gpus[$((i % ${#gpus[@]}))]}" ${jobs[$i]#* }
  if (( (i + 1) % ${#gpus[@]} == 0 )); then reap; fi
done
reap
stop_if_failed "${#jobs[@]}" jobs
for decoder in "${decoders[@]}"; do
  IFS=: read -r name m c seed <<< "$decoder"
  CUDA_VISIBLE_DEVICES=${gpus[0]} python3 -m pixelcnn_jax.main --config=configs/cifar10_autoencoder.py${VARIANT:-} \
    --workdir="$out/$name" "${common[@]}" --config.model.code_dim="$m" \
    --config.model.conditioning="$c" --config.seed="$seed" --mode=reconstruct --config.eval.step=best \
    --config.sample.baseline_workdir="$out/mse$m" "${pixelcnn_flags[@]}" >>"$out/$name.log" 2>&1
done
for log in "$out"/*.log; do
  echo "$(basename "$log" .log): $(grep -E "^$split (bits/dim|mse)" "$log" | tail -1)"
done | tee "$out/summary.txt"
if (( ${#seeds[@]} > 1 )); then
  seeds_summary=$(python3 "$(dirname "$0")/seed_summary.py" "$out/summary.txt")
  echo "$seeds_summary" | tee -a "$out/summary.txt"
fi
