#!/bin/bash
# One GPU's detached study worker (started by reference.sh under setsid): runs `autotune tune` on each SPACE:STUDY
# pair in turn on this GPU until DEADLINE (epoch s); a study that ends early (a grid done) hands the time to the next.
# No trial starts later than TRIAL_S before the deadline.
#   GPU=0 DEADLINE=... TRIAL_S=260 SERVER_CPUS=0-11 CLIENT_CPUS=12-15 EXTRA="--confirm 2" \
#     bash scripts/gpu/worker.sh SPACE.yaml:STUDY [SPACE2.yaml:STUDY2 ...]
set -u
for pair in "$@"; do
  space=${pair%%:*} study=${pair#*:}
  now=$(date +%s)
  if (( DEADLINE - now - TRIAL_S < 20 )); then echo "$(date -u +%T) no time left for $study"; break; fi
  echo "$(date -u +%T) GPU $GPU: $study ($space) until $(date -u -d @"$DEADLINE" +%T)"
  # shellcheck disable=SC2086  # EXTRA holds several arguments
  CUDA_VISIBLE_DEVICES=$GPU timeout -k 15 -s TERM $(( DEADLINE - now )) python3 -m autotune.cli tune "$space" \
    --engine "$ENGINE" --model "$MODEL" --study "$study" --experiments-dir "$EXP" --n-trials 100 \
    --timeout $(( DEADLINE - now - TRIAL_S )) --server-cpus "$SERVER_CPUS" --client-cpus "$CLIENT_CPUS" ${EXTRA:-}
  echo "$(date -u +%T) GPU $GPU: $study done (rc $?)"
done
