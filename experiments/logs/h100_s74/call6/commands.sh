# s74 call 6: the step with head_loss profiled hot (200 steps' warm-up); batch 128 over 100 steps, main against head_loss
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
PYTHONPATH=/tmp/site:$N python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=15 --gaps --warmup=200 --out=$R/prof_new.jsonl 2>&1 | grep -v -i warn | tail -30
date
for P in $N $M; do
echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=128 --steps=100 --out=$R/train128_$(basename $P).jsonl 2>&1 | grep -v -i warn | tail -1
done
date
echo ALL DONE
