# s73 call 6: bench_train's clock and power of the case's GPU only (nvidia-smi --id); batch 128 over 100 steps, long enough to reach the power limit
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
P=$PWD/.run/main_pkg
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_256.jsonl 2>&1 | grep -v -i warn | tail -1
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=128 --steps=100 --out=$R/train_128.jsonl 2>&1 | grep -v -i warn | tail -1
date
echo ALL DONE
