"""vLLM 0.24's offline engine (`LLMEngine`, in this process) as an `OfflineEngine` for the limit table.

The tuned config reaches it through the one translation that `autotune serve` uses (`EngineConfig.to_vllm_cli_args`),
parsed by vLLM's own `EngineArgs` parser; what only `vllm serve` knows (API servers, the served name) is left out and
listed. One engine core: a config with several engine cores per GPU is measured as one with the GPU to itself (the
record says so). The engine is built with the usage context of `vllm serve` (OPENAI_API_SERVER): vLLM picks its
default batch limits by usage context, and an engine built as a library got 2,048 batched tokens and 256 sequences on
an H100 on 2026-12-07 where `vllm serve` gets 8,192 and 1,024. The engine core runs in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0), so that queued requests wait until the first step instead of being scheduled
while the rest are still being added. Outputs are not detokenized (serving detokenizes in its API servers, beside
the engine). Sampling follows the model's generation config, as served requests without sampling fields do.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from autotune.bench.text import make_text
from autotune.config import EngineConfig
from autotune.limits.phases import Finished, OfflinePrompt

IN_PROCESS_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def offline_engine_args(engine: EngineConfig) -> tuple[argparse.Namespace, list[str], list[str]]:
    """This config as one engine core: (vLLM's parsed `EngineArgs` namespace, the arguments as translated, those
    among them that only `vllm serve` takes, which the offline engine leaves out)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    single = engine.model_copy(update={"engines_per_gpu": 1, "data_parallel_size": 1, "api_server_count": None})
    argv = ["--model", single.model, *single.to_vllm_cli_args()]
    namespace, serving_only = EngineArgs.add_cli_args(FlexibleArgumentParser()).parse_known_args(argv)
    return namespace, argv, serving_only


class VllmOfflineEngine:
    def __init__(self, engine: EngineConfig) -> None:
        os.environ.update({**engine.env, **IN_PROCESS_ENV})
        from vllm.engine.arg_utils import EngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.llm_engine import LLMEngine

        namespace, self.args, self.serving_only_args = offline_engine_args(engine)
        self._engine = LLMEngine.from_engine_args(EngineArgs.from_cli_args(namespace),
                                                  usage_context=UsageContext.OPENAI_API_SERVER)
        scheduler = self._engine.vllm_config.scheduler_config
        self.batch_limits = {"max_num_seqs": scheduler.max_num_seqs,
                             "max_num_batched_tokens": scheduler.max_num_batched_tokens}
        self._tokenizer: Any = self._engine.get_tokenizer()
        self._sampling_defaults: dict[str, Any] = self._engine.model_config.get_diff_sampling_param()
        self._special_ids = set(getattr(self._tokenizer, "all_special_ids", []) or [])

    def add(self, request_id: str, prompt: OfflinePrompt, max_tokens: int) -> None:
        from vllm import SamplingParams

        params = SamplingParams(**{**self._sampling_defaults, "max_tokens": max_tokens, "min_tokens": max_tokens,
                                   "ignore_eos": True, "detokenize": False})
        self._engine.add_request(request_id, self._prompt(prompt), params)

    def run(self) -> list[Finished]:
        finished: list[Finished] = []
        while self._engine.has_unfinished_requests():
            for output in self._engine.step():
                if output.finished:
                    finished.append(Finished(len(output.prompt_token_ids or []), len(output.outputs[0].token_ids)))
        return finished

    def text_token_ids(self, count: int, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        ids: list[int] = []
        while len(ids) < count:
            words = make_text(2 * (count - len(ids)) + 8, rng)
            ids += [i for i in self._tokenizer.encode(words, add_special_tokens=False) if i not in self._special_ids]
        return ids[:count]

    def _prompt(self, prompt: OfflinePrompt) -> dict[str, Any]:
        if prompt.token_ids is not None:
            return {"prompt_token_ids": prompt.token_ids}
        text = self._tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
        if not prompt.images:
            return {"prompt": text}
        return {"prompt": text, "multi_modal_data": {"image": prompt.images if len(prompt.images) > 1 else prompt.images[0]}}
