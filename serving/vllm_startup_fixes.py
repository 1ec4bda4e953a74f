"""Start-up fixes applied inside vLLM's API servers (imported with `serving.vllm_middleware`, before vLLM's warm-up).

Shared pooled tokenizer on deepcopy. vLLM 0.24's renderer makes its tokenizer thread-safe with
`vllm.tokenizers.hf.maybe_make_thread_pool`: a `TokenizerPool` class whose `__reduce__` rebuilds the pool, so a
`copy.deepcopy` of it deep-copies the whole fast tokenizer (150k-token vocabulary for Qwen) `renderer_num_workers +
2` times. Loading the multimodal processor for the warm-up passes that tokenizer to transformers, which deep-copies
its keyword arguments several times and then keeps the original object anyway. Measured:

- on the GPU host, stack dumps of the API servers during `_warmup_mm_processor` are in `copy.deepcopy` under
  `maybe_make_thread_pool` nearly every sample, and the warm-up grows with the preprocessing workers, part of every
  server start (experiments/h100-qwen3-vl-4b/README.md, "Measurements the code relies on");
- on the GPU host, vLLM's renderer built as the API server builds it (scripts/gpu/renderer_warmup.py) warms up in
  18.3 s with 1 preprocessing worker and 40.8 s with 4; with this fix in 3.8 and 4.0 s;
- on the CPU (scripts/gpu/repro_tokenizer_deepcopy.py, vLLM 0.24.0 and the Qwen3-VL-4B tokenizer), the processor load
  takes 9.5 s with a pool of 2 and 18.6 s with 5; with the pool returned as its own deep copy, 1.7 and 1.8 s, and
  the processor holds the very same tokenizer object in both cases.

The pool is thread-safe by construction, so handing out the same pool where a deep copy was asked for changes no
result. `AUTOTUNE_VLLM_SHARE_POOLED_TOKENIZER=0` turns it off. Without vLLM (CI) nothing is patched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

OFF_ENV = "AUTOTUNE_VLLM_SHARE_POOLED_TOKENIZER"

log = logging.getLogger(__name__)


def _same_object(self: object, memo: dict[int, object]) -> object:
    return self


def share_pooled_tokenizer_on_deepcopy(environ: Mapping[str, str] = os.environ) -> bool:
    """Make `copy.deepcopy` of vLLM's thread-safe tokenizer pools return the pool itself; True when applied."""
    if environ.get(OFF_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        from vllm.tokenizers.hf import ThreadSafeHFTokenizerMixin
    except ImportError:
        return False
    if "__deepcopy__" in vars(ThreadSafeHFTokenizerMixin):
        return True
    ThreadSafeHFTokenizerMixin.__deepcopy__ = _same_object  # type: ignore[attr-defined]
    log.info("autotune: vLLM's pooled tokenizer is shared on deepcopy (%s=0 turns this off)", OFF_ENV)
    return True
