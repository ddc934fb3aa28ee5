# fn_pkg: main (34304d1) with logs/cpu_s64/fused_norms.patch applied (git apply --3way); cut off by the session's device time during the fourth run
source .run/setup.sh
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run fn $PWD/.run/fn_pkg "$S"; done
