# .run/diag.py, a first draft of experiments/bench_dispatch.py (the waited, pipelined and
# batch-from-the-host cases, then 5 waited steps profiled); the draft as it ran is in commit
# 34304d1 under this folder. Today: python3 experiments/bench_dispatch.py --sleeps_ms=0
source .run/setup.sh
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 .run/diag.py 2>&1 | grep -v -i warn | tee $OUT/diag_main.txt | tail -40
