"""The summary of a reference run (scripts/gpu/reference.sh a|b|c): summary.json, tables.md and plots/.

Everything is computed from the raw files under the run folder: `measurements/` (autotune bench results *.json.gz,
vllm bench JSON, env.json), `study/<name>/` (trials.csv, trials/N/trial.json, result.json, server.log, best.yaml)
and `calibration/report.json` when present. Its layout: step a measured autotune serve and raw vllm serve side by
side (`bench-{autotune,vllm}-serve-cN`, `slo-rate-*-serve-defaults`) and vllm bench against autotune serve
(`vllm-bench-cN[-pK]`); step b ran the study; step c measured its best against vLLM's defaults (`compare-*`).

Percent differences: serving overhead = (raw vllm serve - autotune serve) / raw x 100 (positive: ours slower);
agreement = (autotune bench - vllm bench) / vllm bench x 100.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from autotune.bench.result import load_result
from autotune.bench.schemas import BenchResult
from autotune.report.runs.folder import (
    Json,
    Layout,
    best_trial_number,
    gpu_util,
    hardware,
    overhead_pct,
    pct_diff,
    profile_point,
    report_errors,
    rounded,
    run_date,
    trial_counts,
    trial_timings,
    trials_table,
)
from autotune.report.runs.render import (
    markdown_table,
    plot_pareto,
    plot_trial_times,
    save_figure,
    stacked_bars,
)

AGREEMENT_CONCURRENCIES = (16, 128, 256)
COMPARE_CONCURRENCIES = (64, 128, 256)
PROFILE_CONCURRENCIES = (128, 256)
Side = Literal["defaults", "best"]
SIDES: tuple[Side, ...] = ("defaults", "best")

# Configs whose server CPU is profiled: label -> (closed-loop result name pattern, slo_rate result name).
PROFILE_SOURCES: dict[str, tuple[str, str]] = {
    "defaults (autotune serve, step c)": ("compare-defaults-c{c}", "slo-rate-compare-defaults"),
    "best (autotune serve, step c)": ("compare-best-c{c}", "slo-rate-compare-best"),
    "defaults (autotune serve, step a)": ("bench-autotune-serve-c{c}", "slo-rate-autotune-serve-defaults"),
    "defaults (raw vllm serve, step a)": ("bench-vllm-serve-c{c}", "slo-rate-vllm-serve-defaults"),
}


def serving_overhead(layout: Layout) -> Json:
    """autotune serve (GPU 0) vs raw vllm serve (GPU 1), same engine args, measured at the same time."""
    per_c: Json = {}
    for c in AGREEMENT_CONCURRENCIES:
        ours = layout.bench(f"bench-autotune-serve-c{c}").summary.throughput_rps
        raw = layout.bench(f"bench-vllm-serve-c{c}").summary.throughput_rps
        per_c[f"c{c}"] = {"autotune_serve_rps": rounded(ours), "vllm_serve_rps": rounded(raw), "overhead_pct": rounded(overhead_pct(ours, raw))}
    ours_slo = layout.bench("slo-rate-autotune-serve-defaults").summary.slo_rate_rps or 0.0
    raw_slo = layout.bench("slo-rate-vllm-serve-defaults").summary.slo_rate_rps or 0.0
    return {
        "definition": "(raw vllm serve - autotune serve) / raw x 100; positive: autotune serve is slower",
        "throughput": per_c,
        "throughput_mean_pct": rounded(statistics.mean(v["overhead_pct"] for v in per_c.values())),
        "slo_rate": {
            "autotune_serve_rps": rounded(ours_slo),
            "vllm_serve_rps": rounded(raw_slo),
            "overhead_pct": rounded(overhead_pct(ours_slo, raw_slo)) if raw_slo else None,
        },
    }


def vllm_bench_processes(layout: Layout, concurrency: int) -> list[Json]:
    """vllm bench serve JSONs of one load: one file at c16, `-p<k>` files (concurrent processes of c64) above."""
    single = layout.measurements / f"vllm-bench-c{concurrency}.json"
    if single.is_file():
        return [json.loads(single.read_text())]
    files = sorted(layout.measurements.glob(f"vllm-bench-c{concurrency}-p*.json"))
    return [json.loads(f.read_text()) for f in files]


def agreement(layout: Layout) -> Json:
    """autotune bench vs vllm bench serve against the same autotune serve."""
    out: Json = {"definition": "(autotune bench - vllm bench) / vllm bench x 100"}
    for c in AGREEMENT_CONCURRENCIES:
        ours = layout.bench(f"bench-autotune-serve-c{c}").summary
        procs = vllm_bench_processes(layout, c)
        if not procs:
            out[f"c{c}"] = None
            continue
        vllm_rps = sum(float(p["request_throughput"]) for p in procs)
        row: Json = {
            "autotune_bench_rps": rounded(ours.throughput_rps),
            "vllm_bench_rps": rounded(vllm_rps),
            "vllm_bench_processes": len(procs),
            "vllm_bench_concurrency_each": [p.get("max_concurrency") for p in procs],
            "throughput_diff_pct": rounded(pct_diff(ours.throughput_rps, vllm_rps)),
            "autotune_ttft_p50_ms": rounded(ours.ttft_ms.p50),
            "vllm_ttft_p50_ms_each": [rounded(float(p["median_ttft_ms"])) for p in procs],
        }
        if len(procs) == 1 and ours.ttft_ms.p50 is not None:
            row["ttft_p50_diff_pct"] = rounded(pct_diff(ours.ttft_ms.p50, float(procs[0]["median_ttft_ms"])))
        out[f"c{c}"] = row
    return out


def slo_result(layout: Layout, side: Side) -> BenchResult:
    return layout.bench(f"slo-rate-compare-{side}")


def goodput(layout: Layout) -> Json:
    """Defaults (GPU 0) vs best (GPU 1) at the study objective, measured in one device command."""
    default, best = (slo_result(layout, s).summary for s in SIDES)
    d, b = default.slo_rate_rps or 0.0, best.slo_rate_rps or 0.0
    return {
        "default_goodput_rps": rounded(d),
        "best_goodput_rps": rounded(b),
        "best_vs_default": rounded(b / d, 3) if d else None,
        "gpu_util_mean_default": rounded(gpu_util(default), 1),
        "gpu_util_mean_best": rounded(gpu_util(best), 1),
    }


def calibration_errors(layout: Layout) -> tuple[Json | None, str | None]:
    return report_errors(layout.calibration_report, layout.root)


def _slo_run(source: str, result: BenchResult, server: str) -> Json:
    s = result.summary
    cpus = s.server_cpu.affinity if s.server_cpu else None
    return {
        "source": source,
        "server": server,
        "slo_rate_rps": rounded(s.slo_rate_rps),
        "capacity_probe_rps": rounded(result.sweep[0].throughput_rps) if result.sweep else None,
        "ttft_ms_p99": rounded(s.ttft_ms.p99, 1),
        "tpot_ms_p99": rounded(s.tpot_ms.p99, 1),
        "gpu_util_mean": rounded(gpu_util(s), 1),
        "gpus": len(s.gpu.devices) if s.gpu else None,
        "server_affinity_cpus": len(cpus) if cpus else None,
        "workload": result.workload.get("name"),
        "seed": result.load.seed,
    }


def defaults_slo_rate_runs(layout: Layout, tp_study: str) -> list[Json]:
    """Every measurement of the vLLM defaults' slo_rate in the files: its spread."""
    runs = [
        _slo_run("measurements/slo-rate-autotune-serve-defaults", layout.bench("slo-rate-autotune-serve-defaults"), "autotune serve, step a"),
        _slo_run("measurements/slo-rate-vllm-serve-defaults", layout.bench("slo-rate-vllm-serve-defaults"), "raw vllm serve, step a"),
        _slo_run("measurements/slo-rate-compare-defaults", layout.bench("slo-rate-compare-defaults"), "autotune serve, step c"),
    ]
    tp_trial0 = layout.study(tp_study) / "trials" / "0" / "result.json.gz"
    if not tp_trial0.is_file():
        tp_trial0 = tp_trial0.with_suffix("")  # uncompressed
    if tp_trial0.is_file():
        runs.append(_slo_run(f"study/{tp_study}/trials/0", load_result(tp_trial0), "autotune serve, 2-GPU study trial 0 (TP 1)"))
    return runs


