#!/bin/bash
# Wait for a detached run (scripts/gpu/sustained.py) and bring back what it has so far, in one device command:
# waits until RUN_DIR/done exists, the run's deadline (RUN_DIR/deadline, epoch s) is 20 s past, or LIMIT_S passed;
# prints the progress log; packs RUN_DIR into $OUT as run.tgz, split into 15 MB parts when larger.
# usage: bash scripts/gpu/wait_pack.sh RUN_DIR LIMIT_S       here: cat run.tgz.part-* | tar xz -C DEST
set -u
RUN_DIR=$1; LIMIT_S=$2
deadline=$(cat "$RUN_DIR/deadline" 2>/dev/null || echo $(( $(date +%s) + LIMIT_S )))
while [ ! -f "$RUN_DIR/done" ] && (( SECONDS < LIMIT_S )) && (( $(date +%s) < deadline + 20 )); do sleep 5; done
cat "$RUN_DIR/progress.log" 2>/dev/null | tail -40
tar czf "$OUT/run.tgz" -C "$(dirname "$RUN_DIR")" "$(basename "$RUN_DIR")"
if (( $(stat -c %s "$OUT/run.tgz") > 15 * 1048576 )); then
  split -b 15m -d "$OUT/run.tgz" "$OUT/run.tgz.part-" && rm "$OUT/run.tgz"
fi
ls -la "$OUT"
