"""Why vLLM 0.24's API-server multimodal warm-up takes 16-57 s: the processor load deep-copies the pooled tokenizer.

CPU only (no GPU, no engine): builds the tokenizer the way vLLM's renderer does (cached, then made thread-safe with
`maybe_make_thread_pool(tokenizer, renderer_num_workers + 1)`), times one `copy.deepcopy` of it and the
multimodal processor load that the warm-up does with it, with and without `serving.vllm_startup_fixes`.

    python3 scripts/gpu/repro_tokenizer_deepcopy.py MODEL_DIR --copies 2 [--fix]
"""

from __future__ import annotations

import argparse
import copy
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--copies", type=int, default=2, help="pool size: vLLM uses renderer_num_workers + 1")
    parser.add_argument("--fix", action="store_true", help="apply serving.vllm_startup_fixes first")
    args = parser.parse_args()

    from transformers import AutoTokenizer
    from vllm.tokenizers.hf import get_cached_tokenizer, maybe_make_thread_pool
    from vllm.transformers_utils.processor import get_processor

    if args.fix:
        from serving.vllm_startup_fixes import share_pooled_tokenizer_on_deepcopy

        assert share_pooled_tokenizer_on_deepcopy({})
    pool = maybe_make_thread_pool(copy.copy(get_cached_tokenizer(AutoTokenizer.from_pretrained(args.model))), args.copies)
    t0 = time.perf_counter()
    copy.deepcopy(pool)
    deepcopy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    processor = get_processor(args.model, tokenizer=pool)
    load_s = time.perf_counter() - t0
    print(json.dumps({
        "copies": args.copies, "fix": args.fix, "deepcopy_s": round(deepcopy_s, 3), "processor_load_s": round(load_s, 3),
        "processor": type(processor).__name__, "processor_keeps_the_pool": processor.tokenizer is pool,
        "input_ids_hello_world": processor.tokenizer("hello world")["input_ids"],
    }))


if __name__ == "__main__":
    main()
