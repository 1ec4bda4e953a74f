#!/bin/bash
# Wait for a detached run (scripts/gpu/sustained.py, reliability.sh) and bring back what it has so far, in one device
# command: waits until RUN_DIR/done exists, the run's process (RUN_DIR/pid) has gone, the run's deadline
# (RUN_DIR/deadline, epoch s) is 20 s past, or LIMIT_S passed; prints the progress log; packs RUN_DIR into $OUT as
# run.tgz, split into 15 MB parts when larger.
# Returns at once, with exit code 3, when no run was started (no RUN_DIR/pid): a chain of device calls sent together
# (staging, start, waits) must not spend the lease waiting for a run that an earlier failed step never started.
# usage: bash scripts/gpu/wait_pack.sh RUN_DIR LIMIT_S       here: cat run.tgz.part-* | tar xz -C DEST
set -u
RUN_DIR=$1; LIMIT_S=$2
if [ ! -f "$RUN_DIR/pid" ]; then
  echo "wait_pack: no run started in $RUN_DIR (no $RUN_DIR/pid): an earlier step failed; nothing to wait for" >&2
  exit 3
fi
pid=$(cat "$RUN_DIR/pid")
deadline=$(cat "$RUN_DIR/deadline" 2>/dev/null || echo $(( $(date +%s) + LIMIT_S )))
while [ ! -f "$RUN_DIR/done" ] && kill -0 "$pid" 2>/dev/null && (( SECONDS < LIMIT_S )) \
  && (( $(date +%s) < deadline + 20 )); do sleep 5; done
kill -0 "$pid" 2>/dev/null || [ -f "$RUN_DIR/done" ] || echo "wait_pack: the run (pid $pid) ended without RUN_DIR/done"
cat "$RUN_DIR/progress.log" 2>/dev/null | tail -40
tar czf "$OUT/run.tgz" -C "$(dirname "$RUN_DIR")" "$(basename "$RUN_DIR")"
if (( $(stat -c %s "$OUT/run.tgz") > 15 * 1048576 )); then
  split -b 15m -d "$OUT/run.tgz" "$OUT/run.tgz.part-" && rm "$OUT/run.tgz"
fi
ls -la "$OUT"
