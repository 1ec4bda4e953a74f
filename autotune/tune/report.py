"""Views of a study: the trials table (pandas, CSV), the live rich table and ETA,
and the default-vs-best comparison of a best.yaml."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autotune.config import TunedConfig
from autotune.observe.gpm import GPM_UNAVAILABLE, NVML_BUSY_LABEL, SM_ACTIVE_LABEL
from autotune.observe.names import (
    DRAM_BW_METRIC,
    GPM_AVAILABLE_METRIC,
    GPM_METRIC_PREFIXES,
    GPU_MEMORY_METRIC,
    METRIC_COLUMN_PREFIX,
    NVML_BUSY_METRIC,
    SM_ACTIVE_METRIC,
    TENSOR_ACTIVE_METRIC,
    metric_column,
)
from autotune.space import SearchSpace
from autotune.tune import attrs
from autotune.tune.start_phases import PHASES
from autotune.redact import redact_mapping, redact_url

log = logging.getLogger(__name__)

KEY_METRICS = ("throughput_rps", "goodput_rps", "slo_rate_rps", "output_tok_s", "ttft_ms_p99", "tpot_ms_p99", "e2el_ms_p99", "error_rate")
COMPARED_METRICS = (
    ("throughput_rps", "higher"),
    ("goodput_rps", "higher"),
    ("slo_rate_rps", "higher"),
    ("output_tok_s", "higher"),
    ("ttft_ms_p50", "lower"),
    ("ttft_ms_p99", "lower"),
    ("tpot_ms_p50", "lower"),
    ("tpot_ms_p99", "lower"),
    ("e2el_ms_p99", "lower"),
    ("error_rate", "lower"),
    (NVML_BUSY_METRIC, "higher"),
    (SM_ACTIVE_METRIC, "higher"),
    (TENSOR_ACTIVE_METRIC, "higher"),
    (DRAM_BW_METRIC, "higher"),
    (GPU_MEMORY_METRIC, "lower"),
)

METRIC_LABELS = {
    NVML_BUSY_METRIC: f"GPU {NVML_BUSY_LABEL} % (any kernel running)",
    SM_ACTIVE_METRIC: f"GPU {SM_ACTIVE_LABEL} %",
    TENSOR_ACTIVE_METRIC: "GPU tensor pipes active (GPM) %",
    DRAM_BW_METRIC: "GPU DRAM bandwidth (GPM) %",
}
"""How tables name a metric where its key alone would mislead: NVML's utilization is a busy flag, not SM activity."""

GPU_ACTIVITY_COLUMNS = {metric_column(NVML_BUSY_METRIC): f"{NVML_BUSY_LABEL} %", metric_column(SM_ACTIVE_METRIC): f"{SM_ACTIVE_LABEL} %"}
"""The trials table's GPU columns (`autotune trials`): both kinds, labeled."""


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def gpm_unavailable(name: str, metrics: Mapping[str, Any]) -> bool:
    """`name` is a GPM figure, and the trial with these metrics had GPU telemetry but no GPM."""
    return name.startswith(GPM_METRIC_PREFIXES) and metrics.get(GPM_AVAILABLE_METRIC) == 0.0


def gpu_activity_cell(row: Mapping[str, Any], column: str) -> str:
    """One GPU-activity cell of a trials row (`metric_*` keys): the figure, "GPM unavailable" for a GPM figure of a
    trial without GPM, else "-"."""
    value = row.get(column)
    if isinstance(value, (int, float)) and value == value:  # not NaN (pandas' missing)
        return f"{value:.1f}"
    metrics = {key.removeprefix(METRIC_COLUMN_PREFIX): v for key, v in row.items() if isinstance(key, str)}
    return GPM_UNAVAILABLE if gpm_unavailable(column.removeprefix(METRIC_COLUMN_PREFIX), metrics) else "-"


LOWER_BOUND_FLAGS = {"slo_rate_rps": "slo_rate_censored"}
"""A metric whose value is only a lower bound when its flag metric is 1 (shown as `≥ value`)."""


def _reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(attrs.FAIL_REASON) or trial.user_attrs.get(attrs.PRUNE_REASON)


