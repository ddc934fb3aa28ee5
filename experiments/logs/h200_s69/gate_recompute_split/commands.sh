# One NVIDIA H200 (1980 MHz, 700 W), 2026-12-06, on main at 6581056, one call.
# .run/main_pkg: main's package. .run/recv_pkg and .run/rech_pkg: main's with
# logs/h100_s68/next/gate_recompute.patch applied, then recompute=train
# dropped from the horizontal gate's call in model.py (recv) or from the
# vertical gate's (rech).
source .run/setup.sh
run() { echo "== $1"; PYTHONPATH=/tmp/site:$PWD/.run/$2 python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
run main main_pkg; run recompute_v recv_pkg; run recompute_h rech_pkg; run main main_pkg
