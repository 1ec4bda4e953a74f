"""The limit table's record: one result per offline phase, the encoder rate derived from two of them, the table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from autotune.base_models import ClosedModel
from autotune.observe.gpu import GpuSummary

PromptKind = Literal["workload", "same_length_text", "short_text"]


class PhaseSpec(ClosedModel):
    """One offline measurement: what each request carries and how many tokens it generates."""

    name: str
    description: str
    prompt: PromptKind = Field(description="workload: the workload's image and text; same_length_text: text token ids "
                               "as many as the workload's prompt (image tokens included), no image; short_text: a few")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens generated (ignore_eos); None: the workload's")
    recorded: bool = True  # False: a warm-up (Triton kernels compile at first use), left out of the table


class PhaseResult(ClosedModel):
    name: str
    description: str
    requests: int
    add_s: float = Field(description="Seconds to add every request: the engine's input processing (tokenizer, image "
                         "processor) on this process, before the engine runs")
    engine_s: float = Field(description="Seconds from the first engine step until every request finished (all queued)")
    req_per_s: float
    output_tokens_per_s: float
    prompt_tokens_mean: float
    output_tokens_mean: float
    gpu: GpuSummary | None = None


class LimitRecord(ClosedModel):
    kind: Literal["autotune-limits"] = "autotune-limits"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    config: str = Field(description="The tuned config file measured")
    model: str
    engine_args: list[str] = Field(description="The config's vLLM arguments that reached the offline engine")
    serving_only_args: list[str] = Field(default_factory=list, description="Arguments of `vllm serve` alone (API "
                                         "servers, served name): no offline engine has them")
    batch_limits: dict[str, int] = Field(default_factory=dict, description="The scheduler's limits the offline "
                                         "engine ran with, defaults resolved (max_num_seqs, max_num_batched_tokens)")
    workload: str
    requests_per_phase: int
    phases: list[PhaseResult]
    encoder_images_per_s: float | None = Field(default=None, description="Derived: one image's share of a request "
                                               "from the workload's prefill against same-length text's prefill")
    gpu_name: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def encoder_images_per_s(with_images: PhaseResult, same_length_text: PhaseResult) -> float | None:
    """Images per second the vision encoder (and the image's placement) adds up to: the time a request of the
    workload takes over one of text alone with as many prompt tokens, both prefill only and all queued. None when the
    text took as long (no measurable difference)."""
    extra_s = with_images.engine_s / with_images.requests - same_length_text.engine_s / same_length_text.requests
    return round(1.0 / extra_s, 2) if extra_s > 0 else None


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def limits_table(record: LimitRecord) -> str:
    """Markdown: one row per recorded phase (req/s, output tok/s, prompt tokens, seconds, GPU activity by GPM and
    NVML's busy flag), then the derived encoder rate."""
    lines = [
        "| phase | requests | req/s | output tok/s | prompt tokens | engine s | input processing s | SM active % | "
        "tensor active % | DRAM bw % | NVML busy % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in record.phases:
        gpu = phase.gpu
        lines.append(
            f"| {phase.name}: {phase.description} | {phase.requests} | {phase.req_per_s:.2f} | "
            f"{phase.output_tokens_per_s:.0f} | {phase.prompt_tokens_mean:.0f} | {phase.engine_s:.1f} | {phase.add_s:.1f} | "
            f"{_pct(gpu and gpu.sm_active_mean)} | {_pct(gpu and gpu.tensor_active_mean)} | {_pct(gpu and gpu.dram_bw_mean)} | "
            f"{_pct(gpu and gpu.util_mean)} |"
        )
    encoder = "not measurable" if record.encoder_images_per_s is None else f"{record.encoder_images_per_s:.1f} images/s"
    lines += ["", f"Vision encoder (derived from the two prefill phases): {encoder}."]
    if record.batch_limits:
        limits = ", ".join(f"{name} {value:,}" for name, value in record.batch_limits.items())
        lines += ["", f"The offline engine ran with {limits}."]
    return "\n".join(lines) + "\n"
