# s74 call 7: the committed head_loss (0924e21) against main (20b0f7c), alternating: kernel, main, kernel
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; M=$PWD/.run/main_pkg
i=0
for P in $N $M $N; do
i=$((i+1)); echo "== $(basename $P)"
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_$(basename $P)_$i.jsonl 2>&1 | grep -v -i warn | tail -1
done
date
echo ALL DONE
