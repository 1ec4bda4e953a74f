"""Issue 6's headline for experiments/h100-qwen3-vl-4b/: one summary.json over the dated runs, from their raw files.

Each figure is computed here from the raw files it names (never copied from another summary):

- goodput, GPU utilization and trial cost: the run with a confirmation of the best against vLLM's defaults
  (`<run>/study/<study>/confirmation.json`, written by `autotune tune --confirm`; every measurement's
  `trials/N/result.json.gz`; the run's `trials.csv`). The latest such run wins, or `--run`;
- the serving layer's overhead: the side-by-side runs of autotune serve and raw vllm serve of 2026-11-25
  (`measurements/bench-*-c*.json.gz`, `slo-rate-*-defaults.json.gz` in the top folder);
- the simulated engine's error: the report of the fit that made the shipped profile, `<run>/calibration/refit-this-run.json`
  of the latest run that has one, else `calibration/report.json` (both written by `autotune calibrate`);
- `sustained`: the 120 s sustained SLO rate of vLLM's defaults and the best config, the tuner's objective on the same
  server and `vllm bench serve` at that rate (`--sustained RUN`, default the latest `experiments/h200-sustained/*/`;
  read by `autotune.report.sustained`).

    .venv/bin/python scripts/summarize_headline.py [ROOT] [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import summarize_reference as ref  # noqa: E402
import summarize_study_run as study_run  # noqa: E402

DEFAULT_ROOT = Path("experiments/h100-qwen3-vl-4b")
SUSTAINED_ROOT = Path("experiments/h200-sustained")
SUSTAINED_FIELDS = ("rate_rps", "failed_rps", "vllm_bench_rate_rps", "objective_rps", "objective_vs_sustained",
                    "sm_active_pct", "nvml_util_pct", "note")


def sustained(run: Path | None) -> Json | None:
    """The sustained figures of both configs (None when no sustained run is recorded)."""
    from autotune.report.sustained import summarize_sustained

    runs = sorted(p for p in SUSTAINED_ROOT.glob("*") if p.is_dir()) if run is None else [run]
    if not runs:
        return None
    summary = summarize_sustained(runs[-1], ["defaults", "best"], {"ttft_ms": 2000.0, "tpot_ms": 50.0})
    out: Json = {"source": summary.source, "window_s": summary.window_s, "gpus": summary.hardware.get("gpus")}
    for name, config in summary.configs.items():
        figures = {k: getattr(config, k) for k in SUSTAINED_FIELDS}
        figures["vllm_bench_meets_slo"] = None if config.vllm_bench is None else config.vllm_bench.meets_slo
        figures["vllm_bench_processes"] = None if config.vllm_bench is None else config.vllm_bench.processes
        out[name] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures.items()}
    return out
Json = dict[str, Any]


def confirmed_runs(root: Path) -> list[tuple[Path, Path]]:
    """(run folder, study folder) of every dated run whose main study holds a confirmation, oldest first."""
    found = []
    for run in sorted(p for p in root.glob("20*") if p.is_dir()):
        for name in study_run.MAIN_STUDIES:
            study = run / "study" / name
            if (study / "confirmation.json").is_file():
                found.append((run, study))
    return found


def measurement(study_dir: Path, number: int) -> Json:
    """One measurement of a confirmed config, from its result file."""
    result = study_run.trial_result(study_dir, number)
    if result is None:
        raise SystemExit(f"{study_dir}/trials/{number}: no result file")
    summary = result.summary
    return {
        "trial": number,
        "slo_rate_rps": ref._r(summary.slo_rate_rps),
        "lower_bound": bool(study_run.slo_rate_censored(result)),
        "gpu_util_mean": ref._r(summary.gpu.util_mean, 1) if summary.gpu and summary.gpu.util_mean is not None else None,
        "ttft_ms_p99": ref._r(summary.ttft_ms.p99, 1),
        "tpot_ms_p99": ref._r(summary.tpot_ms.p99, 2),
    }


def confirmed(study_dir: Path) -> Json:
    """Best and defaults, every measurement of each, from the trials the confirmation names."""
    out: Json = {}
    for label, numbers in (study_run.confirmed_trials(study_dir) or {}).items():
        rows = [measurement(study_dir, n) for n in numbers]
        values = [r["slo_rate_rps"] for r in rows]
        utils = [r["gpu_util_mean"] for r in rows if r["gpu_util_mean"] is not None]
        out[label] = {
            "measurements": rows,
            "slo_rate_mean_rps": ref._r(statistics.fmean(values)),
            "slo_rate_range_rps": [min(values), max(values)],
            "any_lower_bound": any(r["lower_bound"] for r in rows),
            "gpu_util_mean_pct": ref._r(statistics.fmean(utils), 1) if utils else None,
        }
    return out


def trial_cost(study_dir: Path) -> Json:
    """Median wall time of the served trials (duplicates reuse a value: not served), and its parts."""
    trials = pd.read_csv(study_dir / "trials.csv")
    served = trials[(trials["state"] == "COMPLETE") & trials["duplicate_of"].isna()]
    parts = {"startup_s": "timing_startup_s", "warmup_s": "timing_warmup_s", "measure_s": "timing_measure_s",
             "stop_s": "timing_stop_s"}
    return {
        "median_trial_s": ref._r(float(served["timing_total_s"].median()), 1),
        "median_parts_s": {k: ref._r(float(served[c].median()), 1) for k, c in parts.items()},
        "trials_served": int(len(served)),
        "fastest_trial_s": ref._r(float(served["timing_total_s"].min()), 1),
    }


def simulator_errors(root: Path) -> tuple[Json | None, str | None, str]:
    """(errors, note, report path) of the latest fit: a run's refit report, else the top folder's."""
    refits = sorted(root.glob("20*/calibration/refit-this-run.json"))
    path = refits[-1] if refits else ref.Layout(root).calibration_report
    errors, note = ref.report_errors(path, root)
    return errors, note, str(path.relative_to(root))


def build(root: Path, run: Path | None, sustained_run: Path | None = None) -> Json:
    runs = confirmed_runs(root)
    if run is not None:
        runs = [r for r in runs if r[0].resolve() == run.resolve()]
    if not runs:
        raise SystemExit(f"{run or root}: no run with a confirmation.json (autotune tune --confirm N)")
    run_dir, study_dir = runs[-1]
    pair = confirmed(study_dir)
    defaults, best = pair["defaults"], pair["best"]
    layout = ref.Layout(root)
    calibration, calibration_note, calibration_source = simulator_errors(root)
    env = json.loads((run_dir / "measurements" / "env.json").read_text())
    return {
        "kind": "reference-headline",
        "made_by": "scripts/summarize_headline.py (computed from the raw files named in `sources`)",
        "sources": {
            "goodput_gpu_util_trial_cost": str(study_dir.relative_to(root)),
            "serving_overhead": "measurements/ (2026-11-25, autotune serve and raw vllm serve side by side)",
            "simulator": calibration_source,
        },
        "hardware": {k: env.get(k) for k in ("gpus", "cpu_count", "cpu_model", "versions")},
        "run": run_dir.name,
        "default_goodput_rps": defaults["slo_rate_mean_rps"],
        "best_goodput_rps": best["slo_rate_mean_rps"],
        "best_goodput_is_lower_bound": best["any_lower_bound"],
        "best_vs_default": ref._r(best["slo_rate_mean_rps"] / defaults["slo_rate_mean_rps"], 3),
        "best_above_defaults_in_every_measurement": best["slo_rate_range_rps"][0] > defaults["slo_rate_range_rps"][1],
        "gpu_util_mean_best": best["gpu_util_mean_pct"],
        "gpu_util_mean_default": defaults["gpu_util_mean_pct"],
        "confirmation": pair,
        **trial_cost(study_dir),
        "serving_overhead_pct": ref.serving_overhead(layout),
        "simulator_median_abs_error_pct": calibration,
        "simulator_note": calibration_note,
        "sustained": sustained(sustained_run),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--run", type=Path, help="the dated run folder to take goodput from (default: the latest confirmed)")
    parser.add_argument("--sustained", type=Path, help="the sustained run folder (default: the latest under experiments/h200-sustained)")
    args = parser.parse_args(argv)
    headline = build(args.root, args.run, args.sustained)
    (args.root / "summary.json").write_text(json.dumps(headline, indent=1) + "\n")
    print(f"wrote {args.root / 'summary.json'}: defaults {headline['default_goodput_rps']} vs best "
          f"{'>= ' if headline['best_goodput_is_lower_bound'] else ''}{headline['best_goodput_rps']} req/s "
          f"(x{headline['best_vs_default']}), GPU util best {headline['gpu_util_mean_best']}%, "
          f"median trial {headline['median_trial_s']} s")


if __name__ == "__main__":
    main(sys.argv[1:])
