#!/bin/bash
# Packs a run's $EXP (default /root/exp) into $OUT in parts the device tool brings back (at most 8 files of 16 MiB,
# 64 MiB together): MLflow artifacts are left out (the runs, params and metrics stay in mlflow.db); if the archive
# is still over PACK_MAX_MB, the folded stack samples (flame-graph input) are left out too (each trial's
# stack_profile.json keeps their summary). Here: cat exp.tgz.part-* | tar xz -C DEST, then
# autotune pack DEST before committing it (the form experiments/ keeps: experiments/README.md).
set -u
EXP=${EXP:-/root/exp}; MAX_MB=${PACK_MAX_MB:-60}; PART_MB=${PACK_PART_MB:-15}
pack() { tar czf "$OUT/exp.tgz" -C "$EXP" --exclude=mlartifacts --exclude=workers.pids "$@" .; }
pack
mb=$(( $(stat -c %s "$OUT/exp.tgz") / 1048576 ))
if (( mb > MAX_MB )); then
  echo "archive $mb MB > $MAX_MB MB: folded stack samples left out"; pack --exclude='*.folded' --exclude='*.folded.gz'
  mb=$(( $(stat -c %s "$OUT/exp.tgz") / 1048576 ))
fi
split -b "${PART_MB}m" -d "$OUT/exp.tgz" "$OUT/exp.tgz.part-" && rm "$OUT/exp.tgz"
echo "packed $mb MB:"; ls -la "$OUT"