def profile(layout: Layout) -> Json:
    """Server CPU by role per config, at c128/c256 (closed loop) and at the slo rate (the reported window)."""
    out: Json = {}
    for label, (closed, slo) in PROFILE_SOURCES.items():
        points: Json = {f"c{c}": profile_point(layout.bench(closed.format(c=c)).summary) for c in PROFILE_CONCURRENCIES}
        points["slo_rate"] = profile_point(layout.bench(slo).summary)
        out[label] = points
    return out


def compare_frame(layout: Layout) -> pd.DataFrame:
    """Defaults vs best, closed loop at 64/128/256 (same device command, one GPU each)."""
    rows = []
    for side in SIDES:
        for c in COMPARE_CONCURRENCIES:
            s = layout.bench(f"compare-{side}-c{c}").summary
            rows.append(
                {
                    "config": side,
                    "concurrency": c,
                    "throughput_rps": s.throughput_rps,
                    "ttft_ms_p50": s.ttft_ms.p50,
                    "ttft_ms_p99": s.ttft_ms.p99,
                    "tpot_ms_p50": s.tpot_ms.p50,
                    "tpot_ms_p99": s.tpot_ms.p99,
                    "gpu_util_mean": gpu_util(s),
                }
            )
    return pd.DataFrame(rows)


