# s73 call 5: the step with its SM clock and power recorded (bench_train + gpu_power); the profile cool and at the power cap
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
P=$PWD/.run/main_pkg
for i in 1 2; do
  PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=15x132k3 --batches=256,128 --steps=30 --out=$R/train_132.jsonl 2>&1 | grep -v -i warn | tail -2
done
PYTHONPATH=/tmp/site:$P python3 experiments/bench_train.py --shapes=20x384k5 --batches=256 --steps=20 --out=$R/train_384.jsonl 2>&1 | grep -v -i warn | tail -1
date
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader -lms 100 > $R/smi_profiles.csv &
SMI=$!
sleep 15
for w in 3 200; do
  echo "== profile warmup $w $(date +%H:%M:%S.%N)"
  PYTHONPATH=/tmp/site:$P python3 experiments/profile_train.py --shape=15x132k3 --steps=5 --warmup=$w --gaps --top=8 --out=$R/prof.jsonl 2>&1 | grep -v -i warn | head -20
  echo "== end $(date +%H:%M:%S.%N)"
  sleep 15
done
kill $SMI
date
echo ALL DONE
