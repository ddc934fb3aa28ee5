# s74 call 4: residual-kernel configs at depth 160 and 384; the step, main against CONFIG (64x4, 32x4), alternating
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --configs=64x4:32x4,64x4:32x8,64x4:16x4,64x4:32x2 --out=$R/head.jsonl 2>&1 | grep -v -i warn
date
for i in 1 2; do
for P in $M $N; do
echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_$(basename $P)_$i.jsonl 2>&1 | grep -v -i warn | tail -1
done; done
date
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --features=384 --depth=384 --configs=32x4:32x4,16x4:16x4,32x8:32x8 --out=$R/head384.jsonl 2>&1 | grep -v -i warn
date
echo ALL DONE
