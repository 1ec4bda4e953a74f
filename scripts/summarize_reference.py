"""Summarize the reference GPU runs (scripts/gpu/reference.sh a|b|c) into summary.json, tables.md and plots/.

Everything is computed from the raw files under the experiment folder (default experiments/h100-qwen3-vl-4b):
`measurements/` (autotune bench BenchResults *.json.gz, vllm bench JSON, env.json), `study/<name>/` (trials.csv,
trials/N/trial.json, result.json, server.log, best.yaml) and `calibration/report.json` when present. Re-runnable:

    .venv/bin/python scripts/summarize_reference.py [EXPERIMENT_DIR]

Percent differences: serving overhead = (raw vllm serve - autotune serve) / raw x 100 (positive: ours slower);
agreement = (autotune bench - vllm bench) / vllm bench x 100.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autotune.bench.schemas import BenchResult, Summary  # noqa: E402
from autotune.bench.result import load_result  # noqa: E402
from autotune.config import read_yaml_mapping  # noqa: E402
from autotune.report import recorded  # noqa: E402

DEFAULT_DIR = Path("experiments/h100-qwen3-vl-4b")
MAIN_STUDY = "h100-qwen3-vl-4b"
TP_STUDY = "qwen3-vl-4b-2gpu"
AGREEMENT_CONCURRENCIES = (16, 128, 256)
COMPARE_CONCURRENCIES = (64, 128, 256)
PROFILE_CONCURRENCIES = (128, 256)
Side = Literal["defaults", "best"]
SIDES: tuple[Side, ...] = ("defaults", "best")
Json = dict[str, Any]

# Configs whose server CPU is profiled: label -> (closed-loop result name pattern, slo_rate result name).
PROFILE_SOURCES: dict[str, tuple[str, str]] = {
    "defaults (autotune serve, step c)": ("compare-defaults-c{c}", "slo-rate-compare-defaults"),
    "best (autotune serve, step c)": ("compare-best-c{c}", "slo-rate-compare-best"),
    "defaults (autotune serve, step a)": ("bench-autotune-serve-c{c}", "slo-rate-autotune-serve-defaults"),
    "defaults (raw vllm serve, step a)": ("bench-vllm-serve-c{c}", "slo-rate-vllm-serve-defaults"),
}


@dataclass(frozen=True)
class Layout:
    """Where the raw files of one experiment folder are."""

    root: Path

    @property
    def measurements(self) -> Path:
        return self.root / "measurements"

    def study(self, name: str) -> Path:
        return self.root / "study" / name

    @property
    def calibration_report(self) -> Path:
        return self.root / "calibration" / "report.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def bench(self, name: str) -> BenchResult:
        return load_result(self.measurements / f"{name}.json.gz")

    def vllm_bench(self, name: str) -> Json:
        return json.loads((self.measurements / f"{name}.json").read_text())


# --- small pure helpers -------------------------------------------------------------------------------------


def pct_diff(value: float, reference: float) -> float:
    """(value - reference) / reference x 100."""
    return (value - reference) / reference * 100


def overhead_pct(ours: float, raw: float) -> float:
    """How much slower ours is than raw, in percent of raw: (raw - ours) / raw x 100."""
    return (raw - ours) / raw * 100


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def gpu_util(summary: Summary) -> float | None:
    return summary.gpu.util_mean if summary.gpu else None


# --- sections of summary.json -------------------------------------------------------------------------------


def hardware(layout: Layout) -> Json:
    env = json.loads((layout.measurements / "env.json").read_text())
    nproc = layout.measurements / "nproc.txt"
    env.pop("date", None)
    return {**env, "nproc": int(nproc.read_text().strip()) if nproc.is_file() else None}


def run_date(layout: Layout) -> str:
    return str(json.loads((layout.measurements / "env.json").read_text())["date"])


def serving_overhead(layout: Layout) -> Json:
    """autotune serve (GPU 0) vs raw vllm serve (GPU 1), same engine args, measured at the same time."""
    per_c: Json = {}
    for c in AGREEMENT_CONCURRENCIES:
        ours = layout.bench(f"bench-autotune-serve-c{c}").summary.throughput_rps
        raw = layout.bench(f"bench-vllm-serve-c{c}").summary.throughput_rps
        per_c[f"c{c}"] = {"autotune_serve_rps": _r(ours), "vllm_serve_rps": _r(raw), "overhead_pct": _r(overhead_pct(ours, raw))}
    ours_slo = layout.bench("slo-rate-autotune-serve-defaults").summary.slo_rate_rps or 0.0
    raw_slo = layout.bench("slo-rate-vllm-serve-defaults").summary.slo_rate_rps or 0.0
    return {
        "definition": "(raw vllm serve - autotune serve) / raw x 100; positive: autotune serve is slower",
        "throughput": per_c,
        "throughput_mean_pct": _r(statistics.mean(v["overhead_pct"] for v in per_c.values())),
        "slo_rate": {
            "autotune_serve_rps": _r(ours_slo),
            "vllm_serve_rps": _r(raw_slo),
            "overhead_pct": _r(overhead_pct(ours_slo, raw_slo)) if raw_slo else None,
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
    """autotune bench vs vllm bench serve against the same autotune serve (issue 4)."""
    out: Json = {"definition": "(autotune bench - vllm bench) / vllm bench x 100"}
    for c in AGREEMENT_CONCURRENCIES:
        ours = layout.bench(f"bench-autotune-serve-c{c}").summary
        procs = vllm_bench_processes(layout, c)
        if not procs:
            out[f"c{c}"] = None
            continue
        vllm_rps = sum(float(p["request_throughput"]) for p in procs)
        row: Json = {
            "autotune_bench_rps": _r(ours.throughput_rps),
            "vllm_bench_rps": _r(vllm_rps),
            "vllm_bench_processes": len(procs),
            "vllm_bench_concurrency_each": [p.get("max_concurrency") for p in procs],
            "throughput_diff_pct": _r(pct_diff(ours.throughput_rps, vllm_rps)),
            "autotune_ttft_p50_ms": _r(ours.ttft_ms.p50),
            "vllm_ttft_p50_ms_each": [_r(float(p["median_ttft_ms"])) for p in procs],
        }
        if len(procs) == 1 and ours.ttft_ms.p50 is not None:
            row["ttft_p50_diff_pct"] = _r(pct_diff(ours.ttft_ms.p50, float(procs[0]["median_ttft_ms"])))
        out[f"c{c}"] = row
    return out


def slo_result(layout: Layout, side: Side) -> BenchResult:
    return layout.bench(f"slo-rate-compare-{side}")


def goodput(layout: Layout) -> Json:
    """Defaults (GPU 0) vs best (GPU 1) at the study objective, measured in one device command."""
    default, best = (slo_result(layout, s).summary for s in SIDES)
    d, b = default.slo_rate_rps or 0.0, best.slo_rate_rps or 0.0
    return {
        "default_goodput_rps": _r(d),
        "best_goodput_rps": _r(b),
        "best_vs_default": _r(b / d, 3) if d else None,
        "gpu_util_mean_default": _r(gpu_util(default), 1),
        "gpu_util_mean_best": _r(gpu_util(best), 1),
    }


def read_trial(trial_dir: Path) -> Json | None:
    path = trial_dir / "trial.json"
    return json.loads(path.read_text()) if path.is_file() else None


def trial_timings(layout: Layout, study: str = MAIN_STUDY) -> Json:
    """Medians over trials that served (a measured window: timings.measure_s set)."""
    served = [
        t["timings"]
        for d in sorted((layout.study(study) / "trials").iterdir())
        if (t := read_trial(d)) and t.get("timings", {}).get("measure_s") is not None
    ]

    def median(key: str) -> float | None:
        return _r(statistics.median(t[key] for t in served), 1) if served else None

    return {
        "median_trial_s": median("total_s"),
        "median_trial_startup_s": median("startup_s"),
        "median_trial_measure_s": median("measure_s"),
        "trials_served": len(served),
    }


def trial_counts(layout: Layout, study: str) -> Json:
    """Trials by state in trials.csv, plus trial folders it does not list (killed before recording)."""
    frame = pd.read_csv(layout.study(study) / "trials.csv")
    counts: Json = {str(k): int(v) for k, v in frame["state"].value_counts().items()}
    listed = {int(n) for n in frame["number"]}
    unlisted = sorted(int(d.name) for d in (layout.study(study) / "trials").iterdir() if int(d.name) not in listed)
    if unlisted:
        counts["not_in_trials_csv"] = unlisted
    return counts


_ROOT_CAUSE = re.compile(r"ERROR .*?\] (\w*(?:Error|Exception)\b: .*)$")


def root_cause(server_log: Path) -> str | None:
    """The last `XxxError: message` line vLLM logged at ERROR level, other than the generic start failure."""
    if not recorded.exists(server_log):
        return None
    causes = [
        m.group(1)
        for line in recorded.read_text(server_log).splitlines()
        if (m := _ROOT_CAUSE.search(line)) and "Engine core initialization failed" not in m.group(1)
    ]
    return causes[-1] if causes else None


def trials_frame(layout: Layout, study: str) -> pd.DataFrame:
    """One row per trial folder: state, objective, latency, GPU, timings, reason or changed params."""
    csv = pd.read_csv(layout.study(study) / "trials.csv").set_index("number")
    param_cols = [c for c in csv.columns if c.startswith("param_")]
    rows = []
    for d in sorted((layout.study(study) / "trials").iterdir(), key=lambda p: int(p.name)):
        number = int(d.name)
        trial = read_trial(d) or {}
        row = csv.loc[number] if number in csv.index else None
        timings = trial.get("timings") or {}
        metric = (lambda name: None if row is None or pd.isna(row.get(name)) else float(row[name]))  # noqa: E731
        if row is None:
            state, reason = "not recorded", unrecorded_reason(d)
        else:
            state, reason = str(row["state"]), None if pd.isna(row["reason"]) else str(row["reason"])
        if reason and row is not None:
            reason = root_cause(d / "server.log") or reason
        params = {} if row is None else {c.removeprefix("param_"): _param(row[c]) for c in param_cols if not pd.isna(row[c])}
        rows.append(
            {
                "study": study,
                "number": number,
                "state": state,
                "config_kind": None if row is None else row["config_kind"],
                "slo_rate_rps": metric("metric_slo_rate_rps"),
                "throughput_rps": metric("metric_throughput_rps"),
                "ttft_ms_p99": metric("metric_ttft_ms_p99"),
                "tpot_ms_p99": metric("metric_tpot_ms_p99"),
                "gpu_util_mean": metric("metric_gpu_util_mean"),
                "startup_s": timings.get("startup_s"),
                "measure_s": timings.get("measure_s"),
                "total_s": timings.get("total_s"),
                "server_cores": len(trial.get("server_cpus") or []) or None,
                "reason_or_params": reason or ", ".join(f"{k}={v}" for k, v in params.items()) or "(vLLM defaults)",
            }
        )
    frame = pd.DataFrame(rows)
    frame["server_cores"] = frame["server_cores"].astype("Int64")
    return frame


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def unrecorded_reason(trial_dir: Path) -> str:
    """A trial folder without trial.json: its non-default parallelism and the server log's last line."""
    config = trial_dir / "config.yaml"
    engine = read_yaml_mapping(config).get("engine_config", {}) if config.is_file() else {}
    log = trial_dir / "server.log"
    last = recorded.read_text(log).strip().splitlines()[-1] if recorded.exists(log) else "(no server.log)"
    return f"no trial.json (killed before recording); tensor_parallel_size={engine.get('tensor_parallel_size')}; log ends: {last}"


