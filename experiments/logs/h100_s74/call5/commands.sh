# s74 call 5: head_loss (CONFIG 64x4, 32x4) against main: batch 128, another batch-256 pair, 20x384, and pixelcnn_jax.main
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
for P in $N $M; do
echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256,128 --steps=30 --out=$R/train_$(basename $P).jsonl 2>&1 | grep -v -i warn | tail -2
done
date
echo "== new_pkg 20x384"
PYTHONPATH=/tmp/site:$N python3 experiments/bench_train.py --shapes=20x384k5 --batches=256 --steps=20 --out=$R/train384_new_pkg.jsonl 2>&1 | grep -v -i warn | tail -1
date
PYTHONPATH=/tmp/site:$N python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_new_pkg.jsonl 2>&1 | grep -v -i warn | tail -3
date
echo ALL DONE
