"""One vLLM compile cache for every trial of a study, on this host and carried to the next one.

vLLM keeps what it compiles under VLLM_CACHE_ROOT (`torch_compile_cache/<compile key>/`: the compiled graphs, with
Inductor's and Triton's caches inside; `torch_compile_cache/torch_aot_compile/`). The tuner gives every vLLM trial
server the same root: `autotune tune --compile-cache DIR`, else the VLLM_CACHE_ROOT of the tuner's environment, else
vLLM's own default (`$XDG_CACHE_HOME/vllm`, `~/.cache/vllm`). A trial whose compile key is in it loads the graphs
(5-7 s on the H200) instead of compiling them (25-70 s); the trial records whether it did (`compile_cache`).

CUDA graphs are captured again by every start (vLLM does not store them); their capture is `cuda_graphs_s`.
The same root holds `modelinfos/`, vLLM's record of the model class's capabilities: without it each start's API
server inspects the class in a subprocess that imports vLLM and torch again (`_run_in_subprocess` in vLLM's
`model_executor/models/registry.py`), likely most of the 28 s between "non-default args" and "Resolved
architecture" in the first start on a fresh H100 (experiments/reliability/gpu-2026-12-05-h100; a start profile,
`--stack-profile-hz`, is to confirm it). One root for every trial pays that once per host.
Carrying the cache between device sessions: pack `<root>/torch_compile_cache` and `<root>/modelinfos` at the end of a
session and unpack them under the same root in the next (scripts/gpu/reference.sh does: SAVE_COMPILE_CACHE=1,
`.compile-cache/`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CACHE_ROOT_ENV = "VLLM_CACHE_ROOT"
COMPILE_CACHE_DIR = "torch_compile_cache"
_NOT_A_KEY = frozenset({"torch_aot_compile"})


def default_compile_cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """VLLM_CACHE_ROOT if set, else vLLM's own default: `$XDG_CACHE_HOME/vllm` or `~/.cache/vllm`."""
    if environ.get(CACHE_ROOT_ENV):
        return Path(environ[CACHE_ROOT_ENV]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base).expanduser() / "vllm"


def compile_cache_root(configured: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """The folder the study's vLLM servers share (created; absolute, so every server process agrees)."""
    root = (configured.expanduser() if configured is not None else default_compile_cache_root(environ)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cached_keys(root: Path) -> list[str]:
    """The compile keys the cache holds (folders under `torch_compile_cache/`)."""
    folder = root / COMPILE_CACHE_DIR
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name not in _NOT_A_KEY)
