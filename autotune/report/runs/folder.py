"""Reading a recorded GPU run folder: where its files are, and the figures every run summary takes from them.

A run folder holds `measurements/` (env.json, autotune bench results `*.json.gz`, vllm bench JSON) and
`study/<name>/` (trials.csv, trials/N/{trial.json,config.yaml,result.json.gz,server.log}, best.yaml); every file is
read through `autotune.report.recorded`, so each stored form (gzip, xz, tar) reads as the original.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autotune.bench.result import load_result
from autotune.bench.schemas import BenchResult, Summary
from autotune.config import read_yaml_mapping
from autotune.report import recorded
from autotune.tune.failures import root_cause

Json = dict[str, Any]


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


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def gpu_util(summary: Summary) -> float | None:
    return summary.gpu.util_mean if summary.gpu else None


# --- the run's machine and date -----------------------------------------------------------------------------


def hardware(layout: Layout) -> Json:
    env = json.loads((layout.measurements / "env.json").read_text())
    nproc = layout.measurements / "nproc.txt"
    env.pop("date", None)
    return {**env, "nproc": int(nproc.read_text().strip()) if nproc.is_file() else None}


def run_date(layout: Layout) -> str:
    return str(json.loads((layout.measurements / "env.json").read_text())["date"])


# --- a study's trials ---------------------------------------------------------------------------------------


def read_trial(trial_dir: Path) -> Json | None:
    path = trial_dir / "trial.json"
    return json.loads(path.read_text()) if path.is_file() else None


def trial_result(study_dir: Path, number: int) -> BenchResult | None:
    for name in ("result.json.gz", "result.json"):
        path = study_dir / "trials" / str(number) / name
        if path.is_file():
            return load_result(path)
    return None


def best_trial_number(study_dir: Path) -> int | None:
    path = study_dir / "best.yaml"
    return read_yaml_mapping(path).get("provenance", {}).get("trial_number") if path.is_file() else None


def trial_timings(layout: Layout, study: str) -> Json:
    """Medians over trials that served (a measured window: timings.measure_s set)."""
    served = [
        t["timings"]
        for d in sorted((layout.study(study) / "trials").iterdir())
        if (t := read_trial(d)) and t.get("timings", {}).get("measure_s") is not None
    ]

    def median(key: str) -> float | None:
        return rounded(statistics.median(t[key] for t in served), 1) if served else None

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


def trials_table(layout: Layout, study: str) -> pd.DataFrame:
    """One row per trial folder (trials.csv joined with each trial.json): state, objective, latency, GPU, timings,
    reason or changed params."""
    csv = pd.read_csv(layout.study(study) / "trials.csv").set_index("number")
    param_cols = [c for c in csv.columns if c.startswith("param_")]
    rows = []
    for d in sorted((layout.study(study) / "trials").iterdir(), key=lambda p: int(p.name)):
        number = int(d.name)
        trial = read_trial(d) or {}
        row = csv.loc[number] if number in csv.index else None
        timings = trial.get("timings") or {}
        if row is None:
            state, reason = "not recorded", unrecorded_reason(d)
        else:
            state, reason = str(row["state"]), None if pd.isna(row["reason"]) else str(row["reason"])
        if reason and row is not None:
            reason = _logged_cause(d / "server.log") or reason
        params = {} if row is None else {c.removeprefix("param_"): _param(row[c]) for c in param_cols if not pd.isna(row[c])}
        rows.append(
            {
                "study": study,
                "number": number,
                "state": state,
                "config_kind": None if row is None else row["config_kind"],
                "slo_rate_rps": _metric(row, "metric_slo_rate_rps"),
                "throughput_rps": _metric(row, "metric_throughput_rps"),
                "ttft_ms_p99": _metric(row, "metric_ttft_ms_p99"),
                "tpot_ms_p99": _metric(row, "metric_tpot_ms_p99"),
                "gpu_util_mean": _metric(row, "metric_gpu_util_mean"),
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


def _metric(row: pd.Series | None, name: str) -> float | None:
    return None if row is None or pd.isna(row.get(name)) else float(row[name])


def _logged_cause(server_log: Path) -> str | None:
    """The root cause in vLLM's log (`root_cause`: never a line logged below ERROR)."""
    if not recorded.exists(server_log):
        return None
    return root_cause(recorded.read_text(server_log))


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def unrecorded_reason(trial_dir: Path) -> str:
    """A trial folder without trial.json: its non-default parallelism and the server log's last line."""
    config = trial_dir / "config.yaml"
    engine = read_yaml_mapping(config).get("engine_config", {}) if config.is_file() else {}
    log = trial_dir / "server.log"
    last = recorded.read_text(log).strip().splitlines()[-1] if recorded.exists(log) else "(no server.log)"
    return f"no trial.json (killed before recording); tensor_parallel_size={engine.get('tensor_parallel_size')}; log ends: {last}"


# --- calibration and server CPU -----------------------------------------------------------------------------


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


def profile_point(summary: Summary) -> Json | None:
    """Server CPU by role (cores, the busiest process of each role) in one measured window."""
    cpu = summary.server_cpu
    if cpu is None:
        return None
    api, core = cpu.roles.get("api_server"), cpu.roles.get("engine_core")
    return {
        "api_server_cores_mean": rounded(api.cores_mean) if api else None,
        "api_server_busiest_process_cores": rounded(api.busiest_process_cores_mean) if api else None,
        "api_server_processes": api.processes if api else None,
        "engine_core_cores_mean": rounded(core.cores_mean) if core else None,
        "engine_core_busiest_process_cores": rounded(core.busiest_process_cores_mean) if core else None,
        "total_cores_mean": rounded(cpu.total_cores_mean),
        "gpu_util_mean": rounded(gpu_util(summary), 1),
        "root_affinity_cpus": len(cpu.affinity) if cpu.affinity else None,
    }
