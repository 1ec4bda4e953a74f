# Sourced by the detached-run scripts (sustained.sh, reliability.sh, trial_cost.sh) from the tree's root: installs the staged
# packages, freezes a copy of the tree in /root/tree (later device commands re-send the tree), enters it with the GPU
# environment (env.sh), restores the carried compile cache (compile_cache.sh), records the host in $RUN/env.json and
# sets the lease's end: DEADLINE_EPOCH (exported; in $RUN/deadline for wait_pack.sh) from LEASE_LEFT (device seconds
# left) or else LEASE_BUDGET (`status`'s budget_left_s when the machine was asked for; 1800) less the machine's uptime,
# with room to pack and bring the files back. Exits on a failed install.
bash /root/gpu-stage/install.sh > /root/install.log 2>&1 || { tail -20 /root/install.log; exit 1; }
tail -1 /root/install.log
rm -rf /root/tree "$RUN"; mkdir -p /root/tree "$RUN"
tar --exclude=./.gpu-stage --exclude=./.venv -cf - . | tar xf - -C /root/tree
cd /root/tree && source scripts/gpu/env.sh && source scripts/gpu/compile_cache.sh
restore_compile_cache
record_env "$RUN/env.json"
python3 -c "import vllm; print('vllm', vllm.__version__)"
LEASE_LEFT=${LEASE_LEFT:-$(( ${LEASE_BUDGET:-1800} - $(cut -d. -f1 /proc/uptime) - 90 ))}   # the lease began before the boot
export DEADLINE_EPOCH=$(( $(date +%s) + LEASE_LEFT - 110 ))                # room to pack and bring the files back
echo "$DEADLINE_EPOCH" > "$RUN/deadline"
