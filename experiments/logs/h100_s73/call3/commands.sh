# s73 call 3: the SM clock and power under the 15 x 132 step (bench and profile); NLL kernel at 8-row blocks
# bench_nll.py imported its kernel from pixelcnn_jax/nll_kernel.py (wt_pkg); the kernel now lives in bench_nll.py itself.
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv -lms 100 > $R/smi.csv &
SMI=$!
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_main.jsonl 2>&1 | grep -v -i warn | tail -1
date
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --gaps --top=3 2>&1 | grep -v -i warn | head -8
date
kill $SMI
PYTHONPATH=/tmp/site:$PWD/.run/wt_pkg python3 experiments/bench_nll.py --batches=256 --blocks=16,8 --warps=1,2,4 --out=$R/nll.jsonl 2>&1 | grep -v -i warn
date
echo ALL DONE
