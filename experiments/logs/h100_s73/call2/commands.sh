# s73 call 2: the NLL forward kernel against XLA's; the steady-state step of main at 15 x 132
# bench_train.py ran with a temporary column, img/s steady: (T(90 steps) - T(30 steps)) / 60 pipelined, the keys img_per_s_steady and steady_step_s of train_main.jsonl; it equalled pipelined and was removed.
# bench_nll.py then imported its kernel from pixelcnn_jax/nll_kernel.py (wt_pkg); the kernel now lives in bench_nll.py itself.
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
PYTHONPATH=/tmp/site:$PWD/.run/wt_pkg python3 experiments/bench_nll.py --out=$R/nll.jsonl 2>&1 | grep -v -i warn
date
for i in 1 2; do
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_main.jsonl 2>&1 | grep -v -i warn | tail -1
done
date
echo ALL DONE
