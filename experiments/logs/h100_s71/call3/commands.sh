# .run/diag2.py, a first draft of experiments/bench_dispatch.py (the host asleep 0-20 ms between
# pipelined calls; then without donating the state); the draft as it ran is in commit 34304d1
# under this folder. Today: python3 experiments/bench_dispatch.py --profile_steps=0
# bench_main.py as it was then: the run had configs/cifar10.py's dropout 0.1, the bare step none.
source .run/setup.sh
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 .run/diag2.py 2>&1 | grep -v -i warn | tee $OUT/diag2_main.txt
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_main.py --shape=15x132k3 --batch=256 --out=$OUT/bench_main.jsonl 2>&1 | grep -v -i warn | tail -2
