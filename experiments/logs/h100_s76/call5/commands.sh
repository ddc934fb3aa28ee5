# s76 call 5: pixelcnn_jax.main at 15 x 132 (bench_main.py) with the library as landed (5dae0ad: the persistent head kernel, the mirroring's copy), twice
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
L=$PWD/.run/land_pkg
for i in 1 2; do
PYTHONPATH=/tmp/site:$L:experiments python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_new_$i.jsonl 2>&1 | grep -v -i warn | tail -1
date
done
echo ALL DONE
