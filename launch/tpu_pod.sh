#!/usr/bin/env bash
# Creates a Cloud TPU VM pod slice, copies this checkout to every worker,
# installs it, runs pixelcnn_jax.main on all workers at once, and deletes the
# slice afterwards (also when the run fails). On a pod slice jax.distributed
# finds its coordinator itself.
#
#   launch/tpu_pod.sh [--dry-run] --name=NAME --zone=ZONE --type=v4-64 \
#       [--version=tpu-ubuntu2204-base] [--keep] -- ARGS...
# e.g.
#   launch/tpu_pod.sh --name=pcnn --zone=us-central2-b --type=v4-64 -- \
#       --config=configs/imagenet32.py --workdir=gs://BUCKET/imagenet32
# The workdir must be shared by all workers (a gs:// path: orbax writes there).
set -euo pipefail
dry=0 keep=0 name="" zone="" type="" version="tpu-ubuntu2204-base"
while (($#)); do
  case "$1" in
    --dry-run) dry=1 ;;
    --keep) keep=1 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --type=*) type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (arguments for main.py go after --)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$name" && -n "$zone" && -n "$type" ]] || {
  echo "error: --name, --zone and --type are required" >&2; exit 2; }
(($#)) || { echo "error: pass main.py's arguments after --" >&2; exit 2; }

args=$(printf ' %q' "$@")
tpu="gcloud compute tpus tpu-vm"
run() { if ((dry)); then echo "$*"; else eval "$@"; fi; }

run "$tpu create $name --zone=$zone --accelerator-type=$type --version=$version"
if ((!keep)); then
  trap 'run "$tpu delete $name --zone=$zone --quiet"' EXIT
fi
run "tar czf /tmp/pixelcnn_jax_src.tgz --exclude=.git --exclude=.venv --exclude=.data -C $(git rev-parse --show-toplevel) ."
run "$tpu scp /tmp/pixelcnn_jax_src.tgz $name:/tmp/ --zone=$zone --worker=all"
run "$tpu ssh $name --zone=$zone --worker=all --command='mkdir -p ~/pixelcnn_jax && tar xzf /tmp/pixelcnn_jax_src.tgz -C ~/pixelcnn_jax && pip install -q \"jax[tpu]\" -e ~/pixelcnn_jax[data]'"
run "$tpu ssh $name --zone=$zone --worker=all --command='cd ~/pixelcnn_jax && python3 -m pixelcnn_jax.main$args'"
