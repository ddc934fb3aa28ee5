# s73 call 4: channel alignment 16 against 32 at 15 x 132 under the 700 W cap, with the SM clock and power logged
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv,noheader -lms 100 > $R/smi.csv &
SMI=$!
for a in 16 32 16 32; do
  echo "== align $a start $(date +%H:%M:%S.%N)"
  PYTHONPATH=/tmp/site:$PWD/.run/main_pkg python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --aligns=$a --out=$R/train_a$a.jsonl 2>&1 | grep -v -i warn | tail -1
  echo "== align $a end $(date +%H:%M:%S.%N)"
done
kill $SMI
echo ALL DONE
