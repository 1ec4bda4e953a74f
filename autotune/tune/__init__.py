"""Tuning: trial runner (one EngineConfig -> served, measured, stopped), Optuna study, best config.

- `metrics`: flat figures of a benchmark summary (objective, constraints, MLflow, tables)
- `trial`: TrialRunner -> TrialResult (feasibility, serve, warm-up, measure, stop, GPU release)
- `objective`: the Optuna objective (suggest, dedup, outcomes -> COMPLETE / FAIL / PRUNED)
- `study`: create/resume, trial 0 = vLLM defaults, run, finalize, sync-mlflow
- `storage`, `recovery`: Optuna RDB storage with heartbeats; failing trials of dead workers
- `best`: the winner -> best.yaml; `report`: tables, CSV, plots, live view; `preflight`: checks
- `attrs`: the trial attributes everything is built from; `redact`: secrets out of logs
Kept import-light: nothing heavy (optuna, mlflow) is imported here.
"""
