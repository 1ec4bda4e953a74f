"""The offline phases of the limit table and their runner, over any `OfflineEngine` (vLLM's is
`autotune.limits.vllm_offline.VllmOfflineEngine`; tests use a stand-in).

Every phase queues all its requests first (the engine's input processing, timed apart as `add_s`), then runs the
engine until the last one finishes (`engine_s`): the engine's rate with everything waiting, no HTTP, no client, no
JSON, no detokenization. The workload's phases send the load generator's own requests (its renderer's bodies, their
images decoded beforehand), each phase its own block of them: no request reuses another's prefix- or
multimodal-cache entries. A warm-up phase comes first (Triton kernels compile on first use) and is not
recorded.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from autotune.bench.prepare import make_renderer
from autotune.bench.workload import SyntheticSpec, Workload
from autotune.errors import ConfigError
from autotune.limits.record import PhaseResult, PhaseSpec
from autotune.observe.gpu import GpuSampler, GpuSummary

SHORT_PROMPT_TOKENS = 16
PHASE_BLOCK = 1_000_000  # request indexes of one phase (`autotune limits --requests` is at most 100,000)

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
    """A chat, `messages` as a served request sends them with each image part as `{"type": "image"}` and its decoded
    image in `images`, in order (the engine applies the chat template); or prompt `token_ids` as they are."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    token_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    prompt_tokens: int
    output_tokens: int


class OfflineEngine(Protocol):
    args: list[str]  # the engine's arguments as the config translated them
    serving_only_args: list[str]  # those among them that only `vllm serve` takes (not applied offline)
    batch_limits: dict[str, int]  # the scheduler's limits the engine runs with (max_num_seqs, max_num_batched_tokens)

    def add(self, request_id: str, prompt: OfflinePrompt, max_tokens: int) -> None:
        """Queue one request (its input processing happens here), generating exactly `max_tokens` (ignore EOS)."""

    def run(self) -> list[Finished]:
        """Step the engine until no request is left; the requests that finished."""

    def text_token_ids(self, count: int, seed: int) -> list[int]:
        """`count` ordinary text token ids (no special token), different for each seed."""


class WorkloadPrompts:
    """A synthetic workload's requests as offline prompts: the bodies the load generator sends (its renderer), request
    `index` of phase `phase` being the workload's request `phase * PHASE_BLOCK + index`."""

    def __init__(self, workload: Workload) -> None:
        if not isinstance(workload.synthetic, SyntheticSpec):
            raise ConfigError(f"workload {workload.name!r}: the limit table needs a synthetic workload (its requests "
                              "are drawn afresh for every phase); a dataset's lines would repeat across phases")
        self.workload = workload
        self._renderer = make_renderer(workload)

    def request(self, phase: int, index: int) -> tuple[OfflinePrompt, int]:
        """The prompt and output length of request `index` of phase `phase`."""
        prepared = self._renderer.render(phase * PHASE_BLOCK + index, "offline")
        return offline_prompt(json.loads(prepared.body)["messages"]), prepared.max_tokens


def offline_prompt(messages: list[dict[str, Any]]) -> OfflinePrompt:
    """A served request's messages with their images decoded (each `image_url` part becomes `{"type": "image"}`)."""
    images: list[Image.Image] = []
    converted: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    images.append(_decoded(part["image_url"]["url"]))
                    part = {"type": "image"}
                parts.append(part)
            message = {**message, "content": parts}
        converted.append(message)
    return OfflinePrompt(messages=converted, images=images)


def _decoded(url: str) -> Image.Image:
    """The image of a data URL our renderer wrote (trusted input: not the server's checked decoder)."""
    image = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    image.load()  # decoded here, before the phase is timed
    return image


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
