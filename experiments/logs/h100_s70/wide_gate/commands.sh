# As run on 2026-12-06 from the repository root (one H100), with .run/main_pkg a copy of
# main's package (4ee1a5b), .run/wide_pkg main with wide.patch, .run/wide2_pkg main with
# wide2.patch, .run/setup.sh installing the carried wheels, and .run/tanh_fusions.py this
# directory's tanh_fusions.py. bench.txt is its printed output (profiles left out).
source .run/setup.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader | tee $OUT/gpu.txt
run() { echo "== $1 $3"; PYTHONPATH=/tmp/site:$2 python3 experiments/bench_train.py $3 --out=$OUT/train_$1.jsonl 2>&1 | grep -v -i warn | tail -1; }
S="--shapes=15x132k3 --batches=256 --steps=30"
run main $PWD/.run/main_pkg "$S"; run wide $PWD/.run/wide_pkg "$S"; run wide2 $PWD/.run/wide2_pkg "$S"
for v in wide2 wide; do
PYTHONPATH=/tmp/site:$PWD/.run/${v}_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 --hlo=$OUT/hlo_$v.txt.gz > $OUT/prof_$v.txt 2>&1
grep -v -i 'warn\|alloc\|Source Loc\|external/xla\|^$\|===' $OUT/prof_$v.txt | head -22
python3 .run/tanh_fusions.py $OUT/hlo_$v.txt.gz
done
run main $PWD/.run/main_pkg "$S"; run wide2 $PWD/.run/wide2_pkg "$S"; run wide $PWD/.run/wide_pkg "$S"
echo BENCH DONE