def calibration_errors(layout: Layout) -> tuple[Json | None, str | None]:
    return report_errors(layout.calibration_report, layout.root)


def report_errors(path: Path, root: Path) -> tuple[Json | None, str | None]:
    """The median errors of an `autotune calibrate` report (JSON); (None, why) when it is absent."""
    if not path.is_file():
        return None, f"{path.relative_to(root)} absent when this summary was made"
    report = json.loads(path.read_text())
    return {
        "held_out": report.get("median_abs_error_held_out"),
        "in_sample": report.get("median_abs_error_in_sample"),
        "before_fit": report.get("median_abs_error_before"),
        "held_out_method": report.get("held_out_method"),
        "points": report.get("points"),
    }, None


def _slo_run(source: str, result: BenchResult, server: str) -> Json:
    s = result.summary
    cpus = s.server_cpu.affinity if s.server_cpu else None
    return {
        "source": source,
        "server": server,
        "slo_rate_rps": _r(s.slo_rate_rps),
        "capacity_probe_rps": _r(result.sweep[0].throughput_rps) if result.sweep else None,
        "ttft_ms_p99": _r(s.ttft_ms.p99, 1),
        "tpot_ms_p99": _r(s.tpot_ms.p99, 1),
        "gpu_util_mean": _r(gpu_util(s), 1),
        "gpus": len(s.gpu.devices) if s.gpu else None,
        "server_affinity_cpus": len(cpus) if cpus else None,
        "workload": result.workload.get("name"),
        "seed": result.load.seed,
    }


