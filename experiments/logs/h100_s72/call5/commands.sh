# s72 call 5: pixelcnn_jax.main against the bare step at 20 x 384, dropout 0, main at 9f6ab43
source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
PYTHONPATH=/tmp/site:$PWD/.run/head_pkg python3 experiments/bench_main.py --shape=20x384k5 --batch=256 --steps=100 --log_every=20 --bench_steps=15 --out=$OUT/main_384.jsonl 2>&1 | grep -v -i warn | tail -3
