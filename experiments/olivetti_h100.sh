#!/usr/bin/env bash
# Section 3.3 on the Olivetti faces: the embedding, the portrait PixelCNN,
# Fig. 4 (portraits and the identity they keep) and Fig. 5 (interpolation).
#
#   experiments/olivetti_h100.sh FACES_NPZ OUT_DIR [PORTRAIT_FLAG ...]
#
# FACES_NPZ  image uint8 [N, 64, 64, 1], label = person (e.g. all.npz).
# OUT_DIR    data/ (the split and the embedding vectors), embedding/ and
#            portraits/ workdirs; the grids under portraits/samples/, the
#            identity rate of the chosen checkpoint in identity.json.
# Any further arguments go to the portrait model's training and figures,
# e.g. --config.model.cond_noise=0.15.
# HELDOUT (default 30-39) names the people held out of both networks; VAL
# (default 2) how many photos of each other person are kept out of training
# to choose both networks' checkpoints on (0: chosen on the held-out people,
# as the runs before 2026-12-01 did); SIZE (default 64) the side both
# networks see (32 halves the faces by averaging). RUNS (default 1) > 1 makes
# that many independent runs side by side (seeds 1..RUNS for both networks,
# in OUT_DIR/run<seed>, logged to OUT_DIR/run<seed>.log): one run's identity
# rate swings by +-10 points, so OUT_DIR/identity.json then pools them
# (pool_identity.py). SEEDS="4 5 6" instead of RUNS names the seeds, e.g. to
# add runs to earlier ones. VARIANT=:smoke tries it all on a CPU.
set -euo pipefail
. "$(dirname "$0")/side_by_side.sh"
faces=${1:?usage: olivetti_h100.sh FACES_NPZ OUT_DIR}
out=${2:?usage: olivetti_h100.sh FACES_NPZ OUT_DIR}
shift 2
extra=("$@")
runs=${RUNS:-1}
if [[ ! $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "error: RUNS must be a positive whole number, got '$runs'" >&2
  exit 2
fi
if [[ -n ${SEEDS:-} ]]; then
  if [[ -n ${RUNS:-} ]]; then
    echo "error: give RUNS or SEEDS, not both" >&2
    exit 2
  fi
  read_seeds "$SEEDS"
else
  seeds=($(seq 1 "$runs"))
fi
mkdir -p "$out"
size=${SIZE:-64}
val=${VAL:-2}
choose=val
if [[ $val == 0 ]]; then choose=heldout; fi

main() {  # --config=FILE ARGS: evaluates on $choose unless ARGS name a split; the
  # data are those of $dir, the folder of the one_run that calls it.
  local config=$1
  shift
  python3 -m pixelcnn_jax.main "$config" --config.data.eval_split="$choose" "$@" \
    --config.data.npz_dir="$dir/data" --config.data.image_size="($size, $size)"
}

one_run() {  # DIR [FLAG ...]: the whole section into DIR; FLAGs go to both networks.
  local dir=$1
  shift
  mkdir -p "$dir"
  python3 experiments/olivetti_split.py "$faces" "$dir/data" --heldout="${HELDOUT:-30-39}" \
    --val_per_person="$val" --size="$size"
  local embedding=(--config=configs/olivetti_embedding.py${VARIANT:-} --workdir="$dir/embedding" "$@")
  local portraits=(--config=configs/olivetti_portraits.py${VARIANT:-} --workdir="$dir/portraits"
                   --config.data.vector_file="$dir/data/vec_{split}.npy" "$@" "${extra[@]}")
  local heldout=(--config.eval.step=best --config.data.eval_split=heldout)
  local figures=(--config.sample.embedding_workdir="$dir/embedding" "${heldout[@]}")

  main "${embedding[@]}" 2>&1 | tee "$dir/embedding.log"
  # Vectors of every split; the accuracy printed last is the held-out people's.
  if [[ $choose == val ]]; then
    main "${embedding[@]}" --mode=embed --config.eval.step=best 2>&1 | tee -a "$dir/embedding.log"
  fi
  main "${embedding[@]}" --mode=embed "${heldout[@]}" 2>&1 | tee -a "$dir/embedding.log"
  main "${portraits[@]}" 2>&1 | tee "$dir/portraits.log"
  main "${portraits[@]}" --mode=eval "${heldout[@]}" 2>&1 | tee -a "$dir/portraits.log"
  main "${portraits[@]}" --mode=portraits "${figures[@]}" 2>&1 | tee -a "$dir/portraits.log"
  # The result of the step just drawn: the chosen checkpoint's.
  cp "$(ls -t "$dir"/portraits/eval/portraits_*.json | head -1)" "$dir/identity.json"
  main "${portraits[@]}" --mode=interpolate "${figures[@]}" 2>&1 | tee -a "$dir/portraits.log"
  python3 experiments/plot_curves.py "$dir/portraits" "$dir/portraits/curves.png" \
    --title="Olivetti portraits, configs/olivetti_portraits.py"
}

if [[ -z ${SEEDS:-} ]] && (( runs == 1 )); then
  one_run "$out"
  exit 0
fi
# Several processes share the GPU: XLA allocates as needed instead of 75% each.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
dirs=()
for seed in "${seeds[@]}"; do
  spawn "$out/run$seed.log" one_run "$out/run$seed" --config.seed="$seed"
  dirs+=("$out/run$seed")
done
reap
stop_if_failed "${#seeds[@]}" runs
python3 experiments/pool_identity.py "$out" "${dirs[@]}"
