# s72 call 2: fused-norms with cuBLAS (not Lt) and with command buffers off, alternating with fn; bench_main; batch 128 and 20x384, main against fn
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
run() { echo "== $1 $3 XLA_FLAGS=$XLA_FLAGS"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$R/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
FN=$PWD/.run/fn_pkg; MAIN=$PWD/.run/main_pkg
for i in 1 2; do
  run fn $FN "$S"
  XLA_FLAGS=--xla_gpu_enable_cublaslt=false run fn_nolt $FN "$S"
  XLA_FLAGS=--xla_gpu_enable_command_buffer= run fn_nocb $FN "$S"
done
echo "== bench_main fn"
PYTHONPATH=/tmp/site:$FN python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$R/main_fn.jsonl 2>&1 | grep -v -i warn | tail -2
run main128 $MAIN "--shapes=15x132k3 --batches=128 --steps=30"
run fn128 $FN "--shapes=15x132k3 --batches=128 --steps=30"
run main384 $MAIN "--shapes=20x384k5 --batches=256 --steps=20"
run fn384 $FN "--shapes=20x384k5 --batches=256 --steps=20"
date
echo ALL DONE