def simulated_sources(layout: Layout) -> list[str]:
    """Result files labeled simulated (there must be none in a GPU reference run)."""
    return sorted(p.name for p in layout.measurements.glob("*.json.gz") if load_result(p).simulated)


def build_summary(layout: Layout, main_study: str, tp_study: str) -> Json:
    calibration, calibration_note = calibration_errors(layout)
    return {
        "kind": "reference-summary",
        "made_by": "autotune summarize reference (computed from the raw files of this folder)",
        "simulated_result_files": simulated_sources(layout),
        "hardware": hardware(layout),
        "date": run_date(layout),
        "slo": slo_result(layout, "defaults").slo.model_dump(exclude_none=True),
        **goodput(layout),
        "best_trial": best_trial_number(layout.study(main_study)),
        **trial_timings(layout, main_study),
        "serving_overhead_pct": serving_overhead(layout),
        "simulator_median_abs_error_pct": calibration,
        "simulator_note": calibration_note,
        "agreement": agreement(layout),
        "trials": {study: trial_counts(layout, study) for study in (main_study, tp_study) if layout.study(study).is_dir()},
        "defaults_slo_rate_runs": defaults_slo_rate_runs(layout, tp_study),
        "profile": profile(layout),
    }


# --- tables.md ----------------------------------------------------------------------------------------------


def agreement_frame(summary: Json) -> pd.DataFrame:
    rows = []
    for c in AGREEMENT_CONCURRENCIES:
        a = summary["agreement"].get(f"c{c}")
        if a:
            rows.append(
                {
                    "concurrency": c,
                    "autotune bench req/s": a["autotune_bench_rps"],
                    "vllm bench req/s (sum)": a["vllm_bench_rps"],
                    "vllm bench processes x concurrency": f"{a['vllm_bench_processes']} x {a['vllm_bench_concurrency_each'][0]}",
                    "throughput diff %": a["throughput_diff_pct"],
                    "autotune TTFT p50 ms": a["autotune_ttft_p50_ms"],
                    "vllm TTFT p50 ms (each)": ", ".join(f"{v:.0f}" for v in a["vllm_ttft_p50_ms_each"]),
                    "TTFT p50 diff %": a.get("ttft_p50_diff_pct"),
                }
            )
    return pd.DataFrame(rows)


def overhead_frame(summary: Json) -> pd.DataFrame:
    o = summary["serving_overhead_pct"]
    rows = [{"load": k, **v} for k, v in o["throughput"].items()]
    rows.append({"load": "mean (throughput)", "overhead_pct": o["throughput_mean_pct"]})
    rows.append({"load": "slo_rate", **o["slo_rate"]})
    return pd.DataFrame(rows, columns=["load", "autotune_serve_rps", "vllm_serve_rps", "overhead_pct"])


def profile_frame(summary: Json) -> pd.DataFrame:
    rows = [
        {"config": label, "load": load, **(point or {})}
        for label, points in summary["profile"].items()
        for load, point in points.items()
    ]
    return pd.DataFrame(rows)


