"""Markdown tables and matplotlib figures shared by the run summaries (`autotune summarize run|reference`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from autotune.report.runs.folder import Json


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])



def stacked_bars(
    labels: Any, layers: dict[str, Any], target: Path, *, figsize: tuple[float, float], ylabel: str, title: str,
    xlabel: str | None = None, tick_size: int | None = None, legend: dict[str, Any] | None = None,
) -> None:
    """One bar per label, `layers` (name -> values) stacked bottom-up in their order, saved to `target`."""
    fig, ax = plt.subplots(figsize=figsize)
    bottom: Any = 0
    for name, values in layers.items():
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = bottom + values
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if tick_size:
        ax.tick_params(axis="x", labelsize=tick_size)
    ax.legend(**(legend or {}))
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, target)


def save_figure(fig: Any, target: Path) -> None:
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def pareto_mask(frame: pd.DataFrame, maximize: str, minimize: str) -> pd.Series:
    """Rows no other row beats on both: higher `maximize` and lower `minimize`."""
    def dominated(i: int) -> bool:
        row = frame.loc[i]
        others = frame.drop(index=i)
        return bool(((others[maximize] >= row[maximize]) & (others[minimize] <= row[minimize])
                     & ((others[maximize] > row[maximize]) | (others[minimize] < row[minimize]))).any())

    return pd.Series([not dominated(i) for i in frame.index], index=frame.index)


def plot_pareto(trials: pd.DataFrame, summary: Json, target: Path, study: str) -> None:
    """slo_rate against TTFT p99 of the study's trials, their Pareto front, and the defaults' measurements
    (`summary["defaults_slo_rate_runs"]`: rows of ttft_ms_p99 and slo_rate_rps)."""
    done = trials[(trials["study"] == study) & trials["slo_rate_rps"].notna()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(done["ttft_ms_p99"], done["slo_rate_rps"], label="completed trials", zorder=3)
    for row in done.itertuples():
        ax.annotate(f"trial {row.number}", (row.ttft_ms_p99, row.slo_rate_rps), textcoords="offset points", xytext=(4, 4))
    if not done.empty:
        front = done[pareto_mask(done.reset_index(drop=True), "slo_rate_rps", "ttft_ms_p99").to_numpy()].sort_values("ttft_ms_p99")
        ax.step(front["ttft_ms_p99"], front["slo_rate_rps"], where="post", linestyle="--", marker="o", markersize=12,
                fillstyle="none", label="Pareto front (trials)")
    runs = pd.DataFrame(summary["defaults_slo_rate_runs"])
    ax.scatter(runs["ttft_ms_p99"], runs["slo_rate_rps"], marker="x", color="red", label="vLLM defaults (measurements)", zorder=3)
    ax.set_xlabel("TTFT p99 ms (in the reported slo_rate window)")
    ax.set_ylabel("slo_rate req/s")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, target)


def plot_trial_times(trials: pd.DataFrame, target: Path) -> None:
    frame = trials.copy()
    frame["label"] = [f"{s.split('-')[-1]}#{n}\n{st}" for s, n, st in zip(frame["study"], frame["number"], frame["state"], strict=True)]
    startup = frame["startup_s"].fillna(0).astype(float).to_numpy()
    measure = frame["measure_s"].fillna(0).astype(float).to_numpy()
    other = (frame["total_s"].fillna(0).astype(float) - frame["startup_s"].fillna(0) - frame["measure_s"].fillna(0)).clip(lower=0)
    stacked_bars(frame["label"], {"startup": startup, "measure": measure, "warm-up + stop": other.to_numpy()}, target,
                 figsize=(11, 4.2), ylabel="s", tick_size=7,
                 title="Trial time: startup vs measure (trials without timings were killed before recording)")
