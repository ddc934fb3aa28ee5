# s76 call 1: head_loss as a persistent kernel (grid programs x colours, each program looping over row blocks with its colour's weights loaded once; .run/ps_pkg, PJ_HEAD_PERSIST=P), and the colour grid (.run/cg_pkg), against the committed kernel; then the step A/B with the best
source .run/setup.sh
R=/tmp/r1; rm -rf $R; mkdir -p $R
exec > $R/log.txt 2>&1
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
date
N=$PWD/.run/new_pkg; G=$PWD/.run/cg_pkg; S=$PWD/.run/ps_pkg
B="python3 experiments/bench_head_loss.py --batches=256 --reps=20"
PYTHONPATH=/tmp/site:$N:experiments $B --configs=64x4:32x4 --out=$R/head_main.jsonl 2>&1 | grep -v -i warn | tail -2
for P in 44 88 132; do
echo "persistent P=$P"
PJ_HEAD_PERSIST=$P PYTHONPATH=/tmp/site:$S:experiments $B --configs=64x4:32x4,64x8:64x8,128x8:64x4,64x4:64x4 --out=$R/head_ps$P.jsonl 2>&1 | grep -v -i warn | tail -4
done
echo "persistent P=88 stages 2"
PJ_HEAD_STAGES=2 PJ_HEAD_PERSIST=88 PYTHONPATH=/tmp/site:$S:experiments $B --configs=64x4:32x4,64x8:64x8 --out=$R/head_ps88s2.jsonl 2>&1 | grep -v -i warn | tail -2
echo "colour grid"
PJ_COLOUR_GRID=1 PYTHONPATH=/tmp/site:$G:experiments $B --configs=64x4:32x4,128x8:128x8,64x8:64x8 --out=$R/head_cg.jsonl 2>&1 | grep -v -i warn | tail -3
date
BEST=$(cd $R && python3 -c "
import json,glob
rows=[]
for f in glob.glob('head_ps*.jsonl'):
  for l in open(f):
    r=json.loads(l)
    if 'kernel' in r['case']: r['f']=f; rows.append(r)
f=min(rows,key=lambda r:r['ms_forward']); g=min(rows,key=lambda r:r['ms_with_grad'])
P=g['f'][7:].split('.')[0]
st='2' if 's2' in P else '1'; P=P.replace('s2','')
print(f['case'].split()[1].split(':')[0]+':'+g['case'].split()[1].split(':')[1], P, st, g['ms_with_grad'])")
echo "best persistent: $BEST"
set -- $BEST
for i in 1 2; do
PYTHONPATH=/tmp/site:$N python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_main_$i.jsonl 2>&1 | grep -v -i warn | tail -1
PJ_HEAD_CONFIG=$1 PJ_HEAD_PERSIST=$2 PJ_HEAD_STAGES=$3 PYTHONPATH=/tmp/site:$S python3 experiments/bench_train.py --shapes=15x132k3 --batches=256 --steps=30 --out=$R/train_ps_$i.jsonl 2>&1 | grep -v -i warn | tail -1
done
date
echo ALL DONE
