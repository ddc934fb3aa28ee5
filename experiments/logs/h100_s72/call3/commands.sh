# s72 call 3: 20x384 and batch 128, main against fused-norms, two more alternating pairs each
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$R/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
FN=$PWD/.run/fn_pkg; MAIN=$PWD/.run/main_pkg
for i in 1 2; do
  run fn384 $FN "--shapes=20x384k5 --batches=256 --steps=20"
  run main384 $MAIN "--shapes=20x384k5 --batches=256 --steps=20"
done
run fn128 $FN "--shapes=15x132k3 --batches=128 --steps=30"
run main128 $MAIN "--shapes=15x132k3 --batches=128 --steps=30"
date
echo ALL DONE