def _duration_s(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, kind, params (param_*), every metric (metric_*), values, reason, timings."""
    rows: list[dict[str, Any]] = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name,
            "config_kind": trial.user_attrs.get(attrs.CONFIG_KIND),
            "engine": trial.user_attrs.get(attrs.ENGINE),
            "simulated": trial.user_attrs.get(attrs.SIMULATED),
            "duration_s": _duration_s(trial),
            "feasible": all(v <= 0 for v in trial.constraints.values()) if trial.constraints else None,
            "reason": _reason(trial),
            "duplicate_of": trial.user_attrs.get(attrs.DUPLICATE_OF),
            "repeat_of": trial.user_attrs.get(attrs.REPEAT_OF),
            "config_hash": trial.user_attrs.get(attrs.CONFIG_HASH),
            "mlflow_synced": trial.user_attrs.get(attrs.MLFLOW_SYNCED),
            "gpm_status": trial.user_attrs.get(attrs.GPM_STATUS),
            "compile_cache": trial.user_attrs.get(attrs.COMPILE_CACHE),
            "compile_group": trial.user_attrs.get(attrs.COMPILE_GROUP),
            "compile_key_from": trial.user_attrs.get(attrs.COMPILE_KEY_FROM),
            "warm_start": trial.user_attrs.get(attrs.WARM_START),
            "screening_value": (trial.user_attrs.get(attrs.SCREENING) or {}).get("value"),
        }
        for index, value in enumerate(trial.values or []):
            row[f"value_{index}"] = value
        row.update({f"param_{name}": value for name, value in trial.params.items()})
        row.update({metric_column(name): value for name, value in (trial.user_attrs.get(attrs.METRICS) or {}).items()})
        row.update({f"timing_{name}": value for name, value in (trial.user_attrs.get(attrs.TIMINGS) or {}).items()})
        phases = trial.user_attrs.get(attrs.START_PHASES) or {}
        row.update({f"start_{name}": phases.get(name) for name in (*PHASES, "total_s", "torch_compile_s", "cuda_graphs_s")
                    if phases.get(name) is not None})
        if phases.get("compile_keys"):
            row["compile_keys"] = ", ".join(phases["compile_keys"])
        rows.append(row)
    return pd.DataFrame(rows)


def trials_cell(value: Any, column: str) -> str:
    """A `trials_frame` value as `autotune trials` prints it: '-' when missing; whole numbers as integers (pandas
    holds an int column that has a gap as floats: 3 would read 3.00); other parameter values exactly; metrics to
    2 decimals."""
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, pd.NA
        return "-"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value.is_integer():
        return str(int(value))
    return str(float(value)) if column.startswith("param_") else f"{value:.2f}"


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    trials_frame(study).to_csv(path, index=False)
    return path


def eta_s(durations_s: Sequence[float], remaining: int | None, time_left_s: float | None = None) -> float | None:
    """Median trial time x trials left; with a timeout (`time_left_s` until no trial starts), at most that plus the
    one trial still running then."""
    if not durations_s or remaining is None:
        return None
    median = statistics.median(durations_s)
    by_count = median * max(remaining, 0)
    return by_count if time_left_s is None else min(by_count, max(time_left_s, 0.0) + median)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LiveTrialsTable:
    """The live view of `autotune tune`: one row per trial this run, and an ETA (median trial time)."""

    def __init__(
        self, space: SearchSpace, console: Console, *, planned: int | None, title: str, timeout_s: float | None = None
    ) -> None:
        self.space = space
        self.timeout_s = timeout_s
        self.console = console
        self.planned = planned
        self.title = title
        self._param_names = list(space.parameters)[:5]
        self._rows: list[FrozenTrial] = []
        self._running: tuple[int, str, dict[str, Any]] | None = None
        self._durations: list[float] = []
        self._live: Live | None = None
        self._started = time.monotonic()
        self._trial_started = self._started

    # TuneDisplay
    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self._running = (number, "starting", params)
        self._trial_started = time.monotonic()
        self._log_line(f"trial {number} started" + (f": {params}" if params else ""))
        self._refresh()

    def phase(self, number: int, name: str) -> None:
        if self._running is not None and self._running[0] == number:
            self._running = (number, name, self._running[2])
            self._log_line(f"trial {number}: {name} (+{time.monotonic() - self._trial_started:.0f} s)")
            self._refresh()

    def _log_line(self, text: str) -> None:
        """Without a terminal (a log file, CI), each step of the running trial is a line: a trial lasts minutes."""
        if self._live is None:
            self.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, markup=False)

    # Optuna callback
    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._rows.append(trial)
        self._running = None
        duration = _duration_s(trial)
        if duration is not None and trial.user_attrs.get(attrs.DUPLICATE_OF) is None:
            self._durations.append(duration)
        if self._live is None:
            self.console.print(self._line(trial), highlight=False)
        self._refresh()

    def __enter__(self) -> LiveTrialsTable:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self._live = None

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def remaining(self) -> int | None:
        return None if self.planned is None else self.planned - len(self._rows)

    def eta(self) -> float | None:
        left = None if self.timeout_s is None else self.timeout_s - (time.monotonic() - self._started)
        return eta_s(self._durations, self.remaining(), left)

    def render(self) -> Group:
        """The table (number, state, key params, throughput, goodput, p99 TTFT, duration) and the ETA line."""
        table = Table(title=self.title, expand=False)
        table.add_column("#", justify="right")
        table.add_column("state", overflow="fold")
        for name in self._param_names:
            table.add_column(name, justify="right", overflow="fold")
        slo_rate = self.space.objective.kind == "slo_rate"
        headers = ("thr rps", "good rps", *(("SLO rate rps",) if slo_rate else ()), "TTFT p99 ms", "duration")
        for header in headers:
            table.add_column(header, justify="right")
        for trial in self._rows[-30:]:
            metrics = trial.user_attrs.get(attrs.METRICS) or {}
            table.add_row(
                str(trial.number),
                _state_text(trial),
                *(_fmt(trial.params.get(name)) for name in self._param_names),
                _fmt(metrics.get("throughput_rps")),
                _fmt(metrics.get("goodput_rps")),
                *((_fmt(metrics.get("slo_rate_rps")),) if slo_rate else ()),
                _fmt(metrics.get("ttft_ms_p99"), 0),
                _fmt_duration(_duration_s(trial)) if _duration_s(trial) is not None else "-",
            )
        if self._running is not None:
            number, phase, params = self._running
            table.add_row(
                str(number), Text(phase + "...", style="cyan"), *(_fmt(params.get(name)) for name in self._param_names),
                *([""] * len(headers)),
            )
        eta = self.eta()
        footer = Text(
            f"{len(self._rows)} done" + (f" of {self.planned}" if self.planned is not None else "")
            + f", elapsed {_fmt_duration(time.monotonic() - self._started)}, ETA {_fmt_duration(eta)}"
            + " (median trial time x trials left" + (", bounded by --timeout)" if self.timeout_s else ")"),
            style="dim",
        )
        return Group(table, footer)

    def _line(self, trial: FrozenTrial) -> str:
        metrics = trial.user_attrs.get(attrs.METRICS) or {}
        eta = self.eta()
        reason = _reason(trial)
        return (
            f"trial {trial.number} {trial.state.name} params={redact_mapping(trial.params)} "
            f"throughput_rps={_fmt(metrics.get('throughput_rps'))} goodput_rps={_fmt(metrics.get('goodput_rps'))} "
            + (f"slo_rate_rps={_fmt(metrics.get('slo_rate_rps'))} " if "slo_rate_rps" in metrics else "")
            + f"ttft_ms_p99={_fmt(metrics.get('ttft_ms_p99'), 0)}"
            + (f" reason={reason}" if reason else "")
            + f" ETA {_fmt_duration(eta)}"
        )


def _state_text(trial: FrozenTrial) -> Text:
    if trial.state is TrialState.COMPLETE:
        feasible = all(v <= 0 for v in trial.constraints.values())
        label = "complete" if feasible else "infeasible"
        if trial.user_attrs.get(attrs.DUPLICATE_OF) is not None:
            label += f" (= #{trial.user_attrs[attrs.DUPLICATE_OF]})"
        return Text(label, style="green" if feasible else "yellow")
    reason = _reason(trial) or ""
    style = "red" if trial.state is TrialState.FAIL else "yellow"
    return Text(f"{trial.state.name.lower()}: {reason[:80]}", style=style)


def comparison_table(tuned: TunedConfig) -> Table:
    """vLLM defaults (trial 0) vs the best config: each figure and the ratio best/default."""
    provenance = tuned.provenance
    engine = "SIMULATED engine" if provenance.simulated else tuned.engine.value
    table = Table(title=f"study {provenance.study}: defaults vs best (trial {provenance.trial_number}, {engine})")
    table.add_column("metric")
    table.add_column("vLLM defaults", justify="right")
    table.add_column("best", justify="right")
    table.add_column("best / default", justify="right")
    for name, better in COMPARED_METRICS:
        best = provenance.metrics.get(name)
        base = provenance.baseline_metrics.get(name)
        base_text = _compared_text(name, base, provenance.baseline_metrics)
        best_text = _compared_text(name, best, provenance.metrics)
        if best is None and base is None and GPM_UNAVAILABLE not in (base_text, best_text):
            continue
        ratio = None if best is None or not base else best / base
        style = ""
        if ratio is not None and ratio != 1.0:
            improved = ratio > 1.0 if better == "higher" else ratio < 1.0
            style = "green" if improved else "red"
        if name in LOWER_BOUND_FLAGS:  # slo_rate: no rate above it failed, so it is at least this
            flag = LOWER_BOUND_FLAGS[name]
            base_text = ("≥ " if provenance.baseline_metrics.get(flag) == 1.0 else "") + base_text
            best_text = ("≥ " if provenance.metrics.get(flag) == 1.0 else "") + best_text
        table.add_row(metric_label(name), base_text, best_text, Text(f"{ratio:.2f}x" if ratio is not None else "-", style=style))
    return table


def _compared_text(name: str, value: float | None, metrics: Mapping[str, Any]) -> str:
    """A compared figure as printed; a GPM figure of a trial measured without GPM says so."""
    return GPM_UNAVAILABLE if value is None and gpm_unavailable(name, metrics) else _fmt(value)


def shown_tuned_fields(tuned: TunedConfig) -> dict[str, Any]:
    """The tuned fields as printed: env and extra_engine_args values whose key looks secret are masked
    (the same rule as /autotune/config), URL passwords too."""
    fields = tuned.engine_config.tuned_fields()
    for name in ("env", "extra_engine_args"):
        if isinstance(fields.get(name), dict):
            fields[name] = redact_mapping(fields[name])
    return {key: redact_url(value) if isinstance(value, str) else value for key, value in fields.items()}


def tuned_fields_table(tuned: TunedConfig) -> Table:
    table = Table(title="settings passed to vLLM (the rest: vLLM's defaults)")
    table.add_column("field")
    table.add_column("value")
    for key, value in shown_tuned_fields(tuned).items():
        table.add_row(key, str(value))
    return table
