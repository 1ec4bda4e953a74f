"""The report's figures as PNG bytes (matplotlib Agg; Optuna's own plots for history, Pareto, importances)."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict

from autotune.observe.gpm import NVML_BUSY_LABEL, SM_ACTIVE_LABEL, gpm_shown
from autotune.report.data import ReportData, TrialRun
from autotune.tune import attrs

log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 2


class Figure(BaseModel):
    """One section's figure: the PNG, or why there is none."""

    model_config = ConfigDict(extra="forbid")

    name: str  # file stem
    title: str
    png: bytes | None = None
    note: str | None = None


def _png(draw: Callable[[], Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drawn = draw()
    figure = drawn if hasattr(drawn, "savefig") else (drawn.figure if hasattr(drawn, "figure") else drawn.flat[0].figure)
    try:
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _safe(name: str, title: str, draw: Callable[[], Any]) -> Figure:
    try:
        return Figure(name=name, title=title, png=_png(draw))
    except Exception as exc:  # noqa: BLE001 - a figure that cannot be drawn becomes a note, the report goes on
        import matplotlib.pyplot as plt

        plt.close("all")
        log.info("figure %s skipped: %s", name, exc)
        return Figure(name=name, title=title, note=f"not drawn: {exc}")


def history_figures(study: optuna.Study, names: Sequence[str]) -> list[Figure]:
    from optuna.visualization import matplotlib as optuna_plots

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return [Figure(name="optimization_history", title="Optimization history", note="no completed trial")]
    if len(names) == 1:
        return [_safe("optimization_history", "Optimization history", lambda: optuna_plots.plot_optimization_history(
            study, target_name=names[0]))]
    return [
        _safe(f"optimization_history_{name}", f"Optimization history: {name}",
              lambda i=index, n=name: optuna_plots.plot_optimization_history(study, target=lambda t: t.values[i], target_name=n))
        for index, name in enumerate(names)
    ]


def pareto_figure(study: optuna.Study, names: Sequence[str]) -> Figure:
    from optuna.visualization import matplotlib as optuna_plots

    if len(names) < 2:
        return Figure(name="pareto_front", title="Pareto front", note=f"n/a: one objective ({names[0]})")
    return _safe("pareto_front", "Pareto front", lambda: optuna_plots.plot_pareto_front(study, target_names=list(names)))


def importance_figure(study: optuna.Study, names: Sequence[str]) -> Figure:
    from optuna.visualization import matplotlib as optuna_plots

    sampled = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.params and t.user_attrs.get(attrs.CONFIG_KIND) != attrs.VLLM_DEFAULTS
    ]
    if len(sampled) < MIN_TRIALS_FOR_IMPORTANCE:
        return Figure(name="param_importances", title="Parameter importances",
                      note=f"skipped: {len(sampled)} complete sampled trial(s), at least {MIN_TRIALS_FOR_IMPORTANCE} needed")
    target = (lambda t: t.values[0]) if len(names) > 1 else None
    return _safe("param_importances", f"Parameter importances ({names[0]})",
                 lambda: optuna_plots.plot_param_importances(study, target=target, target_name=names[0]))


def _runs(data: ReportData) -> list[TrialRun]:
    return [run for run in (data.default, data.best) if run is not None]


def _label(run: TrialRun) -> str:
    return f"{run.label} (trial {run.number})"


def latency_cdf_figure(data: ReportData) -> Figure:
    runs = [run for run in _runs(data) if run.ttft_ms or run.e2el_ms]
    if not runs:
        return Figure(name="latency_cdf", title="Latency CDFs", note="no per-request records (result.json) found")

    def draw() -> Any:
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for ax, field, title in zip(axes, ("ttft_ms", "tpot_ms", "e2el_ms"), ("TTFT", "TPOT", "E2E latency"), strict=True):
            for run in runs:
                values = np.sort(np.asarray(getattr(run, field), dtype=float))
                if values.size:
                    ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=_label(run))
            ax.set_title(f"{title} CDF")
            ax.set_xlabel(f"{field.split('_')[0]} (ms)")
            ax.set_ylabel("fraction of requests")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        return fig

    return _safe("latency_cdf", "Latency CDFs (successful measured requests)", draw)


def gpu_figure(data: ReportData) -> Figure:
    runs = [run for run in _runs(data) if any("util_pct" in s for s in run.gpu_timeseries)]
    if not runs:
        note = "no GPU samples (simulated engine or no NVML)" if data.simulated else "no GPU samples in result.json"
        return Figure(name="gpu_utilization", title="GPU activity over time", note=note)
    with_gpm = any("sm_active_pct" in s for run in runs for s in run.gpu_timeseries)

    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(14, 4))
        for run in runs:
            devices = sorted({int(s.get("device", 0)) for s in run.gpu_timeseries})
            for device in devices:
                samples = [s for s in run.gpu_timeseries if int(s.get("device", 0)) == device]
                suffix = f" GPU {device}" if len(devices) > 1 else ""
                times = [s["t_s"] for s in samples]
                busy = axes[0].plot(times, [s.get("util_pct") for s in samples], label=f"{_label(run)}{suffix}: {NVML_BUSY_LABEL}")
                gpm = [s for s in samples if "sm_active_pct" in s]  # GPM intervals end on some samples only
                if gpm:
                    axes[0].plot([s["t_s"] for s in gpm], [s["sm_active_pct"] for s in gpm], linestyle="--",
                                 color=busy[0].get_color(), label=f"{_label(run)}{suffix}: {SM_ACTIVE_LABEL}")
                axes[1].plot(times, [s.get("mem_used_mib") for s in samples], label=_label(run) + suffix)
        axes[0].set_ylabel("activity (%)")
        axes[0].set_ylim(0, 105)
        axes[1].set_ylabel("memory used (MiB)")
        for ax in axes:
            ax.set_xlabel("time since measurement start (s)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        return fig

    title = f"GPU activity and memory over time: {NVML_BUSY_LABEL} vs {SM_ACTIVE_LABEL}"
    if not with_gpm:
        title = f"GPU activity and memory over time: {NVML_BUSY_LABEL} only ({gpm_shown(runs[0].gpm_status)})"
    return _safe("gpu_utilization", title, draw)


def all_figures(study: optuna.Study, data: ReportData) -> list[Figure]:
    return [
        pareto_figure(study, data.objective_names),
        *history_figures(study, data.objective_names),
        importance_figure(study, data.objective_names),
        latency_cdf_figure(data),
        gpu_figure(data),
    ]
