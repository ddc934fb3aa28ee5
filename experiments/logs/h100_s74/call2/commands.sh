# s74 call 2: head_loss kernel variants (exp, ex2.approx, no exp, no target, matmul only; backward with trans, W^T, no dx)
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
PYTHONPATH=/tmp/site:$PWD/.run/new_pkg:experiments python3 .run/diag_head.py 2>&1 | grep -v -i warn
date
echo ALL DONE
