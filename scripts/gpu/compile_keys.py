"""Which engine settings change vLLM's torch.compile cache key (VllmConfig.compute_hash) on this host.

A trial whose key was compiled before loads the graphs (~6 s) instead of compiling them (25-70 s), so a search
space should give few values to the settings that change it. Builds the engine config (no GPU memory is touched)
for vLLM's defaults and for one changed setting at a time, and prints the key, the CUDA-graph capture sizes and
the scheduler limits of each:

    python3 scripts/gpu/compile_keys.py MODEL_DIR
"""

from __future__ import annotations

import sys
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "max_num_seqs=128": {"max_num_seqs": 128},
    "max_num_seqs=256": {"max_num_seqs": 256},
    "max_num_seqs=512": {"max_num_seqs": 512},
    "max_num_batched_tokens=2048": {"max_num_batched_tokens": 2048},
    "enable_chunked_prefill=False": {"enable_chunked_prefill": False},
    "enable_prefix_caching=False": {"enable_prefix_caching": False},
    "async_scheduling=False": {"async_scheduling": False},
    "gpu_memory_utilization=0.95": {"gpu_memory_utilization": 0.95},
    "kv_cache_dtype=fp8": {"kv_cache_dtype": "fp8"},
    "quantization=fp8": {"quantization": "fp8"},
    "mm_processor_cache_gb=0": {"mm_processor_cache_gb": 0},
    "renderer_num_workers=4 (no processor cache)": {"renderer_num_workers": 4, "mm_processor_cache_gb": 0},
    "mm_processor_kwargs.use_fast": {"mm_processor_kwargs": {"use_fast": True}},
}


def main(model: str) -> None:
    from vllm.engine.arg_utils import EngineArgs

    base = {
        "model": model,
        "load_format": "dummy",
        "max_model_len": 8192,
        "limit_mm_per_prompt": {"image": {"count": 1, "width": 448, "height": 448}, "video": 0},
    }
    keys: dict[str, str] = {}
    for name, changes in VARIANTS.items():
        try:
            config = EngineArgs(**base, **changes).create_engine_config()
        except (TypeError, ValueError) as exc:
            print(f"{name:44s} not buildable here: {exc!r:.160}")
            continue
        key = config.compute_hash()
        keys[name] = key
        sizes = config.compilation_config.cudagraph_capture_sizes or []
        same = "same key as defaults" if key == keys.get("defaults") else "NEW KEY"
        print(f"{name:44s} {key}  {same:20s} capture sizes {len(sizes)} up to {max(sizes, default=0)}, "
              f"max_num_seqs {config.scheduler_config.max_num_seqs}, tokens {config.scheduler_config.max_num_batched_tokens}")


if __name__ == "__main__":
    main(sys.argv[1])
