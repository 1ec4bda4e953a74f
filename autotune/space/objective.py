"""What a study optimizes and which trials are feasible: the objective, metric constraints and metric names.

`MetricName` lists the flat figures of a benchmark summary that a constraint may bound (named as
`autotune.tune.metrics.summary_metrics` names them: unit and statistic in the name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from autotune.base_models import ClosedModel

MetricName = Literal[
    "completed",
    "failed",
    "duration_s",
    "throughput_rps",
    "goodput_rps",
    "slo_rate_rps",
    "slo_rate_censored",
    "slo_rate_failed_rps",
    "output_tok_s",
    "input_tok_s",
    "error_rate",
    "client_saturated",
    "cache_flattered",
    "cache_prefix_hit_rate",
    "cache_mm_hit_rate",
    "client_cpu_util_max",
    "client_loop_lag_p99_ms",
    "gpu_util_mean",
    "gpu_sm_active_mean",
    "gpu_tensor_active_mean",
    "gpu_dram_bw_mean",
    "gpu_mem_used_max_mib",
    "gpu_power_mean_w",
    "ttft_ms_mean",
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p95",
    "ttft_ms_p99",
    "tpot_ms_mean",
    "tpot_ms_p50",
    "tpot_ms_p90",
    "tpot_ms_p95",
    "tpot_ms_p99",
    "itl_ms_mean",
    "itl_ms_p99",
    "e2el_ms_mean",
    "e2el_ms_p50",
    "e2el_ms_p90",
    "e2el_ms_p95",
    "e2el_ms_p99",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)


class Objective(ClosedModel):
    """goodput: maximize goodput_rps under the SLO; slo_rate: maximize the highest request rate sustained
    within the SLO's p99s (needs load mode slo_rate); throughput: maximize throughput_rps;
    pareto: maximize throughput_rps and minimize a p99 latency (two objectives)."""

    kind: Literal["goodput", "slo_rate", "throughput", "pareto"] = "goodput"
    latency_metric: Literal["e2el_ms_p99", "ttft_ms_p99"] = Field(
        default="e2el_ms_p99", description="The latency minimized by 'pareto'"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    def metric_names(self) -> list[str]:
        if self.kind == "goodput":
            return ["goodput_rps"]
        if self.kind == "slo_rate":
            return ["slo_rate_rps"]
        if self.kind == "throughput":
            return ["throughput_rps"]
        return ["throughput_rps", self.latency_metric]

    def directions(self) -> list[Literal["maximize", "minimize"]]:
        return ["maximize"] if self.kind != "pareto" else ["maximize", "minimize"]


class MetricConstraint(ClosedModel):
    """A trial is feasible when `min <= metric <= max` (TPE/NSGA-II constraints: value <= 0 is feasible)."""

    metric: MetricName
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _needs_a_bound(self) -> MetricConstraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs max or min")
        return self

    @property
    def key(self) -> str:
        return self.metric

    def violation(self, figures: Mapping[str, float | None]) -> float:
        """<= 0 when met; a positive amount otherwise (1.0 when the metric was not measured)."""
        value = figures.get(self.metric)
        if value is None:
            return 1.0
        excess = [float(value) - self.max] if self.max is not None else []
        if self.min is not None:
            excess.append(self.min - float(value))
        return max(excess)


def default_constraints() -> list[MetricConstraint]:
    return [
        MetricConstraint(metric="error_rate", max=0.01),
        MetricConstraint(metric="client_saturated", max=0.0),
    ]
