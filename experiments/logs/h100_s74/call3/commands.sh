# s74 call 3: head_loss (NLL + bf16 residual, scaled on the products' small side) configs; the step, main against it, alternating; 20x384 and batch 128
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --configs=64x4:64x4,64x4:64x8,64x4:128x8,128x8:128x8,32x4:32x4,64x2:64x2,128x4:128x4 --out=$R/head.jsonl 2>&1 | grep -v -i warn
date
for i in 1 2; do
for P in $M $N; do
echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_$(basename $P)_$i.jsonl 2>&1 | grep -v -i warn | tail -1
done; done
date
for P in $M $N; do
echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=128 --steps=30 --out=$R/train128_$(basename $P).jsonl 2>&1 | grep -v -i warn | tail -1
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=20x384k5 --batches=256 --steps=20 --out=$R/train384_$(basename $P).jsonl 2>&1 | grep -v -i warn | tail -1
done
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_head_loss.py --batches=256 --features=384 --depth=384 --out=$R/head384.jsonl 2>&1 | grep -v -i warn
date
echo ALL DONE
