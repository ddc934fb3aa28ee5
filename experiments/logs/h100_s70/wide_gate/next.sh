# Not yet run: horizontal_only.patch against main on an H100, from the repository root,
# with .run/main_pkg a copy of main's package and .run/hor_pkg one with the patch applied.
source .run/setup.sh
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run hor $PWD/.run/hor_pkg "$S"; done
run main $PWD/.run/main_pkg "--shapes=15x132k3 --batches=128 --steps=30"
run hor $PWD/.run/hor_pkg "--shapes=15x132k3 --batches=128 --steps=30"
PYTHONPATH=/tmp/site:$PWD/.run/hor_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 --hlo=$OUT/hlo_hor.txt.gz > $OUT/prof_hor.txt 2>&1
python3 experiments/logs/h100_s70/wide_gate/tanh_fusions.py $OUT/hlo_hor.txt.gz
