"""The headline of an experiment folder (experiments/h100-qwen3-vl-4b/summary.json) over its dated runs.

Each figure is computed from the raw files it names (never copied from another summary):

- goodput, GPU utilization and trial cost: the run with a confirmation of the best against vLLM's defaults
  (`<run>/study/<study>/confirmation.json`, written by `autotune tune --confirm`; every measurement's
  `trials/N/result.json.gz`; the run's `trials.csv`). The latest such run wins, or `run`;
- the serving layer's overhead: the reference run whose files lie in the top folder (autotune serve and raw vllm serve
  side by side: `measurements/bench-*-c*.json.gz`, `slo-rate-*-defaults.json.gz`);
- the simulated engine's error: the report of the fit that made the shipped profile, `<run>/calibration/refit-this-run.json`
  of the latest run that has one, else `calibration/report.json` (both written by `autotune calibrate`);
- `sustained`: the 120 s sustained SLO rate of vLLM's defaults and the best config, the tuner's objective on the same
  server and `vllm bench serve` at that rate (each config from the latest run folder under the sustained root that
  measured it, or from `sustained_run`; read by `autotune.report.sustained`), their ratio only when one run (one
  lease, one machine) measured both, and beside it, labeled, the ratio of two runs on the same GPU model.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from autotune.errors import AutotuneError
from autotune.report import recorded
from autotune.report.runs.folder import (
    Json,
    Layout,
    report_errors,
    rounded,
    run_date,
    trial_result,
)
from autotune.report.runs.reference import serving_overhead
from autotune.report.runs.study_run import confirmed_trials, slo_rate_censored
from autotune.report.sustained import summarize_sustained

SUSTAINED_FIELDS = ("rate_rps", "failed_rps", "vllm_bench_rate_rps", "vllm_bench_confirmed_rps", "objective_rps",
                    "objective_vs_sustained", "sm_active_pct", "nvml_util_pct", "note")


def _measured(run: Path, name: str) -> bool:
    return (run / name).is_dir() and recorded.exists(run / name / "sustained.json")


def sustained(run: Path | None, sustained_root: Path) -> Json | None:
    """The sustained figures of both configs (None when no sustained run is recorded).

    Each config comes from the latest run that measured it (or from `run`), with that run's folder and GPU.
    `best_vs_defaults` is their ratio when one run measured both (one machine, one lease); when two runs on the same
    GPU model did, their ratio is `best_vs_defaults_across_runs` instead: the same vLLM defaults sustained 34.6 req/s on
    an H200 and 45.9 on an H100 of another lease, so machines apart move a rate by more than the 5% the objective
    resolves. A rate measured on one GPU model is never compared with one measured on another."""
    runs = sorted(p for p in sustained_root.glob("*") if p.is_dir()) if run is None else [run]
    if not runs:
        return None
    slo = {"ttft_ms": 2000.0, "tpot_ms": 50.0}
    out: Json = {"window_s": None}
    gpus: dict[str, object] = {}
    for name in ("defaults", "best"):
        source = next((r for r in reversed(runs) if _measured(r, name)), runs[-1])
        summary = summarize_sustained(source, [name], slo)
        config = summary.configs[name]
        figures: Json = {k: getattr(config, k) for k in SUSTAINED_FIELDS}
        figures["vllm_bench_meets_slo"] = None if config.vllm_bench is None else config.vllm_bench.meets_slo
        figures["vllm_bench_processes"] = None if config.vllm_bench is None else config.vllm_bench.processes
        figures["source"] = str(source)
        figures["gpus"] = gpus[name] = summary.hardware.get("gpus")
        out[name] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures.items()}
        out["window_s"] = out["window_s"] or summary.window_s
    same_gpu = gpus["defaults"] is not None and _gpu_models(gpus["defaults"]) == _gpu_models(gpus["best"])
    same_run = same_gpu and out["defaults"]["source"] == out["best"]["source"]
    rates = (out["best"]["rate_rps"], out["defaults"]["rate_rps"])
    ratio = round(rates[0] / rates[1], 3) if same_gpu and all(rates) else None
    out["same_gpu"] = same_gpu
    out["same_run"] = same_run
    out["best_vs_defaults"] = ratio if same_run else None
    out["best_vs_defaults_across_runs"] = None if same_run else ratio
    return out


def _gpu_models(gpus: object) -> list[str]:
    """The models of a run's GPUs ("NVIDIA H200, 143771 MiB, driver" -> "NVIDIA H200")."""
    return [str(gpu).split(",")[0].strip() for gpu in gpus] if isinstance(gpus, list) else []


def confirmed_runs(root: Path, studies: Sequence[str]) -> list[tuple[Path, Path]]:
    """(run folder, study folder) of every dated run whose study (one of `studies`) holds a confirmation, oldest first."""
    found = []
    for run in sorted(p for p in root.glob("20*") if p.is_dir()):
        for name in studies:
            study = run / "study" / name
            if (study / "confirmation.json").is_file():
                found.append((run, study))
    return found


