source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run hor $PWD/.run/hor_pkg "$S"; done
echo "== bench_main hor"
PYTHONPATH=/tmp/site:$PWD/.run/hor_pkg python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$OUT/main_hor.jsonl 2>&1 | grep -v -i warn | tail -1
run hor $PWD/.run/hor_pkg "--shapes=20x384k5 --batches=256 --steps=20"
run main $PWD/.run/main_pkg "--shapes=15x132k3 --batches=128 --steps=30"
run hor $PWD/.run/hor_pkg "--shapes=15x132k3 --batches=128 --steps=30"
echo BENCH DONE
# then, on the same machine: profile_train.py with the kept change (prof_hor.jsonl)
PYTHONPATH=/tmp/site:$PWD/.run/hor_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=12 --gaps --out=$OUT/prof_hor.jsonl
