# s73 call 1: which ops launch the memsets of the 15 x 132 step; deterministic ops timed against main
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
MAIN=$PWD/.run/main_pkg
prof() { echo "== profile $1 XLA_FLAGS=$XLA_FLAGS"; PYTHONPATH=/tmp/site:$MAIN python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --top=30 --gaps --sources='Memset|memset|init_device_workspace' --hlo=$R/hlo_$1.txt.gz --out=$R/prof_$1.jsonl 2>&1 | grep -v -i warn; }
prof default
XLA_FLAGS=--xla_gpu_enable_command_buffer= prof nocb
echo "== dump"
XLA_FLAGS="--xla_dump_to=/tmp/dump --xla_dump_hlo_as_text" PYTHONPATH=/tmp/site:$MAIN python3 experiments/profile_train.py --shape=15x132k3 --steps=1 --top=3 2>&1 | grep -v -i warn | tail -3
ls -S /tmp/dump | head -40
mkdir -p $R/dump; for f in $(ls -S /tmp/dump | grep -i 'step' | grep -i -E 'after_optim|thunk|buffer-assign' | head -6); do gzip -c /tmp/dump/$f > $R/dump/$f.gz; done
ls -la $R/dump
run() { echo "== $1 $3 XLA_FLAGS=$XLA_FLAGS"; PYTHONPATH=/tmp/site:$MAIN python3 experiments/bench_train.py $3 --out=$R/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
for i in 1 2; do
  XLA_FLAGS=--xla_gpu_deterministic_ops=true run det "" "--shapes=15x132k3 --batches=256 --steps=30"
  run main "" "--shapes=15x132k3 --batches=256 --steps=30"
done
date
echo ALL DONE
