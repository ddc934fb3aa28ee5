# Sourced by the recipes that run jobs side by side.
#
# read_seeds "$SEEDS" fills the array `seeds` with its whole numbers (leading
# zeros dropped, so that 4 and 04 are one seed and one workdir), or stops the
# recipe in one line on a word, an empty list or a seed named twice (two runs
# would share a workdir).
# spawn LOG CMD...   runs CMD in the background, its output to LOG.
# reap               waits for the jobs spawned since the last reap; the LOG of
#                    each that failed joins `failed`.
# stop_if_failed N NOUN  stops the recipe in one line naming those logs and
#                    why each failed (alike failures once).
read_seeds() {
  local given s
  read -r -a given <<< "$1"
  seeds=()
  for s in "${given[@]}"; do
    if [[ ! $s =~ ^[0-9]+$ ]]; then
      echo "error: SEEDS takes whole numbers, got '$s'" >&2
      exit 2
    fi
    seeds+=($((10#$s)))
  done
  if (( ${#seeds[@]} == 0 )); then
    echo "error: SEEDS lists no seed" >&2
    exit 2
  fi
  if [[ $(printf '%s\n' "${seeds[@]}" | sort | uniq -d) ]]; then
    echo "error: SEEDS names a seed twice: '$1'" >&2
    exit 2
  fi
}

spawned_pids=() spawned_logs=() failed=()
spawn() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  spawned_pids+=($!) spawned_logs+=("$log")
}

reap() {
  local i
  for i in "${!spawned_pids[@]}"; do
    wait "${spawned_pids[$i]}" || failed+=("${spawned_logs[$i]}")
  done
  spawned_pids=() spawned_logs=()
}

stop_if_failed() {
  (( ${#failed[@]} )) || return 0
  local log reason seen=$'\n' why="" reasons=0
  for log in "${failed[@]}"; do
    # A job's own one-line error, else its log's last line (a traceback's).
    reason=$( { grep -sE '^(error|preempted): ' "$log" || true; } | tail -n 1 | sed -E 's/^[a-z]+: //')
    [[ -n $reason ]] || reason=$( { grep -sv '^[[:space:]]*$' "$log" || true; } | tail -n 1)
    [[ -n $reason ]] || reason="no output"
    [[ $seen == *$'\n'"$reason"$'\n'* ]] && continue
    seen+=$reason$'\n' reasons=$((reasons + 1))
    why+="${why:+ | }$(basename "$log" .log): $reason"
  done
  # One reason for all reads the same without the job's name.
  if (( reasons == 1 )); then why=${why#*: }; fi
  echo "error: ${#failed[@]} of $1 $2 failed ($why); see ${failed[*]}" >&2
  exit 1
}
