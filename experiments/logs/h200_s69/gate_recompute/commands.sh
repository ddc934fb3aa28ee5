# One NVIDIA H200, 2026-12-06, on main at c8c8cf2: logs/h100_s68/next/commands.sh
# as written there (.run/main_pkg main's package, .run/rec_pkg with
# logs/h100_s68/next/gate_recompute.patch, .run/var_pkg with
# gate_variants.patch), then, in a second call on the same machine, main's profile:
PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/profile_train.py --shape=15x132k3 --steps=3 --top=30 > $OUT/prof_main.txt 2>&1
