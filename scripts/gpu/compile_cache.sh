# Sourced by the GPU run scripts (after env.sh): vLLM's compile cache ($VLLM_CACHE_ROOT: torch.compile artifacts,
# model infos and Triton's kernels) carried between leases in the checkout's git-ignored .compile-cache/compile-cache.tar.xz
# (docs/quickstart-gpu.md, "Caches across leases").
#   restore_compile_cache            unpack the carried archive, when the lease carried it
#   pack_compile_cache FILE          archive the cache as it is now (every key this lease compiled or restored), when
#                                    it is at most COMPILE_CACHE_MAX_MB (40: it travels back beside the run's records,
#                                    64 MiB in all, and is carried again the same way)
# xz, not gzip: the artifacts repeat themselves far beyond gzip's 32 KB window. vLLM's defaults' key (184 MB unpacked)
# is 27 MB as .tgz and 5.0 MB as .tar.xz (xz -6), so several keys fit where one did; on 2026-12-07 a lease's two keys
# made a 50 MB .tgz, over the limit, and were not brought back.
CARRIED_COMPILE_CACHE=.compile-cache/compile-cache.tar.xz
restore_compile_cache() {
  local archive=$CARRIED_COMPILE_CACHE
  [ -f "$archive" ] || archive=.compile-cache/compile-cache.tgz   # an archive packed before the change to xz
  [ -f "$archive" ] || { echo "compile cache: none carried (every start compiles)"; return 0; }
  mkdir -p "$VLLM_CACHE_ROOT" || return 1
  case $archive in
    *.xz) xz -dc -T0 "$archive" | tar x -C "$VLLM_CACHE_ROOT" ;;
    *) tar xzf "$archive" -C "$VLLM_CACHE_ROOT" ;;
  esac && echo "compile cache restored from $archive ($(du -sm "$VLLM_CACHE_ROOT" | cut -f1) MB)"
}
pack_compile_cache() {
  local file=$1 max_mb=${COMPILE_CACHE_MAX_MB:-40} parts present mb
  [ -d "$VLLM_CACHE_ROOT/torch_compile_cache" ] || { echo "compile cache: nothing to pack"; return 0; }
  # modelinfos: vLLM's model-class inspection, else redone in a subprocess that imports vLLM and torch again;
  # triton: Triton's kernels (env.sh puts TRITON_CACHE_DIR there), else JIT-compiled again at the first requests;
  # dropped first when the archive would be too large
  for parts in "modelinfos triton" "modelinfos"; do
    present=$(cd "$VLLM_CACHE_ROOT" && ls -d $parts 2>/dev/null | xargs)
    (cd "$VLLM_CACHE_ROOT" && tar cf - torch_compile_cache $present | xz -6 -T0 > "$file")
    mb=$(( $(stat -c %s "$file") / 1048576 ))
    if (( mb <= max_mb )); then
      echo "compile cache packed: $file ($mb MB: torch_compile_cache $present)"
      return 0
    fi
  done
  rm -f "$file"; echo "compile cache: $mb MB > $max_mb MB, not packed"
}
