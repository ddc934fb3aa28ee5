# Not yet run. On a checkout of main at a03bca2 or later (both patches apply
# there), with .run/main_pkg a copy of main's package, .run/rec_pkg one with
# gate_recompute.patch applied and .run/var_pkg one with gate_variants.patch:
source .run/setup.sh
run() { echo "== $1 $3"; GATE=$4 PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
for i in 1 2; do run main $PWD/.run/main_pkg "$S"; run recompute $PWD/.run/rec_pkg "$S"; done
run cvjp $PWD/.run/var_pkg "$S" cvjp   # no barrier: expected level with main
run main $PWD/.run/main_pkg "--shapes=15x132k3 --batches=128 --steps=30"
run recompute $PWD/.run/rec_pkg "--shapes=15x132k3 --batches=128 --steps=30"
run main $PWD/.run/main_pkg "--shapes=20x384k5 --batches=256 --steps=15"
run recompute $PWD/.run/rec_pkg "--shapes=20x384k5 --batches=256 --steps=15"
PYTHONPATH=/tmp/site:$PWD/.run/rec_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 > $OUT/prof_recompute.txt 2>&1
echo BENCH DONE
