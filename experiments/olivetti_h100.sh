#!/usr/bin/env bash
# Section 3.3 on the Olivetti faces: the embedding, the portrait PixelCNN,
# Fig. 4 (portraits and the identity they keep) and Fig. 5 (interpolation).
#
#   experiments/olivetti_h100.sh FACES_NPZ OUT_DIR [PORTRAIT_FLAG ...]
#
# FACES_NPZ  image uint8 [N, 64, 64, 1], label = person (e.g. all.npz).
# OUT_DIR    data/ (the split and the embedding vectors), embedding/ and
#            portraits/ workdirs; the grids under portraits/samples/, the
#            identity rate in portraits/eval/portraits_<step>.json.
# Any further arguments go to the portrait model's training and figures,
# e.g. --config.model.cond_noise=0.15.
# HELDOUT (default 30-39) names the people held out of both networks; VAL
# (default 2) how many photos of each other person are kept out of training
# to choose both networks' checkpoints on (0: chosen on the held-out people,
# as the runs before 2026-12-01 did); SIZE (default 64) the side both
# networks see (32 halves the faces by averaging). VARIANT=:smoke tries it all
# on a CPU.
set -euo pipefail
faces=${1:?usage: olivetti_h100.sh FACES_NPZ OUT_DIR}
out=${2:?usage: olivetti_h100.sh FACES_NPZ OUT_DIR}
shift 2
mkdir -p "$out"
size=${SIZE:-64}
val=${VAL:-2}
python3 experiments/olivetti_split.py "$faces" "$out/data" --heldout="${HELDOUT:-30-39}" \
  --val_per_person="$val" --size="$size"
choose=val
if [[ $val == 0 ]]; then choose=heldout; fi
main() {  # --config=FILE ARGS: evaluates on $choose unless ARGS name a split.
  local config=$1
  shift
  python3 -m pixelcnn_jax.main "$config" --config.data.eval_split="$choose" "$@" \
    --config.data.npz_dir="$out/data" --config.data.image_size="($size, $size)"
}
embedding=(--config=configs/olivetti_embedding.py${VARIANT:-} --workdir="$out/embedding")
portraits=(--config=configs/olivetti_portraits.py${VARIANT:-} --workdir="$out/portraits"
           --config.data.vector_file="$out/data/vec_{split}.npy" "$@")
heldout=(--config.eval.step=best --config.data.eval_split=heldout)
figures=(--config.sample.embedding_workdir="$out/embedding" "${heldout[@]}")

main "${embedding[@]}" 2>&1 | tee "$out/embedding.log"
# Vectors of every split; the accuracy printed last is the held-out people's.
if [[ $choose == val ]]; then
  main "${embedding[@]}" --mode=embed --config.eval.step=best 2>&1 | tee -a "$out/embedding.log"
fi
main "${embedding[@]}" --mode=embed "${heldout[@]}" 2>&1 | tee -a "$out/embedding.log"
main "${portraits[@]}" 2>&1 | tee "$out/portraits.log"
main "${portraits[@]}" --mode=eval "${heldout[@]}" 2>&1 | tee -a "$out/portraits.log"
main "${portraits[@]}" --mode=portraits "${figures[@]}" 2>&1 | tee -a "$out/portraits.log"
main "${portraits[@]}" --mode=interpolate "${figures[@]}" 2>&1 | tee -a "$out/portraits.log"
python3 experiments/plot_curves.py "$out/portraits" "$out/portraits/curves.png" \
  --title="Olivetti portraits, configs/olivetti_portraits.py"
