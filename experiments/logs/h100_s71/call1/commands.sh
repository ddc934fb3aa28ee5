source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=30 --gaps --out=$OUT/prof.jsonl > $OUT/prof_main_gaps.txt 2>&1
tail -25 $OUT/prof_main_gaps.txt
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run hor $PWD/.run/hor_pkg "$S"; done
