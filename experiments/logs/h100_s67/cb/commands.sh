source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
CB="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,DYNAMIC_SLICE_FUSION,CONVOLUTION"
run() { echo "== $1 $2"; XLA_FLAGS="$1" python3 experiments/bench_train.py --shapes=$2 --batches=$3 --steps=30 --out=$OUT/train.jsonl 2>&1 | grep -v -i warn | tail -1; }
for i in 1 2; do run "" 15x132k3 256; run "$CB" 15x132k3 256; done
run "" 15x132k3 128; run "$CB" 15x132k3 128
run "" 20x384k5 256; run "$CB" 20x384k5 256
for f in "" "$CB"; do echo "== sample $f"; XLA_FLAGS="$f" python3 experiments/bench_sample.py --shapes=15x132k3 --batches=16 --kernels=xla,pallas --naive_full_limit=0 --agreement_dtypes= --out=$OUT/sample.jsonl 2>&1 | grep -v -i warn | tail -4; done
XLA_FLAGS="$CB" python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=20 --out=$OUT/prof_cb.jsonl 2>&1 | grep -v -i warn | tail -24
echo BENCH DONE
