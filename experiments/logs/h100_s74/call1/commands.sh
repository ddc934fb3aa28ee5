# s74 call 1: head_loss kernels against XLA's head+NLL; the step, main against the kernels, alternating
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --blocks=64,128,32 --warps=8,4 --out=$R/head.jsonl 2>&1 | grep -v -i warn
date
for i in 1 2; do
for P in $M $N; do
echo "== $P"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_$(basename $P)_$i.jsonl 2>&1 | grep -v -i warn | tail -2
done; done
date
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=128 --out=$R/head128.jsonl 2>&1 | grep -v -i warn
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --features=384 --depth=384 --out=$R/head384.jsonl 2>&1 | grep -v -i warn
date
echo ALL DONE
