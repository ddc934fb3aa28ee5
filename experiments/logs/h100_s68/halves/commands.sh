# Run on 94dd4fa with halves.patch applied to the checkout; .run/main_pkg is a
# copy of 94dd4fa's package and .run/setup.sh installs the carried wheels.
source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -2; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run halves $PWD "$S"; done
run main $PWD/.run/main_pkg "--shapes=15x132k3 --batches=128 --steps=30"
run halves $PWD "--shapes=15x132k3 --batches=128 --steps=30"
run main $PWD/.run/main_pkg "--shapes=20x384k5 --batches=256 --steps=15"
run halves $PWD "--shapes=20x384k5 --batches=256 --steps=15"
PYTHONPATH=/tmp/site:$PWD python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 --hlo=$OUT/hlo_halves.txt.gz 2>&1 | grep -v -i warn > $OUT/prof_halves.txt
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 --hlo=$OUT/hlo_main.txt.gz 2>&1 | grep -v -i warn > $OUT/prof_main.txt
echo BENCH DONE
