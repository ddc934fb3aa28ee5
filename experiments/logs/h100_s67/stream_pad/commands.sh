source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
run() { echo "== $1"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
for i in 1 2; do run main $PWD/.run/main_pkg; run streampad $PWD; done
echo BENCH DONE
