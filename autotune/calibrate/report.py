"""The calibration report: each point measured vs predicted (base profile, fitted, held out), and medians.

Predicted figures are simulator output under a profile, labeled as predictions; measured figures are the
GPU results. Written as Markdown or JSON; `rich_table` is the terminal view.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from autotune.calibrate.dataset import CalibrationDataset, CalibrationPoint, SkippedResult
from autotune.calibrate.fit import FitResult, HoldOut, PointFit
from autotune.errors import ConfigError
from serving.engines.profile import MedianErrors

PREDICTION_NOTE = "predicted_* figures are simulator predictions (virtual time), not measurements"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportRow(_Model):
    source: str
    config: str = Field(description="Settings that differ from vLLM's defaults")
    concurrency: int
    measured_throughput_rps: float
    predicted_throughput_rps_before: float | None
    predicted_throughput_rps_after: float | None
    throughput_error_pct_before: float | None
    throughput_error_pct_after: float | None
    throughput_error_pct_held_out: float | None = None
    measured_ttft_ms_p50: float | None
    predicted_ttft_ms_p50_before: float | None
    predicted_ttft_ms_p50_after: float | None
    ttft_p50_error_pct_before: float | None
    ttft_p50_error_pct_after: float | None
    ttft_p50_error_pct_held_out: float | None = None


class CalibrationReport(_Model):
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    note: str = PREDICTION_NOTE
    folders: list[str]
    base_profile: str
    points: int
    skipped: list[SkippedResult]
    fitted_parameters: dict[str, float]
    base_parameters: dict[str, float]
    evaluations: int
    median_abs_error_before: MedianErrors
    median_abs_error_in_sample: MedianErrors
    median_abs_error_held_out: MedianErrors | None
    held_out_method: str
    rows: list[ReportRow]


def config_summary(point: CalibrationPoint) -> str:
    fields = point.engine_config.tuned_fields()
    for boring in ("dtype", "load_format", "max_model_len", "limit_mm_per_prompt", "extra_engine_args", "env"):
        fields.pop(boring, None)
    return ", ".join(f"{k}={v}" for k, v in sorted(fields.items())) or "(vLLM defaults)"


def _pct(error: float | None) -> float | None:
    return None if error is None else 100 * error


def _figure(fit: PointFit, name: str) -> float | None:
    return getattr(fit.predicted, name) if fit.predicted.feasible else None


def build_report(
    dataset: CalibrationDataset, *, base_profile: str, base_parameters: dict[str, float], fit: FitResult, hold_out: HoldOut
) -> CalibrationReport:
    held = hold_out.points or [None] * len(dataset.points)
    rows = [
        ReportRow(
            source=point.source,
            config=config_summary(point),
            concurrency=point.concurrency,
            measured_throughput_rps=point.throughput_rps,
            predicted_throughput_rps_before=_figure(before, "throughput_rps"),
            predicted_throughput_rps_after=_figure(after, "throughput_rps"),
            throughput_error_pct_before=_pct(before.throughput_error),
            throughput_error_pct_after=_pct(after.throughput_error),
            throughput_error_pct_held_out=None if out is None else _pct(out.throughput_error),
            measured_ttft_ms_p50=point.ttft_ms_p50,
            predicted_ttft_ms_p50_before=_figure(before, "ttft_ms_p50"),
            predicted_ttft_ms_p50_after=_figure(after, "ttft_ms_p50"),
            ttft_p50_error_pct_before=_pct(before.ttft_p50_error),
            ttft_p50_error_pct_after=_pct(after.ttft_p50_error),
            ttft_p50_error_pct_held_out=None if out is None else _pct(out.ttft_p50_error),
        )
        for point, before, after, out in zip(dataset.points, fit.before_points, fit.after_points, held, strict=True)
    ]
    return CalibrationReport(
        folders=dataset.folders,
        base_profile=base_profile,
        points=len(dataset.points),
        skipped=dataset.skipped,
        fitted_parameters=fit.parameters,
        base_parameters=base_parameters,
        evaluations=fit.evaluations,
        median_abs_error_before=fit.before,
        median_abs_error_in_sample=fit.after,
        median_abs_error_held_out=hold_out.errors,
        held_out_method=hold_out.method,
        rows=rows,
    )


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(errors: MedianErrors | None) -> str:
    if errors is None:
        return "-"
    return f"throughput {_f(errors.throughput_pct)}%, TTFT p50 {_f(errors.ttft_p50_pct)}%"


def to_markdown(report: CalibrationReport) -> str:
    lines = [
        f"# Simulator calibration ({report.created_at:%Y-%m-%d %H:%M} UTC)",
        "",
        f"_{report.note}._",
        "",
        f"- folders: {', '.join(report.folders)}",
        f"- base profile: {report.base_profile}; points: {report.points}; skipped: {len(report.skipped)}"
        f"; simulator evaluations: {report.evaluations}",
        f"- median abs error, base profile: {_errors(report.median_abs_error_before)}",
        f"- median abs error, fitted (in-sample): {_errors(report.median_abs_error_in_sample)}",
        f"- median abs error, fitted (held out, {report.held_out_method}): {_errors(report.median_abs_error_held_out)}",
        "",
        "| parameter | base | fitted |",
        "|---|---|---|",
        *(f"| {name} | {report.base_parameters.get(name, float('nan')):.4g} | {value:.4g} |" for name, value in report.fitted_parameters.items()),
        "",
        "| point | config | conc. | req/s measured | predicted before | after | err % before / after / held out "
        "| TTFT p50 ms measured | predicted before | after | err % before / after / held out |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        lines.append(
            f"| {row.source} | {row.config} | {row.concurrency} | {_f(row.measured_throughput_rps)} "
            f"| {_f(row.predicted_throughput_rps_before)} | {_f(row.predicted_throughput_rps_after)} "
            f"| {_f(row.throughput_error_pct_before)} / {_f(row.throughput_error_pct_after)} / {_f(row.throughput_error_pct_held_out)} "
            f"| {_f(row.measured_ttft_ms_p50, 0)} | {_f(row.predicted_ttft_ms_p50_before, 0)} | {_f(row.predicted_ttft_ms_p50_after, 0)} "
            f"| {_f(row.ttft_p50_error_pct_before)} / {_f(row.ttft_p50_error_pct_after)} / {_f(row.ttft_p50_error_pct_held_out)} |"
        )
    if report.skipped:
        lines += ["", "Skipped results:", ""]
        lines += [f"- {skip.source}: {skip.reason}{': ' + skip.detail if skip.detail else ''}" for skip in report.skipped]
    return "\n".join(lines) + "\n"


REPORT_SUFFIXES = (".md", ".json")


def check_report_path(path: Path) -> None:
    if path.suffix not in REPORT_SUFFIXES:
        raise ConfigError(f"--report {path}: the suffix must be .md or .json (got {path.suffix or 'none'!r})")


def write_report(report: CalibrationReport, path: Path) -> Path:
    """Markdown (.md) or JSON (.json), chosen by the suffix."""
    check_report_path(path)
    if path.suffix == ".md":
        text = to_markdown(report)
    else:
        text = json.dumps(report.model_dump(mode="json"), indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rich_table(report: CalibrationReport) -> Table:
    table = Table(title=f"calibration: {report.points} GPU points (predicted = simulator, not measured)")
    for column in ("point", "config", "conc.", "req/s", "pred. before", "pred. after", "err %",
                   "TTFT p50", "pred. before", "pred. after", "err %"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        table.add_row(
            Path(row.source).parent.name + "/" + Path(row.source).name, row.config, str(row.concurrency),
            _f(row.measured_throughput_rps), _f(row.predicted_throughput_rps_before), _f(row.predicted_throughput_rps_after),
            f"{_f(row.throughput_error_pct_before, 0)} -> {_f(row.throughput_error_pct_after, 0)}",
            _f(row.measured_ttft_ms_p50, 0), _f(row.predicted_ttft_ms_p50_before, 0), _f(row.predicted_ttft_ms_p50_after, 0),
            f"{_f(row.ttft_p50_error_pct_before, 0)} -> {_f(row.ttft_p50_error_pct_after, 0)}",
        )
    return table
