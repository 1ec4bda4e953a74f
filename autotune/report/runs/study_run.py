"""The summary of a study run on the GPU (scripts/gpu/reference.sh agree | wait | tp): summary.json, tables.md, plots/.

A run folder holds `measurements/` (env.json, the c16 A B B A agreement: agree-autotune-a*.json.gz and vllm bench's
agree-vllm-b*.json, the workers' logs) and `study/<name>/` (Optuna + MLflow stores, trials.csv,
trials/N/{trial.json,result.json.gz,server.log}, best.yaml). Unlike a reference run (`autotune.report.runs.reference`),
the defaults are the study's own trial 0, measured by the same workers in the same device commands as every sampled
trial.

Percent differences: agreement = (mean of autotune bench runs - mean of vllm bench runs) / vllm bench x 100.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import statistics
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from autotune.bench.result import load_result
from autotune.bench.schemas import BenchResult
from autotune.config import read_yaml_mapping
from autotune.report import recorded
from autotune.report.runs.folder import (
    Json,
    Layout,
    best_trial_number,
    gpu_util,
    hardware,
    pct_diff,
    profile_point,
    read_trial,
    rounded,
    run_date,
    trial_counts,
    trial_result,
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
from autotune.tune.start_phases import read_marks

# --- the c16 agreement, A B B A ---------------------------------------------------------------------------------


def agreement_abba(measurements: Path) -> Json | None:
    """autotune bench (A) vs vllm bench serve (B) on one autotune serve at 16 streams, run A B B A."""
    ours = [load_result(p).summary for p in sorted(measurements.glob("agree-autotune-a*.json.gz"))]
    theirs = [json.loads(p.read_text()) for p in sorted(measurements.glob("agree-vllm-b*.json"))]
    if not ours or not theirs:
        return None
    runs = [
        {"client": "autotune bench", "throughput_rps": s.throughput_rps, "ttft_ms_p50": s.ttft_ms.p50,
         "tpot_ms_p50": s.tpot_ms.p50, "completed": s.completed, "gpu_util_mean": gpu_util(s)}
        for s in ours
    ] + [
        {"client": "vllm bench serve", "throughput_rps": float(b["request_throughput"]), "ttft_ms_p50": float(b["median_ttft_ms"]),
         "tpot_ms_p50": float(b["median_tpot_ms"]), "completed": int(b["completed"]), "gpu_util_mean": None}
        for b in theirs
    ]
    out: Json = {"order": "A B B A (A: autotune bench, B: vllm bench serve)", "concurrency": 16, "runs": runs}
    for key in ("throughput_rps", "ttft_ms_p50", "tpot_ms_p50"):
        spread_a = [r[key] for r in runs if r["client"] == "autotune bench"]
        spread_b = [r[key] for r in runs if r["client"] == "vllm bench serve"]
        a, b = statistics.mean(spread_a), statistics.mean(spread_b)
        out[key] = {
            "autotune_bench_mean": rounded(a, 3), "vllm_bench_mean": rounded(b, 3), "diff_pct": rounded(pct_diff(a, b)),
            "run_to_run_pct_autotune": rounded(pct_diff(max(spread_a), min(spread_a))),
            "run_to_run_pct_vllm": rounded(pct_diff(max(spread_b), min(spread_b))),
        }
    return out


# --- start-up phases from vLLM's server log ---------------------------------------------------------------------

# The marks, in order, this summary splits a start at (autotune.tune.start_phases reads them from the log; the
# tuner also records its own phases per trial). "start" is our launcher's `starting vLLM` line.
PHASE_MARKS = ("api_server_imported", "engine_core_started", "model_load_started", "engine_ready", "mm_warmup_done",
               "serving")


def startup_phases(server_log: Path, year: int) -> Json | None:
    """Seconds between the start-up marks of one vLLM server log (each mark's first occurrence), and its
    torch.compile facts."""
    if not recorded.exists(server_log):
        return None
    text = recorded.read_text(server_log)
    found = read_marks(text, year=year)
    if "vllm_started" not in found.first or "engine_ready" not in found.first:
        return None
    times = {"start": found.first["vllm_started"].replace(microsecond=0)}
    named = {"api_server_imported": "vllm_first_line", "serving": None}
    for name in PHASE_MARKS:
        source = named.get(name, name)
        if source is not None and source in found.first:
            times[name] = found.first[source]
    if "Application startup complete" in text:  # uvicorn's line has no stamp: the latest mark before it
        times["serving"] = max(times.values())
    order = ["start", *PHASE_MARKS]
    present = [name for name in order if name in times]
    phases = {f"{a}->{b}": (times[b] - times[a]).total_seconds() for a, b in zip(present, present[1:], strict=False)}
    warmups = [float(x) for x in re.findall(r"Multi-modal warmup completed in ([\d.]+)s", text)]
    return {
        "phases_s": phases,
        "to_serving_s": (max(times.values()) - times["start"]).total_seconds(),
        "torch_compile_s": found.compile_s[0] if found.compile_s else None,
        "compile_cache_hit": found.cache_hits > 0,
        "mm_warmup_s_per_api_server": warmups,
    }


def startup_table(study_dir: Path, year: int) -> pd.DataFrame:
    rows = []
    for d in sorted((study_dir / "trials").iterdir(), key=lambda p: int(p.name)):
        info = startup_phases(d / "server.log", year)
        if info is None:
            continue
        trial = read_trial(d) or {}
        rows.append({
            "trial": int(d.name),
            "startup_s (autotune)": (trial.get("timings") or {}).get("startup_s"),
            **info["phases_s"],
            "torch.compile s": info["torch_compile_s"],
            "compile cache hit": info["compile_cache_hit"],
            "mm warm-up s (max)": max(info["mm_warmup_s_per_api_server"], default=None),
            "api servers": len(info["mm_warmup_s_per_api_server"]),
        })
    return pd.DataFrame(rows)


# --- the study: defaults trial vs best trial, profile -------------------------------------------------------------


def defaults_trial_number(study_dir: Path) -> int | None:
    csv = pd.read_csv(study_dir / "trials.csv")
    rows = csv[(csv["config_kind"] == "vllm-defaults") & (csv["state"] == "COMPLETE")]
    return int(rows["number"].iloc[0]) if not rows.empty else None


def study_goodput(study_dir: Path) -> Json:
    d_n, b_n = defaults_trial_number(study_dir), best_trial_number(study_dir)
    d = trial_result(study_dir, d_n) if d_n is not None else None
    b = trial_result(study_dir, b_n) if b_n is not None else None
    d_rate = d.summary.slo_rate_rps if d else None
    b_rate = b.summary.slo_rate_rps if b else None
    return {
        "defaults_trial": d_n,
        "best_trial": b_n,
        "default_goodput_rps": rounded(d_rate),
        "best_goodput_rps": rounded(b_rate),
        "best_vs_default": rounded(b_rate / d_rate, 3) if d_rate and b_rate is not None else None,
        "gpu_util_mean_default": rounded(gpu_util(d.summary), 1) if d else None,
        "gpu_util_mean_best": rounded(gpu_util(b.summary), 1) if b else None,
    }


def study_profile(study_dir: Path) -> Json:
    """Server CPU by role in the reported slo_rate window, for every measured trial."""
    out: Json = {}
    for d in sorted((study_dir / "trials").iterdir(), key=lambda p: int(p.name)):
        result = trial_result(study_dir, int(d.name))
        if result is not None:
            out[f"trial {d.name}"] = profile_point(result.summary)
    return out


def tp_comparison(study_dir: Path) -> Json | None:
    """Each trial of the tensor-parallel grid: its layout and how it measured."""
    if not study_dir.is_dir():
        return None
    rows = []
    for d in sorted((study_dir / "trials").iterdir(), key=lambda p: int(p.name)):
        config = read_yaml_mapping(d / "config.yaml").get("engine_config", {}) if (d / "config.yaml").is_file() else {}
        trial = read_trial(d) or {}
        result = trial_result(study_dir, int(d.name))
        s = result.summary if result else None
        rows.append({
            "trial": int(d.name),
            "tensor_parallel_size": config.get("tensor_parallel_size", 1),
            "state": trial.get("state"),
            "reason": trial.get("reason"),
            "slo_rate_rps": rounded(s.slo_rate_rps) if s else None,
            "throughput_rps": rounded(s.throughput_rps) if s else None,
            "gpu_util_mean": rounded(gpu_util(s), 1) if s else None,
            "startup_s": (trial.get("timings") or {}).get("startup_s"),
            "server_cores": len(trial.get("server_cpus") or []) or None,
        })
    return {"trials": rows}


def slo_rate_censored(result: BenchResult) -> bool | None:
    """The value is a lower bound: no rate tried above it failed. Read from the summary where it records it; for
    results that predate the field, inferred from the windows (the reported rate is the first, highest one tried)."""
    s = result.summary
    if s.slo_rate_censored is not None or not s.slo_rate_rps:
        return s.slo_rate_censored if s.slo_rate_rps else None
    tried = [w.offered_rate_rps for w in result.sweep[1:] if w.offered_rate_rps]
    return bool(tried) and all(rate <= s.slo_rate_rps + 1e-6 for rate in tried)


def main_study(layout: Layout, studies: Sequence[str]) -> str:
    """The study a run folder holds: the first of `studies` present (else the first named)."""
    return next((name for name in studies if layout.study(name).is_dir()), studies[0])


def trial_starts(study_dir: Path) -> dict[int, datetime]:
    """Each trial's start (Optuna's datetime_start, UTC) from the study's SQLite storage, or from its export
    `optuna-trials.csv` (Optuna's trials_dataframe) where the storage was not kept."""
    storage = study_dir / "optuna.db"
    if not recorded.exists(storage):
        frame = pd.read_csv(io.BytesIO(recorded.read_bytes(study_dir / "optuna-trials.csv")))
        frame = frame[frame["datetime_start"].notna()]
        return {int(n): datetime.fromisoformat(t) for n, t in zip(frame["number"], frame["datetime_start"], strict=True)}
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(recorded.read_bytes(storage))
        rows = db.execute("SELECT number, datetime_start FROM trials WHERE datetime_start IS NOT NULL").fetchall()
    finally:
        db.close()
    return {int(n): datetime.fromisoformat(t) for n, t in rows}


def this_run(study_dir: Path, run_start: datetime) -> Json:
    """The trials this run measured (started after `run_start`), by config: a comparison on one machine.

    A study resumed across sessions holds trials of several hosts: the same config measured 54.8 req/s in one
    session and 30.7 in another (the defaults), so best and defaults are compared only within one run.
    """
    csv = pd.read_csv(study_dir / "trials.csv")
    starts = trial_starts(study_dir)
    ours = csv[(csv["state"] == "COMPLETE") & csv["number"].map(lambda n: starts.get(int(n), datetime.min) >= run_start)]
    defaults_hash = csv.loc[csv["config_kind"] == "vllm-defaults", "config_hash"].iloc[0]
    configs = []
    for config_hash, group in ours.groupby("config_hash", sort=False):
        values = [rounded(float(v)) for v in group["value_0"]]
        first = int(csv.loc[csv["config_hash"] == config_hash, "number"].min())
        configs.append({
            "config_hash": config_hash, "first_trial": first, "defaults": config_hash == defaults_hash,
            "trials": [int(n) for n in group["number"]], "slo_rate_rps": values,
            "mean": rounded(statistics.fmean(values)), "low": min(values), "high": max(values),
            "gpu_util_mean": [rounded(float(v), 1) for v in group["metric_gpu_util_mean"]],
            "lower_bound": [slo_rate_censored(r) if (r := trial_result(study_dir, int(n))) else None for n in group["number"]],
        })
    configs.sort(key=lambda c: c["mean"], reverse=True)
    defaults = next((c for c in configs if c["defaults"]), None)
    best = next((c for c in configs if not c["defaults"]), None)
    return {
        "since": run_start.isoformat(),
        "trials": len(ours),
        "configs": configs,
        "defaults_mean_rps": defaults["mean"] if defaults else None,
        "best_config_first_trial": best["first_trial"] if best else None,
        "best_mean_rps": best["mean"] if best else None,
        "best_measurements": len(best["trials"]) if best else 0,
        "best_vs_defaults_mean": rounded(best["mean"] / defaults["mean"], 3) if best and defaults else None,
        "apart": bool(best and defaults and best["low"] > defaults["high"]),
        "lower_bounds": sum(bool(x) for c in configs for x in c["lower_bound"]),
    }


def _simulator(layout: Layout) -> Json:
    """The profile shipped before this run on this run's points (out of sample), and the refits made with them:
    `refit-all-points.json` (this run's and the earlier runs' points), `refit-this-run.json` (this run's only)."""
    folder = layout.root / "calibration"
    shipped = folder / "shipped-profile-on-these-points.json"
    if not shipped.is_file():
        return {"simulator_median_abs_error_pct": None, "simulator_note": f"{shipped.name} absent"}
    out = json.loads(shipped.read_text())
    errors: Json = {
        "shipped_profile_out_of_sample": out["median_abs_error_before"],
        "points": out["points"],
        "profile": str(out.get("base_profile")),
    }
    for name, key in (("refit-all-points.json", "refit_on_all_points"), ("refit-this-run.json", "refit_on_this_run")):
        if (folder / name).is_file():
            again = json.loads((folder / name).read_text())
            errors[key] = {
                "points": again["points"], "held_out": again["median_abs_error_held_out"],
                "in_sample": again["median_abs_error_in_sample"], "held_out_method": again.get("held_out_method"),
            }
    return {
        "simulator_median_abs_error_pct": errors,
        "simulator_note": "shipped_profile_out_of_sample: the profile shipped before this run, predicting this run's "
        "points; refit_*: fits that include them (which one ships is said in autotune/profiles/)",
    }


def build_summary(root: Path, studies: Sequence[str], tp_study: str, overhead_note: str) -> tuple[Json, pd.DataFrame, pd.DataFrame]:
    layout = Layout(root)
    main = main_study(layout, studies)
    study_dir = layout.study(main)
    year = datetime.fromisoformat(run_date(layout)).year
    startups = startup_table(study_dir, year)
    trials = pd.concat([trials_table(layout, s) for s in (main, tp_study) if layout.study(s).is_dir()],
                       ignore_index=True)
    results = [*root.glob("measurements/*.json.gz"), *root.glob("study/*/trials/*/result.json.gz")]
    simulated = sorted(str(p.relative_to(root)) for p in results if load_result(p).simulated)
    summary: Json = {
        "kind": "study-run-summary",
        "made_by": "autotune summarize run (computed from the raw files of this folder)",
        "simulated_result_files": simulated,
        "hardware": hardware(layout),
        "date": run_date(layout),
        "study": main,
        **study_goodput(study_dir),
        "slo_rate_lower_bounds": {  # trials whose slo_rate passed at the highest rate tried: at least that much
            str(n): True for n in sorted(int(d.name) for d in (study_dir / "trials").iterdir())
            if (r := trial_result(study_dir, n)) is not None and slo_rate_censored(r)
        },
        **trial_timings(layout, main),
        "trials": {s: trial_counts(layout, s) for s in (main, tp_study) if layout.study(s).is_dir()},
        "startup_medians_s": {c: rounded(float(startups[c].median()), 1) for c in startups.columns
                               if c not in ("trial", "compile cache hit", "api servers")},
        "compile_cache_hits": int(startups["compile cache hit"].sum()) if not startups.empty else 0,
        "serving_overhead_pct": None,
        "serving_overhead_note": overhead_note,
        **_simulator(layout),
        "agreement_c16_abba": agreement_abba(layout.measurements),
        "tensor_parallel": tp_comparison(layout.study(tp_study)),
        "profile_slo_rate_window": study_profile(study_dir),
    }
    env = layout.measurements / "env.json"
    if env.is_file():  # the run's own start: trials before it were measured in earlier sessions, on other hosts
        run_start = datetime.fromisoformat(json.loads(env.read_text())["date"]).replace(tzinfo=None)
        summary["this_run"] = this_run(study_dir, run_start)
    return summary, trials, startups


# --- tables and plots ---------------------------------------------------------------------------------------


def render_tables(summary: Json, trials: pd.DataFrame, startups: pd.DataFrame) -> str:
    parts = [f"# Tables of {summary['date'][:10]} (made by autotune summarize run)\n"]
    g = summary
    if summary.get("this_run") is not None:  # a resumed study: its trial 0 and its best may come from other sessions
        parts.append("## (a) The study's defaults trial vs its best trial (maybe measured in different sessions, on "
                     "different machines: (g) compares this run's trials only)\n")
    else:
        parts.append("## (a) The study's defaults trial vs its best trial (same workers, same device commands)\n")
    parts.append(markdown_table(pd.DataFrame([
        {"": "slo_rate req/s", "vLLM defaults": g["default_goodput_rps"], "best": g["best_goodput_rps"], "best / defaults": g["best_vs_default"]},
        {"": "GPU util % (mean, that window)", "vLLM defaults": g["gpu_util_mean_default"], "best": g["gpu_util_mean_best"], "best / defaults": None},
    ])))
    parts.append(f"\nDefaults = trial {g['defaults_trial']}, best = trial {g['best_trial']}.\n")
    parts.append("## (b) Trials\n")
    parts.append(markdown_table(trials))
    parts.append("\n## (c) Start-up phases per trial (s, from the server logs' timestamps)\n")
    parts.append(markdown_table(startups))
    if (a := summary.get("agreement_c16_abba")) is not None:
        parts.append("\n## (d) autotune bench vs vllm bench serve, 16 streams, A B B A on one server\n")
        parts.append(markdown_table(pd.DataFrame(a["runs"])))
        parts.append("\n" + markdown_table(pd.DataFrame([
            {"metric": k, **{kk: vv for kk, vv in a[k].items()}} for k in ("throughput_rps", "ttft_ms_p50", "tpot_ms_p50")
        ])))
    if (tp := summary.get("tensor_parallel")) is not None:
        parts.append("\n## (e) Tensor parallel on the two-GPU host (one worker over both GPUs)\n")
        parts.append(markdown_table(pd.DataFrame(tp["trials"])))
    if (r := summary.get("this_run")) is not None:
        parts.append(f"\n## (g) This run's trials by config (started after {r['since'][:19]} UTC: one machine)\n")
        parts.append(markdown_table(pd.DataFrame([
            {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in c.items() if k != "config_hash"}
            for c in r["configs"]
        ])))
        parts.append(f"\nBest config (first trial {r['best_config_first_trial']}, {r['best_measurements']} measurement(s) in "
                     f"this run): mean {r['best_mean_rps']} vs defaults' mean {r['defaults_mean_rps']} req/s = "
                     f"{r['best_vs_defaults_mean']}x; every measurement above the defaults' highest: {r['apart']}. "
                     f"lower_bound: the value passed at the highest rate tried, so the config may sustain more "
                     f"({r['lower_bounds']} of this run's {r['trials']} trials).\n")
    parts.append("\n## (f) Server CPU by role in each trial's reported slo_rate window\n")
    prof = pd.DataFrame([{"trial": k, **(v or {})} for k, v in summary["profile_slo_rate_window"].items()])
    parts.append(markdown_table(prof))
    return "\n".join(parts) + "\n"


def plot_gpu_util(study_dir: Path, summary: Json, target: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for label, number in (("vLLM defaults", summary["defaults_trial"]), ("best", summary["best_trial"])):
        result = trial_result(study_dir, number) if number is not None else None
        series = pd.DataFrame(result.gpu_timeseries) if result else pd.DataFrame()
        if not series.empty:
            ax.plot(series["t_s"], series["util_pct"].rolling(5, min_periods=1).mean(), label=f"{label}, trial {number}")
    ax.set_xlabel("s since the capacity probe began (slo_rate: probe, then open-loop windows)")
    ax.set_ylabel("GPU util % (rolling mean of 5 samples)")
    ax.set_ylim(0, 110)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, target)


def confirmed_trials(study_dir: Path) -> dict[str, list[int]] | None:
    """The trials of each confirmed config ("defaults", "best") from the study's confirmation.json; None without."""
    path = study_dir / "confirmation.json"
    if not path.is_file():
        return None
    confirmed = json.loads(path.read_text())
    return {label: [int(n) for n in confirmed[label]["trials"]] for label in ("defaults", "best")}


def load_windows(study_dir: Path) -> pd.DataFrame:
    """Each measured window of the confirmed configs (confirmation.json: defaults and best, every measurement): the
    closed-loop capacity probe and the open-loop rates of slo_rate, with achieved rate, p99s and GPU utilization."""
    confirmed = confirmed_trials(study_dir)
    if confirmed is None:
        return pd.DataFrame()
    rows = []
    for label, numbers in confirmed.items():
        for number in numbers:
            result = trial_result(study_dir, number)
            for window in (result.sweep or []) if result else []:
                rows.append({
                    "config": label, "trial": number, "closed_loop": window.offered_rate_rps is None,
                    "offered_rps": window.offered_rate_rps, "achieved_rps": window.throughput_rps,
                    "ttft_ms_p99": window.ttft_ms.p99, "tpot_ms_p99": window.tpot_ms.p99,
                    "gpu_util_mean": window.gpu.util_mean if window.gpu else None,
                })
    return pd.DataFrame(rows)


def plot_load_windows(windows: pd.DataFrame, slo: Json, target: Path) -> None:
    """p99 TTFT, p99 TPOT and GPU utilization against the achieved request rate, defaults vs best, every window
    of every measurement (open loop: circles; the closed-loop probe at 256 streams: crosses)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for (label, closed), group in windows.groupby(["config", "closed_loop"]):
        color = "tab:red" if label == "defaults" else "tab:blue"
        kind = "probe, 256 streams" if closed else "open loop"
        for ax, column in zip(axes, ("ttft_ms_p99", "tpot_ms_p99", "gpu_util_mean"), strict=True):
            ax.scatter(group["achieved_rps"], group[column], color=color, marker="x" if closed else "o",
                       label=f"{label} ({kind})", alpha=0.8)
    for ax, column, title in zip(axes, ("ttft_ms_p99", "tpot_ms_p99", "gpu_util_mean"),
                                 ("TTFT p99 (ms)", "TPOT p99 (ms)", "GPU util % (mean)"), strict=True):
        limit = slo.get(column.split("_p99")[0]) if "p99" in column else None
        if limit:
            ax.axhline(limit, color="grey", linestyle="--", linewidth=1, label="SLO")
        ax.set_xlabel("achieved req/s in the window")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    save_figure(fig, target)


def plot_startup(startups: pd.DataFrame, target: Path) -> None:
    layers = {c: startups[c].fillna(0).to_numpy() for c in startups.columns if "->" in c}
    stacked_bars(startups["trial"].astype(str), layers, target, figsize=(10, 4.2), xlabel="trial", ylabel="s",
                     title="vLLM start-up phases per trial (server log timestamps)",
                     legend={"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (1, 1)})


def summarize_study_run(root: Path, studies: Sequence[str], tp_study: str, overhead_note: str) -> Json:
    """Write summary.json, tables.md, load_windows.csv and plots/ into the run folder `root`; the summary.

    `studies`: the names the run's main study may have (the first present is summarized); `tp_study`: the
    tensor-parallel grid's study, when the run has one; `overhead_note`: what the summary says about the serving
    overhead, which a study run does not measure (where it was measured)."""
    summary, trials, startups = build_summary(root, studies, tp_study, overhead_note)
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (root / "tables.md").write_text(render_tables(summary, trials, startups))
    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    plot_gpu_util(root / "study" / summary["study"], summary, plots / "gpu_util_defaults_vs_best.png")
    plot_startup(startups, plots / "startup_phases.png")
    plot_trial_times(trials, plots / "trial_time_breakdown.png")
    study_dir = root / "study" / summary["study"]
    windows = load_windows(study_dir)
    if not windows.empty:
        windows.to_csv(root / "load_windows.csv", index=False)
        measured = trial_result(study_dir, int(windows["trial"].iloc[0]))
        slo = measured.slo.model_dump(exclude_none=True) if measured and measured.slo else {}
        plot_load_windows(windows, slo, plots / "latency_vs_rate_defaults_vs_best.png")
        defaults = trials[trials["number"].isin(windows.loc[windows["config"] == "defaults", "trial"].unique())]
        plot_pareto(trials, {"defaults_slo_rate_runs": defaults[["ttft_ms_p99", "slo_rate_rps"]].to_dict("records")},
                        plots / "pareto_front.png", study=summary["study"])
    return summary

