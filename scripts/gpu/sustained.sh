#!/bin/bash
# Issue 16's proof as device commands (after staging, README "GPU"): installs the staged packages, records the
# host, checks NVML GPM under a known load, freezes a copy of the tree (later commands re-send the tree) and starts
# scripts/gpu/sustained.py detached, bounded by the lease; then `bash scripts/gpu/wait_pack.sh /root/sustained S`
# in this and each following command brings back what it has.
# usage: bash scripts/gpu/sustained.sh NAME=CONFIG:LOW:HIGH ...    (LEASE_LEFT or LEASE_BUDGET: prepare_run.sh)
set -u
RUN=/root/sustained
source scripts/gpu/prepare_run.sh
timeout 90 python3 scripts/gpu/gpm_check.py --seconds 3 --out "$RUN/gpm_check.json" 2>&1 | tail -12
export -f pack_compile_cache
SERVER_CPUS=0-9 CLIENT_CPUS=10-15 RUN_DIR=$RUN MARK_DONE=0 setsid nohup bash -c 'python3 scripts/gpu/sustained.py "$@"
  pack_compile_cache "$RUN_DIR/compile-cache.tar.xz" >> "$RUN_DIR/progress.log"; touch "$RUN_DIR/done"' sustained "$@" \
  > "$RUN/run.log" 2>&1 < /dev/null &
echo $! > "$RUN/pid"   # scripts/gpu/wait_pack.sh stops waiting once this process has gone
echo "started; deadline in $(( DEADLINE_EPOCH - $(date +%s) )) s"
