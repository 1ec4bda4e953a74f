"""vLLM 0.24's API-server renderer warm-up replayed in one process, with and without serving.vllm_startup_fixes.

Builds the engine config and the renderer exactly as vLLM's API server does (`renderer_from_config`: the cached
tokenizer made thread-safe with `renderer_num_workers + 1` pooled copies), then times `renderer.warmup()` (the
chat template, then the multimodal processor load and one dummy 448x448 image: the "Multi-modal warmup completed
in ...s" of every server start). No GPU memory is touched and no engine starts. One JSON line per run:

    python3 scripts/gpu/renderer_warmup.py MODEL_DIR [--workers N] [--fix]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--workers", type=int, default=1, help="renderer_num_workers (vLLM: preprocessing threads)")
    parser.add_argument("--fix", action="store_true", help="apply serving.vllm_startup_fixes first (as our middleware does)")
    parser.add_argument("--cpu", action="store_true", help="force vLLM's CPU platform (a host without a GPU)")
    args = parser.parse_args()

    if args.cpu:
        import vllm.platforms
        from vllm.platforms.cpu import CpuPlatform

        vllm.platforms._current_platform = CpuPlatform()
    if args.fix:
        from serving.vllm_startup_fixes import share_pooled_tokenizer_on_deepcopy

        assert share_pooled_tokenizer_on_deepcopy({})
    from vllm.engine.arg_utils import EngineArgs
    from vllm.renderers.params import ChatParams
    from vllm.renderers.registry import renderer_from_config

    config = EngineArgs(
        model=args.model, load_format="dummy", max_model_len=8192, renderer_num_workers=args.workers,
        mm_processor_cache_gb=0 if args.workers > 1 else 4,  # vLLM refuses its processor cache with several workers
        limit_mm_per_prompt={"image": {"count": 1, "width": 448, "height": 448}, "video": 0},
    ).create_engine_config()
    t0 = time.perf_counter()
    renderer = renderer_from_config(config)
    built_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    renderer.warmup(ChatParams())
    warmup_s = time.perf_counter() - t0
    print(json.dumps({"workers": args.workers, "fix": args.fix, "renderer_build_s": round(built_s, 3),
                      "warmup_s": round(warmup_s, 3), "renderer": type(renderer).__name__}))


if __name__ == "__main__":
    main()
