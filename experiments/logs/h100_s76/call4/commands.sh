# s76 call 4: the library's head_loss as landed (persistent kernel, CONFIG 64x4x1:32x4x2, PROGRAMS 264; .run/land_pkg) against the committed one (.run/new_pkg): the head alone, the step twice each alternating
source .run/setup.sh
# .run/bench_head_loss_old.py: git show bacd98d:experiments/bench_head_loss.py (the committed kernel takes ROWSxWARPS configs)
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; L=$PWD/.run/land_pkg
PYTHONPATH=/tmp/site:$N:experiments python3 .run/bench_head_loss_old.py --batches=256,128 --configs=64x4:32x4 --out=$R/head_main.jsonl 2>&1 | grep -v -i warn | tail -4
PYTHONPATH=/tmp/site:$L:experiments python3 experiments/bench_head_loss.py --batches=256,128 --out=$R/head_new.jsonl 2>&1 | grep -v -i warn | tail -4
date
for i in 1 2; do
PYTHONPATH=/tmp/site:$N python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_main_$i.jsonl 2>&1 | grep -v -i warn | tail -1
PYTHONPATH=/tmp/site:$L python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_new_$i.jsonl 2>&1 | grep -v -i warn | tail -1
done
date
echo ALL DONE
