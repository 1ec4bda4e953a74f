"""Where vLLM's API-server multimodal warm-up spends its ~21 s (experiments/h100-qwen3-vl-4b: "Multi-modal warmup
completed in 21.536s" on a 448x448 image, every trial start).

Replays what `vllm.renderers.base.BaseRenderer._warmup_mm_processor` does, on the CPU only (no GPU is touched):
build the model's multimodal processor as the API server does, process vLLM's dummy input once under cProfile,
then process a second, different image of the same size (the per-request cost once warm). Prints the timings and
the 40 most expensive calls by cumulative time.

    python3 scripts/gpu/profile_mm_warmup.py MODEL_DIR [--threads N]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before processing")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import torch
    from PIL import Image
    from vllm.engine.arg_utils import EngineArgs
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing.context import TimingContext

    t_import = time.perf_counter() - t0
    if args.threads:
        torch.set_num_threads(args.threads)
    config = EngineArgs(
        model=args.model,
        load_format="dummy",
        max_model_len=8192,
        limit_mm_per_prompt={"image": {"count": 1, "width": 448, "height": 448}, "video": 0},
    ).create_engine_config()
    t1 = time.perf_counter()
    processor = MULTIMODAL_REGISTRY.create_processor(
        config.model_config, cache=MULTIMODAL_REGISTRY.processor_cache_from_config(config)
    )
    t_build = time.perf_counter() - t1

    mm_config = config.model_config.get_multimodal_config()
    limits = {k: v for k, v in processor.info.allowed_mm_limits.items() if v > 0}
    inputs = processor.dummy_inputs.get_dummy_processor_inputs(
        seq_len=config.model_config.max_model_len,
        mm_counts=dict.fromkeys(limits, 1),
        mm_options=mm_config.limit_per_prompt,
    )
    profiler = cProfile.Profile()
    t2 = time.perf_counter()
    profiler.enable()
    processor.apply(inputs, timing_ctx=TimingContext(enabled=False))
    profiler.disable()
    t_first = time.perf_counter() - t2

    second = processor.dummy_inputs.get_dummy_processor_inputs(
        seq_len=config.model_config.max_model_len,
        mm_counts=dict.fromkeys(limits, 1),
        mm_options=mm_config.limit_per_prompt,
    )
    second.mm_data_items = processor.info.parse_mm_data({"image": [Image.new("RGB", (448, 448), color=(10, 20, 30))]})
    t3 = time.perf_counter()
    processor.apply(second, timing_ctx=TimingContext(enabled=False))
    t_second = time.perf_counter() - t3

    print(
        f"torch threads {torch.get_num_threads()}; import {t_import:.2f} s, processor built in {t_build:.2f} s, "
        f"first apply (the warm-up) {t_first:.2f} s, second apply (another 448x448 image) {t_second:.3f} s"
    )
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    print(text.getvalue())


if __name__ == "__main__":
    main()