def measurement(study_dir: Path, number: int) -> Json:
    """One measurement of a confirmed config, from its result file."""
    result = trial_result(study_dir, number)
    if result is None:
        raise AutotuneError(f"{study_dir}/trials/{number}: no result file")
    summary = result.summary
    return {
        "trial": number,
        "slo_rate_rps": rounded(summary.slo_rate_rps),
        "lower_bound": bool(slo_rate_censored(result)),
        "gpu_util_mean": rounded(summary.gpu.util_mean, 1) if summary.gpu and summary.gpu.util_mean is not None else None,
        "ttft_ms_p99": rounded(summary.ttft_ms.p99, 1),
        "tpot_ms_p99": rounded(summary.tpot_ms.p99, 2),
    }


def confirmed(study_dir: Path) -> Json:
    """Best and defaults, every measurement of each, from the trials the confirmation names."""
    out: Json = {}
    for label, numbers in (confirmed_trials(study_dir) or {}).items():
        rows = [measurement(study_dir, n) for n in numbers]
        values = [r["slo_rate_rps"] for r in rows]
        utils = [r["gpu_util_mean"] for r in rows if r["gpu_util_mean"] is not None]
        out[label] = {
            "measurements": rows,
            "slo_rate_mean_rps": rounded(statistics.fmean(values)),
            "slo_rate_range_rps": [min(values), max(values)],
            "any_lower_bound": any(r["lower_bound"] for r in rows),
            "gpu_util_mean_pct": rounded(statistics.fmean(utils), 1) if utils else None,
        }
    return out


def trial_cost(study_dir: Path) -> Json:
    """Median wall time of the served trials (duplicates reuse a value: not served), and its parts."""
    trials = pd.read_csv(study_dir / "trials.csv")
    served = trials[(trials["state"] == "COMPLETE") & trials["duplicate_of"].isna()]
    parts = {"startup_s": "timing_startup_s", "warmup_s": "timing_warmup_s", "measure_s": "timing_measure_s",
             "stop_s": "timing_stop_s"}
    return {
        "median_trial_s": rounded(float(served["timing_total_s"].median()), 1),
        "median_parts_s": {k: rounded(float(served[c].median()), 1) for k, c in parts.items()},
        "trials_served": len(served),
        "fastest_trial_s": rounded(float(served["timing_total_s"].min()), 1),
    }


def simulator_errors(root: Path) -> tuple[Json | None, str | None, str]:
    """(errors, note, report path) of the latest fit: a run's refit report, else the top folder's."""
    refits = sorted(root.glob("20*/calibration/refit-this-run.json"))
    path = refits[-1] if refits else Layout(root).calibration_report
    errors, note = report_errors(path, root)
    return errors, note, str(path.relative_to(root))


def build_headline(root: Path, run: Path | None, studies: Sequence[str], sustained_root: Path,
                   sustained_run: Path | None = None) -> Json:
    """The headline of the experiment folder `root` (see the module's docstring for where each figure comes from)."""
    runs = confirmed_runs(root, studies)
    if run is not None:
        runs = [r for r in runs if r[0].resolve() == run.resolve()]
    if not runs:
        raise AutotuneError(f"{run or root}: no run with a confirmation.json (autotune tune --confirm N)")
    run_dir, study_dir = runs[-1]
    pair = confirmed(study_dir)
    defaults, best = pair["defaults"], pair["best"]
    layout = Layout(root)
    calibration, calibration_note, calibration_source = simulator_errors(root)
    env = json.loads((run_dir / "measurements" / "env.json").read_text())
    return {
        "kind": "reference-headline",
        "made_by": "autotune summarize headline (computed from the raw files named in `sources`)",
        "sources": {
            "goodput_gpu_util_trial_cost": str(study_dir.relative_to(root)),
            "serving_overhead": f"measurements/ ({run_date(layout)[:10]}, autotune serve and raw vllm serve side by side)",
            "simulator": calibration_source,
        },
        "hardware": {k: env.get(k) for k in ("gpus", "cpu_count", "cpu_model", "versions")},
        "run": run_dir.name,
        "default_goodput_rps": defaults["slo_rate_mean_rps"],
        "best_goodput_rps": best["slo_rate_mean_rps"],
        "best_goodput_is_lower_bound": best["any_lower_bound"],
        "best_vs_default": rounded(best["slo_rate_mean_rps"] / defaults["slo_rate_mean_rps"], 3),
        "best_above_defaults_in_every_measurement": best["slo_rate_range_rps"][0] > defaults["slo_rate_range_rps"][1],
        "gpu_util_mean_best": best["gpu_util_mean_pct"],
        "gpu_util_mean_default": defaults["gpu_util_mean_pct"],
        "confirmation": pair,
        **trial_cost(study_dir),
        "serving_overhead_pct": serving_overhead(layout),
        "simulator_median_abs_error_pct": calibration,
        "simulator_note": calibration_note,
        "sustained": sustained(sustained_run, sustained_root),
    }