def defaults_slo_rate_runs(layout: Layout) -> list[Json]:
    """Every measurement of the vLLM defaults' slo_rate in the files: its spread."""
    runs = [
        _slo_run("measurements/slo-rate-autotune-serve-defaults", layout.bench("slo-rate-autotune-serve-defaults"), "autotune serve, step a"),
        _slo_run("measurements/slo-rate-vllm-serve-defaults", layout.bench("slo-rate-vllm-serve-defaults"), "raw vllm serve, step a"),
        _slo_run("measurements/slo-rate-compare-defaults", layout.bench("slo-rate-compare-defaults"), "autotune serve, step c"),
    ]
    tp_trial0 = layout.study(TP_STUDY) / "trials" / "0" / "result.json.gz"
    if not tp_trial0.is_file():
        tp_trial0 = tp_trial0.with_suffix("")  # uncompressed
    if tp_trial0.is_file():
        runs.append(_slo_run(f"study/{TP_STUDY}/trials/0", load_result(tp_trial0), "autotune serve, 2-GPU study trial 0 (TP 1)"))
    return runs


def profile_point(summary: Summary) -> Json | None:
    cpu = summary.server_cpu
    if cpu is None:
        return None
    api, core = cpu.roles.get("api_server"), cpu.roles.get("engine_core")
    return {
        "api_server_cores_mean": _r(api.cores_mean) if api else None,
        "api_server_busiest_process_cores": _r(api.busiest_process_cores_mean) if api else None,
        "api_server_processes": api.processes if api else None,
        "engine_core_cores_mean": _r(core.cores_mean) if core else None,
        "engine_core_busiest_process_cores": _r(core.busiest_process_cores_mean) if core else None,
        "total_cores_mean": _r(cpu.total_cores_mean),
        "gpu_util_mean": _r(gpu_util(summary), 1),
        "root_affinity_cpus": len(cpu.affinity) if cpu.affinity else None,
    }


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


