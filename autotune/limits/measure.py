"""`autotune limits` without its command line: a tuned config's offline phases into a `LimitRecord`."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from autotune import GPU_INSTALL_HINT
from autotune.bench.environment import versions
from autotune.bench.workload import resolve_workload
from autotune.config import EngineConfig, EngineKind, load_tuned_config
from autotune.errors import AutotuneError, ConfigError
from autotune.limits.phases import OfflineEngine, WorkloadPrompts, run_phases
from autotune.limits.record import LimitRecord, PhaseResult, encoder_images_per_s
from autotune.observe.gpu import GpuSampler, first_visible_gpu, make_gpu_sampler

EngineFactory = Callable[[EngineConfig], OfflineEngine]


def vllm_engine(engine: EngineConfig) -> OfflineEngine:
    if importlib.util.find_spec("vllm") is None:
        raise AutotuneError(f"autotune limits runs vLLM's offline engine: vLLM is not installed ({GPU_INSTALL_HINT})")
    from autotune.limits.vllm_offline import VllmOfflineEngine

    return VllmOfflineEngine(engine)


def measure_limits(
    config: Path, *, requests: int, workload: str = "vlm-chat", model: str | None = None,
    engine_factory: EngineFactory = vllm_engine, gpu: GpuSampler | None = None,
    progress: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.monotonic,
) -> LimitRecord:
    """Start the config's engine offline, run every phase with `requests` requests, and record them."""
    tuned = load_tuned_config(config)
    if tuned.engine is not EngineKind.VLLM:
        raise ConfigError(f"{config}: engine {tuned.engine.value}: the limit table measures vLLM's offline engine")
    engine_config = tuned.engine_config if model is None else tuned.engine_config.model_copy(update={"model": model})
    prompts = WorkloadPrompts(resolve_workload(workload))
    started = clock()
    engine = engine_factory(engine_config)
    progress(f"offline engine of {config} ({engine_config.model}) started in {clock() - started:.0f} s")
    sampler = gpu or make_gpu_sampler()
    sampler.start()
    try:
        results = run_phases(engine, prompts, requests, sampler, progress=lambda r: progress(_line(r)), clock=clock)
    finally:
        sampler.stop()
    by_name = {r.name: r for r in results}
    notes = ["add_s: the engine's own input processing (chat template, tokenizer, image processor) for every request "
             "of the phase, on this process's one thread, before the engine ran; JPEG decoding excluded (images are "
             "handed over decoded)"]
    if engine_config.engines_per_gpu > 1:
        notes.append(f"the config serves {engine_config.engines_per_gpu} engine cores on each GPU; offline, one engine "
                     "core had the GPU to itself")
    facts = first_visible_gpu()
    return LimitRecord(
        config=str(config),
        model=engine_config.model,
        engine_args=list(engine.args),
        serving_only_args=list(engine.serving_only_args),
        batch_limits=dict(engine.batch_limits),
        workload=prompts.workload.name,
        requests_per_phase=requests,
        phases=results,
        encoder_images_per_s=(encoder_images_per_s(by_name["prefill"], by_name["text prefill"])
                              if {"prefill", "text prefill"} <= by_name.keys() else None),
        gpu_name=facts.name if facts else None,
        versions=versions(sampler.driver_version()),
        notes=notes,
    )


def _line(result: PhaseResult) -> str:
    sm = result.gpu.sm_active_mean if result.gpu else None
    return (f"{result.name}: {result.req_per_s:.2f} req/s, {result.output_tokens_per_s:.0f} output tok/s over "
            f"{result.engine_s:.1f} s (input processing {result.add_s:.1f} s)"
            + (f", SM active {sm:.0f}%" if sm is not None else ""))