def render_tables(summary: Json, compare: pd.DataFrame, trials: pd.DataFrame) -> str:
    g = summary
    slo = pd.DataFrame(
        [
            {"config": "defaults", "slo_rate_rps": g["default_goodput_rps"], "gpu_util_mean": g["gpu_util_mean_default"]},
            {"config": "best", "slo_rate_rps": g["best_goodput_rps"], "gpu_util_mean": g["gpu_util_mean_best"]},
            {"config": "best / defaults", "slo_rate_rps": g["best_vs_default"], "gpu_util_mean": None},
        ]
    )
    runs = pd.DataFrame(summary["defaults_slo_rate_runs"])
    trial_cols = [c for c in trials.columns if c not in ("config_kind", "measure_s")]
    parts = [
        (f"# Reference runs {summary['date'][:10]}: {len(summary['hardware']['gpus'])}x {summary['hardware']['gpus'][0]}, "
         f"{summary['hardware']['cpu_count']} CPUs, vLLM {summary['hardware']['versions'].get('vllm')}"),
        ("Computed by `autotune summarize reference` from the raw files; GPU measurements (no simulated results: "
         f"{summary['simulated_result_files'] or 'none'}). SLO: {summary['slo']}."),
        "## (a) vLLM defaults vs the study's best (step c, one device command: GPU 0 defaults, GPU 1 best)",
        "Closed loop, workload vlm-chat, 8 s windows:",
        markdown_table(compare),
        "Highest rate within the SLO (slo_rate), GPU util at that rate:",
        markdown_table(slo),
        "Every measurement of the defaults' slo_rate in the files (gpu_util_mean averages every visible device):",
        markdown_table(runs),
        "## (b) Agreement: autotune bench vs vllm bench serve (issue 4, same autotune serve, workload vlm-chat-random-mm)",
        summary["agreement"]["definition"] + "; at c128/c256 vllm bench ran as concurrent processes of c64, summed.",
        markdown_table(agreement_frame(summary)),
        "## (c) Serving overhead: autotune serve (GPU 0) vs raw vllm serve (GPU 1), same engine args, same time",
        summary["serving_overhead_pct"]["definition"] + ".",
        markdown_table(overhead_frame(summary)),
        "## (d) Trials",
        markdown_table(trials[trial_cols]),
        "## (e) Server CPU by role (cores; busiest = the busiest process of that role)",
        markdown_table(profile_frame(summary)),
    ]
    return "\n\n".join(parts) + "\n"


# --- plots --------------------------------------------------------------------------------------------------


def plot_compare(compare: pd.DataFrame, target: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, column, label in zip(
        axes, ("throughput_rps", "ttft_ms_p99", "tpot_ms_p99"), ("throughput req/s", "TTFT p99 ms", "TPOT p99 ms"), strict=True
    ):
        for side, group in compare.groupby("config"):
            ax.plot(group["concurrency"], group[column], marker="o", label=str(side))
        ax.set_xlabel("concurrency (closed loop)")
        ax.set_ylabel(label)
        ax.set_xticks(list(COMPARE_CONCURRENCIES))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("vLLM defaults vs study best (vlm-chat, 8 s windows)")
    save_figure(fig, target)


def plot_gpu_util(layout: Layout, target: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for side in SIDES:
        series = pd.DataFrame(slo_result(layout, side).gpu_timeseries)
        if not series.empty:
            smooth = series["util_pct"].rolling(5, min_periods=1).mean()
            ax.plot(series["t_s"], smooth, label=f"{side} (rolling mean of 5 samples)")
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.text(0, 102, " probe starts (t=0); later window start times are not recorded", fontsize=8, color="grey")
    ax.set_xlabel("s since the first measured window (slo_rate: probe, then open-loop windows)")
    ax.set_ylabel("GPU util %")
    ax.set_ylim(0, 110)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, target)


def plot_server_cpu(summary: Json, target: Path) -> None:
    frame = profile_frame(summary)
    frame = frame[frame["load"].isin(["c256", "slo_rate"])]
    labels = [f"{c.replace(' (', chr(10) + '(')}\n{l}" for c, l in zip(frame["config"], frame["load"], strict=True)]
    layers = {
        "engine_core": frame["engine_core_cores_mean"].fillna(0).to_numpy(),
        "api_server": frame["api_server_cores_mean"].fillna(0).to_numpy(),
    }
    stacked_bars(labels, layers, target, figsize=(12, 4.5), ylabel="cores (mean over the window)",
                 title="Server CPU by role: defaults vs best vs raw vllm serve", tick_size=7)


# --- entry point --------------------------------------------------------------------------------------------


def summarize_reference(root: Path, summary_name: str, main_study: str, tp_study: str) -> Json:
    """Write `summary_name`, tables.md and plots/ into the run folder `root`; the summary."""
    layout = Layout(root)
    summary = build_summary(layout, main_study, tp_study)
    compare = compare_frame(layout)
    trials = pd.concat([trials_table(layout, s) for s in (main_study, tp_study) if layout.study(s).is_dir()],
                       ignore_index=True)
    (root / summary_name).write_text(json.dumps(summary, indent=1) + "\n")
    (root / "tables.md").write_text(render_tables(summary, compare, trials))
    layout.plots.mkdir(exist_ok=True)
    plot_compare(compare, layout.plots / "throughput_latency_vs_concurrency.png")
    plot_gpu_util(layout, layout.plots / "gpu_util_over_time.png")
    plot_server_cpu(summary, layout.plots / "server_cpu_by_role.png")
    plot_pareto(trials, summary, layout.plots / "pareto_front.png", study=main_study)
    plot_trial_times(trials, layout.plots / "trial_time_breakdown.png")
    return summary
