# s75 call 1: pixelcnn_jax.main at HEAD (638ed0b) three times, the bare step, and a hot profile with its HLO
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg
for i in 1 2 3; do
PYTHONPATH=/tmp/site:$N python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_$i.jsonl 2>&1 | grep -v -i warn | tail -1
date
done
PYTHONPATH=/tmp/site:$N python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train.jsonl 2>&1 | grep -v -i warn | tail -1
date
PYTHONPATH=/tmp/site:$N python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=45 --warmup=200 --hlo=$R/hlo.txt.gz --out=$R/prof.jsonl 2>&1 | grep -v -i warn | tail -50
date
echo ALL DONE
