source .run/setup.sh
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 .run/diag2.py 2>&1 | grep -v -i warn | tee $OUT/diag2_main.txt
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$OUT/bench_main.jsonl 2>&1 | grep -v -i warn | tail -2
