# s72 call 1: fused-norms against main, three alternating pairs; PDL; bench_dispatch once; fn profiled
source .run/setup.sh
R=/tmp/r1; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
run() { echo "== $1 $3 XLA_FLAGS=$XLA_FLAGS"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$R/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2 3; do run main $PWD/.run/main_pkg "$S"; run fn $PWD/.run/fn_pkg "$S"; done
echo "== pdl check"
if XLA_FLAGS=--xla_gpu_enable_pdl=true python3 -c "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"; then
  export XLA_FLAGS=--xla_gpu_enable_pdl=true
  for i in 1 2; do run main_pdl $PWD/.run/main_pkg "$S"; run fn_pdl $PWD/.run/fn_pkg "$S"; done
  unset XLA_FLAGS
else echo "PDL flag refused"; fi
echo "== bench_dispatch main"
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_dispatch.py --shape=15x132k3 --batch=256 --out=$R/dispatch_main.jsonl 2>&1 | grep -v -i warn | tail -30
echo "== profile fn"
PYTHONPATH=/tmp/site:$PWD/.run/fn_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=12 --gaps --out=$R/prof_fn.jsonl 2>&1 | grep -v -i warn | tail -40
date
echo ALL DONE
