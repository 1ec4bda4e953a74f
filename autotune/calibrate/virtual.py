"""Predict a closed-loop benchmark with the simulated engine's model in virtual time.

The requests mirror what `autotune bench` sends for a synthetic workload (same seeded draws of text
length, output length, image count and size; distinct images unless `pool_size`; a shared system prompt
when `shared_prefix_fraction`), sized as the simulated server counts them. A `Prediction` is simulator
output under a profile: never a measurement (`simulated` is always True).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from autotune.bench.schemas import SLO
from autotune.bench.workload import Workload
from autotune.config import EngineConfig
from serving.engines.base import GenerationRequest, ImageInput, RequestRejected
from serving.engines.cost_model import CostModel
from serving.engines.profile import SimulatorProfile
from serving.engines.virtual_run import VirtualRunResult, simulate_closed_loop
from serving.tokens import ASSISTANT_PROMPT_TOKENS, IMAGE_WRAPPER_TOKENS, MESSAGE_OVERHEAD_TOKENS, VisionGrid, image_tokens

_SHARED_PREFIX_STREAM = 1_000_000_007  # as autotune.bench.prepare: the shared prompt is one text for all requests


class Prediction(BaseModel):
    """The simulator's figures for one config at one load (labeled: a prediction, not a measurement)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    simulated: Literal[True] = True
    feasible: bool
    reason: str | None = None
    throughput_rps: float = 0.0
    ttft_ms_p50: float | None = None
    tpot_ms_p50: float | None = None
    goodput_rps: float | None = None  # when an SLO was given: throughput x share of requests meeting it
    profile: str = ""


def request_factory(workload: Workload, grid: VisionGrid | None = None) -> Callable[[int], GenerationRequest]:
    """Request `index` of a synthetic workload, as the simulated server would size it."""
    spec = workload.synthetic
    if spec is None:
        raise ValueError(f"workload {workload.name!r}: only synthetic workloads can be simulated")
    grid = grid or VisionGrid()

    def make(index: int) -> GenerationRequest:
        rng = np.random.default_rng(np.random.SeedSequence([abs(workload.seed), abs(index)]))
        input_tokens = max(1, spec.input_tokens.sample(rng))
        max_tokens = max(1, spec.output_tokens.sample(rng))
        shared = round(input_tokens * spec.shared_prefix_fraction)
        images: list[ImageInput] = []
        count = spec.images.count.sample(rng) if spec.images else 0
        for slot in range(count):
            assert spec.images is not None
            size = spec.images.sizes[int(rng.integers(0, len(spec.images.sizes)))]
            serial = index * 64 + slot
            if spec.images.pool_size is not None:
                serial %= spec.images.pool_size
            tokens = image_tokens(size.height, size.width, grid) + IMAGE_WRAPPER_TOKENS
            images.append(ImageInput(size.width, size.height, tokens, f"{workload.seed}:{serial}:{size.width}x{size.height}"))
        messages = 2 if shared else 1
        prompt = ASSISTANT_PROMPT_TOKENS + messages * MESSAGE_OVERHEAD_TOKENS + input_tokens + sum(i.tokens for i in images)
        return GenerationRequest(
            request_id=f"r{index}",
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            images=tuple(images),
            ignore_eos=workload.ignore_eos,
            seed=index,
            prefix_hash=f"system-{workload.seed}-{shared}" if shared else None,
            prefix_tokens=(MESSAGE_OVERHEAD_TOKENS + shared + ASSISTANT_PROMPT_TOKENS) if shared else 0,
        )

    return make


def predict(
    profile: SimulatorProfile,
    engine: EngineConfig,
    workload: Workload,
    *,
    concurrency: int,
    num_requests: int,
    slo: SLO | None = None,
) -> Prediction:
    """Simulate `num_requests` at closed-loop `concurrency`; an engine that could not start or serve is infeasible."""
    cost = CostModel(profile, engine)
    settings, memory = cost.settings, cost.memory
    if memory.kv_capacity_tokens < settings.max_model_len:
        return Prediction(
            feasible=False, profile=profile.name,
            reason=f"KV cache holds {memory.kv_capacity_tokens} tokens < max_model_len {settings.max_model_len}",
        )
    try:
        run = simulate_closed_loop(
            cost, request_factory(workload, VisionGrid.from_model_dir(engine.model)),
            concurrency=concurrency, num_requests=num_requests,
        )
    except RequestRejected as exc:
        return Prediction(feasible=False, reason=str(exc), profile=profile.name)
    if run.completed == 0:
        return Prediction(feasible=False, reason="no request completed", profile=profile.name)
    tpot = run.tpot_p50_s
    return Prediction(
        feasible=True,
        throughput_rps=run.throughput_rps,
        ttft_ms_p50=run.ttft_p50_s * 1e3,
        tpot_ms_p50=None if tpot is None else tpot * 1e3,
        goodput_rps=None if slo is None else run.throughput_rps * good_share(run, slo),
        profile=profile.name,
    )


def good_share(run: VirtualRunResult, slo: SLO) -> float:
    """Share of simulated requests meeting the SLO's TTFT and TPOT (E2E latency is not kept per request)."""
    if not run.request_ttft_s:
        return 0.0
    good = 0
    for ttft_s, tpot_s in zip(run.request_ttft_s, run.request_tpot_s, strict=True):
        if slo.ttft_ms is not None and ttft_s * 1e3 > slo.ttft_ms:
            continue
        if slo.tpot_ms is not None and tpot_s * 1e3 > slo.tpot_ms:  # NaN (one token): no TPOT, as vllm bench
            continue
        good += 1
    return good / len(run.request_ttft_s)


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    """|predicted - measured| / measured; None when either is missing (an infeasible prediction: inf)."""
    if measured is None or measured <= 0:
        return None
    if predicted is None or not math.isfinite(predicted):
        return math.inf
    return abs(predicted - measured) / measured