def best_trial(layout: Layout) -> int | None:
    path = layout.study(MAIN_STUDY) / "best.yaml"
    if not path.is_file():
        return None
    return read_yaml_mapping(path).get("provenance", {}).get("trial_number")


def build_summary(layout: Layout) -> Json:
    calibration, calibration_note = calibration_errors(layout)
    return {
        "kind": "reference-summary",
        "made_by": "scripts/summarize_reference.py (computed from the raw files of this folder)",
        "simulated_result_files": simulated_sources(layout),
        "hardware": hardware(layout),
        "date": run_date(layout),
        "slo": slo_result(layout, "defaults").slo.model_dump(exclude_none=True),
        **goodput(layout),
        "best_trial": best_trial(layout),
        **trial_timings(layout),
        "serving_overhead_pct": serving_overhead(layout),
        "simulator_median_abs_error_pct": calibration,
        "simulator_note": calibration_note,
        "agreement": agreement(layout),
        "trials": {study: trial_counts(layout, study) for study in (MAIN_STUDY, TP_STUDY) if layout.study(study).is_dir()},
        "defaults_slo_rate_runs": defaults_slo_rate_runs(layout),
        "profile": profile(layout),
    }


# --- tables.md ----------------------------------------------------------------------------------------------


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
        f"# Reference runs {summary['date'][:10]}: {len(summary['hardware']['gpus'])}x {summary['hardware']['gpus'][0]}, "
        f"{summary['hardware']['cpu_count']} CPUs, vLLM {summary['hardware']['versions'].get('vllm')}",
        "Computed by `scripts/summarize_reference.py` from the raw files; GPU measurements (no simulated results: "
        f"{summary['simulated_result_files'] or 'none'}). SLO: {summary['slo']}.",
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
    _save(fig, target)


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
    _save(fig, target)


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
    _save(fig, target)


