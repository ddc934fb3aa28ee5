#!/usr/bin/env bash
# Runs N CPU processes of pixelcnn_jax.main on this machine, joined through
# jax.distributed with the gloo collectives: a multi-host run in miniature.
#   launch/local_multiprocess.sh [--dry-run] N ARGS...
# Waits for all of them; if one fails, stops the others and exits non-zero.
set -euo pipefail
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
n=${1:?usage: local_multiprocess.sh [--dry-run] N ARGS...}
shift
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "error: N must be a positive integer, got '$n'" >&2; exit 2; }
port=${PIXELCNN_COORDINATOR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
python=${PYTHON:-python3}

args=$(printf ' %q' "$@")
cmds=()
for ((i = 0; i < n; i++)); do
  cmds+=("env JAX_PLATFORMS=cpu $python -m pixelcnn_jax.main$args --coordinator_address=127.0.0.1:$port --num_processes=$n --process_id=$i")
done
if ((dry)); then
  printf '%s\n' "${cmds[@]}"
  exit 0
fi

pids=()
for cmd in "${cmds[@]}"; do
  bash -c "exec $cmd" &
  pids+=($!)
done
status=0
for ((done = 0; done < n; done++)); do
  if ! wait -n; then
    status=1
    echo "error: a process of local_multiprocess.sh failed; stopping the others" >&2
    # The survivors may be blocked in a collective that will never complete:
    # SIGTERM first (they save if they can), SIGKILL after a grace period.
    kill "${pids[@]}" 2>/dev/null || true
    for _ in {1..20}; do
      kill -0 "${pids[@]}" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    break
  fi
done
wait 2>/dev/null || true
exit $status
