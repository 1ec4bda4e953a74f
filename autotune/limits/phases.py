"""The offline phases of the limit table and their runner, over any `OfflineEngine` (vLLM's is
`autotune.limits.vllm_offline.VllmOfflineEngine`; tests use a stand-in).

Every phase queues all its requests first (the engine's input processing, timed apart as `add_s`), then runs the
engine until the last one finishes (`engine_s`): the engine's rate with everything waiting, no HTTP, no client, no
JSON, no detokenization. Each phase draws its own images and texts (distinct seeds): no request reuses another's
prefix- or multimodal-cache entries. A warm-up phase comes first (Triton kernels compile on first use) and is not
recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from autotune.bench.images import render_image
from autotune.bench.request_body import request_rng
from autotune.bench.text import make_text
from autotune.bench.workload import SyntheticSpec, Workload
from autotune.errors import ConfigError
from autotune.limits.record import PhaseResult, PhaseSpec
from autotune.observe.gpu import GpuSampler, GpuSummary

SHORT_PROMPT_TOKENS = 16
_PROMPT_STREAM = 104_729  # request_rng stream of the limit phases (apart from the load generator's)

PHASES: tuple[PhaseSpec, ...] = (
    PhaseSpec(name="warm-up", description="the workload's requests, 8 output tokens", prompt="workload", max_tokens=8,
              recorded=False),
    PhaseSpec(name="whole", description="the workload's requests (images, text, every output token)", prompt="workload"),
    PhaseSpec(name="language model", description="text token ids as many as the workload's prompt, every output token",
              prompt="same_length_text"),
    PhaseSpec(name="prefill", description="the workload's requests, one output token", prompt="workload", max_tokens=1),
    PhaseSpec(name="text prefill", description="text as long as the workload's prompt, one output token",
              prompt="same_length_text", max_tokens=1),
    PhaseSpec(name="decode", description=f"{SHORT_PROMPT_TOKENS}-token text prompts, the workload's output tokens",
              prompt="short_text"),
)


@dataclass(frozen=True, slots=True)
class OfflinePrompt:
    """A user turn (`text` and `images`, the engine applies the chat template), or prompt `token_ids` as they are."""

    text: str | None = None
    images: list[Image.Image] = field(default_factory=list)
    token_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    prompt_tokens: int
    output_tokens: int


class OfflineEngine(Protocol):
    args: list[str]  # the engine's arguments as the config translated them
    serving_only_args: list[str]  # those among them that only `vllm serve` takes (not applied offline)

    def add(self, request_id: str, prompt: OfflinePrompt, max_tokens: int) -> None:
        """Queue one request (its input processing happens here), generating exactly `max_tokens` (ignore EOS)."""

    def run(self) -> list[Finished]:
        """Step the engine until no request is left; the requests that finished."""

    def text_token_ids(self, count: int, seed: int) -> list[int]:
        """`count` ordinary text token ids (no special token), different for each seed."""


class WorkloadPrompts:
    """A synthetic workload's requests as offline prompts, drawn per phase and request."""

    def __init__(self, workload: Workload) -> None:
        if not isinstance(workload.synthetic, SyntheticSpec):
            raise ConfigError(f"workload {workload.name!r}: the limit table needs a synthetic workload (its requests "
                              "are drawn afresh for every phase); a dataset's lines would repeat across phases")
        self.workload = workload
        self.spec = workload.synthetic

    def request(self, phase: int, index: int) -> tuple[OfflinePrompt, int]:
        """The prompt and output length of request `index` of phase `phase`."""
        rng = request_rng(self.workload.seed, _PROMPT_STREAM, phase, index)
        input_tokens = max(1, self.spec.input_tokens.sample(rng))
        max_tokens = max(1, self.spec.output_tokens.sample(rng))
        images: list[Image.Image] = []
        spec = self.spec.images
        for _ in range(spec.count.sample(rng) if spec else 0):
            assert spec is not None
            size = spec.sizes[int(rng.integers(0, len(spec.sizes)))]
            images.append(render_image(size.width, size.height, int(rng.integers(0, 2**31 - 1)), spec.pattern))
        return OfflinePrompt(text=make_text(input_tokens, rng), images=images), max_tokens


def run_phases(
    engine: OfflineEngine, prompts: WorkloadPrompts, requests: int, gpu: GpuSampler,
    phases: Sequence[PhaseSpec] = PHASES, progress: Callable[[PhaseResult], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> list[PhaseResult]:
    """Every phase in order, `requests` requests each; the results of the recorded ones. The same-length text
    phases take their length from the last workload phase before them (its mean prompt tokens, images included).
    `clock` is the GPU sampler's (monotonic seconds): each phase's GPU figures are those of its engine time."""
    results: list[PhaseResult] = []
    workload_prompt_tokens: int | None = None
    for number, spec in enumerate(phases):
        queued = [_request(spec, number, index, prompts, engine, workload_prompt_tokens) for index in range(requests)]
        started = clock()
        for index, (prompt, max_tokens) in enumerate(queued):
            engine.add(f"{spec.name}-{index}", prompt, max_tokens)
        added = clock()
        finished = engine.run()
        ended = clock()
        if len(finished) != requests:
            raise RuntimeError(f"phase {spec.name!r}: {len(finished)} of {requests} requests finished")
        result = _result(spec, finished, add_s=added - started, engine_s=ended - added, gpu=gpu.summarize(added, ended))
        if spec.prompt == "workload":
            workload_prompt_tokens = round(result.prompt_tokens_mean)
        if spec.recorded:
            results.append(result)
            progress(result)
    return results


def _request(
    spec: PhaseSpec, phase: int, index: int, prompts: WorkloadPrompts, engine: OfflineEngine, prompt_tokens: int | None
) -> tuple[OfflinePrompt, int]:
    prompt, workload_max_tokens = prompts.request(phase, index)
    max_tokens = spec.max_tokens or workload_max_tokens
    if spec.prompt == "workload":
        return prompt, max_tokens
    if spec.prompt == "short_text":
        return OfflinePrompt(token_ids=engine.text_token_ids(SHORT_PROMPT_TOKENS, seed=phase * 1_000_003 + index)), max_tokens
    if prompt_tokens is None:
        raise ValueError(f"phase {spec.name!r} needs a workload phase before it (its prompt length)")
    return OfflinePrompt(token_ids=engine.text_token_ids(prompt_tokens, seed=phase * 1_000_003 + index)), max_tokens


def _result(
    spec: PhaseSpec, finished: list[Finished], *, add_s: float, engine_s: float, gpu: GpuSummary | None
) -> PhaseResult:
    count = len(finished)
    output_tokens = sum(f.output_tokens for f in finished)
    return PhaseResult(
        name=spec.name,
        description=spec.description,
        requests=count,
        add_s=round(add_s, 3),
        engine_s=round(engine_s, 3),
        req_per_s=round(count / engine_s, 3) if engine_s > 0 else 0.0,
        output_tokens_per_s=round(output_tokens / engine_s, 1) if engine_s > 0 else 0.0,
        prompt_tokens_mean=round(sum(f.prompt_tokens for f in finished) / count, 1),
        output_tokens_mean=round(output_tokens / count, 1),
        gpu=gpu,
    )