def _save(fig: Any, target: Path) -> None:
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


def plot_pareto(trials: pd.DataFrame, summary: Json, target: Path, study: str = MAIN_STUDY) -> None:
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
    _save(fig, target)


def plot_trial_times(trials: pd.DataFrame, target: Path) -> None:
    frame = trials.copy()
    frame["label"] = [f"{s.split('-')[-1]}#{n}\n{st}" for s, n, st in zip(frame["study"], frame["number"], frame["state"], strict=True)]
    startup = frame["startup_s"].fillna(0).astype(float).to_numpy()
    measure = frame["measure_s"].fillna(0).astype(float).to_numpy()
    other = (frame["total_s"].fillna(0).astype(float) - frame["startup_s"].fillna(0) - frame["measure_s"].fillna(0)).clip(lower=0)
    stacked_bars(frame["label"], {"startup": startup, "measure": measure, "warm-up + stop": other.to_numpy()}, target,
                 figsize=(11, 4.2), ylabel="s", tick_size=7,
                 title="Trial time: startup vs measure (trials without timings were killed before recording)")


# --- entry point --------------------------------------------------------------------------------------------


def all_trials(layout: Layout) -> pd.DataFrame:
    return pd.concat(
        [trials_frame(layout, s) for s in (MAIN_STUDY, TP_STUDY) if layout.study(s).is_dir()], ignore_index=True
    )


def summary_name(root: Path) -> str:
    """The 2026-11-25 run's files lie in the top folder, whose summary.json is issue 6's headline
    (scripts/summarize_headline.py): that run's summary is summary-2026-11-25.json."""
    return "summary-2026-11-25.json" if root.resolve() == DEFAULT_DIR.resolve() else "summary.json"


def run(root: Path) -> Json:
    layout = Layout(root)
    summary = build_summary(layout)
    compare = compare_frame(layout)
    trials = all_trials(layout)
    (root / summary_name(root)).write_text(json.dumps(summary, indent=1) + "\n")
    (root / "tables.md").write_text(render_tables(summary, compare, trials))
    layout.plots.mkdir(exist_ok=True)
    plot_compare(compare, layout.plots / "throughput_latency_vs_concurrency.png")
    plot_gpu_util(layout, layout.plots / "gpu_util_over_time.png")
    plot_server_cpu(summary, layout.plots / "server_cpu_by_role.png")
    plot_pareto(trials, summary, layout.plots / "pareto_front.png")
    plot_trial_times(trials, layout.plots / "trial_time_breakdown.png")
    return summary


def main(argv: list[str], run_folder: Any = None, default_dir: Path = DEFAULT_DIR) -> None:
    """`python SCRIPT [DIR]`: summarize DIR (default `default_dir`) with `run_folder` (default: this script's run)."""
    root = Path(argv[1]) if len(argv) > 1 else default_dir
    summary = (run_folder or run)(root)
    print(f"wrote {root / summary_name(root)}, {root / 'tables.md'}, {root / 'plots'}/")
    print(f"slo_rate defaults {summary['default_goodput_rps']} vs best {summary['best_goodput_rps']} "
          f"(x{summary['best_vs_default']}); median trial {summary['median_trial_s']} s")


if __name__ == "__main__":
    main(sys.argv)
