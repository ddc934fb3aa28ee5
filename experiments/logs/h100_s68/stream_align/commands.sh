# Run on 94dd4fa; .run/var_pkg is a copy of its package with variants.patch
# applied, .run/main_pkg one without, and .run/setup.sh installs the carried wheels.
source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
run() { echo "== $1 $3"; HSYM=$5 STREAM_ALIGN=$4 PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
run s8 $PWD/.run/var_pkg "$S" 8; run hsym $PWD/.run/var_pkg "$S" 0 1; run main $PWD/.run/main_pkg "$S" 0
echo BENCH DONE
