# s76 call 3: a third pair;: pixelcnn_jax.main at 15 x 132 (bench_main.py), committed kernel against the persistent one (P=88, 64x4:32x4, 2 stages), alternating
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; S=$PWD/.run/ps_pkg
for i in 3; do
PYTHONPATH=/tmp/site:$N:experiments python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_main_$i.jsonl 2>&1 | grep -v -i warn | tail -3
PJ_HEAD_CONFIG=64x4:32x4 PJ_HEAD_PERSIST=88 PJ_HEAD_STAGES=2 PYTHONPATH=/tmp/site:$S:experiments python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_ps_$i.jsonl 2>&1 | grep -v -i warn | tail -3
date
done
echo ALL DONE
