# diag.py ran against the first version of profile_train.idle_gaps, which also took a list of
# XLA module spans (passed empty: the trace has no such line); the copy here calls the committed one.
source .run/setup.sh
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 .run/diag.py 2>&1 | grep -v -i warn | tee $OUT/diag_main.txt | tail -40
