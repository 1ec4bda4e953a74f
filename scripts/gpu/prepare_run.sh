# Sourced by the detached-run scripts (sustained.sh, reliability.sh) from the tree's root: installs the staged
# packages, freezes a copy of the tree in /root/tree (later device commands re-send the tree), enters it with the GPU
# environment (env.sh), restores the carried compile cache (compile_cache.sh) and records the host in $RUN/env.json.
# Exits on a failed install.
bash /root/gpu-stage/install.sh > /root/install.log 2>&1 || { tail -20 /root/install.log; exit 1; }
tail -1 /root/install.log
rm -rf /root/tree "$RUN"; mkdir -p /root/tree "$RUN"
tar --exclude=./.gpu-stage --exclude=./.venv -cf - . | tar xf - -C /root/tree
cd /root/tree && source scripts/gpu/env.sh && source scripts/gpu/compile_cache.sh
restore_compile_cache
record_env "$RUN/env.json"
python3 -c "import vllm; print('vllm', vllm.__version__)"
