"""Tuning: trial runner (one EngineConfig -> served, measured, stopped), Optuna study, best config.

- `study`: the front door (start_study: checks, then create/resume; run_tuning: the loop); `settings`: TuneSettings,
  TuneOutcome; `session`: open/reopen a study, trial 0 = vLLM defaults; `samplers`: per-trial seeded samplers;
  `budget`: trials counted against the budget; `finalize`: best.yaml, trials.csv; `mlflow_sync`
- `objective`: the Optuna objective (suggest, dedup, outcomes -> COMPLETE / FAIL / PRUNED); `claims`: several workers
  drawing one config; `record`: what a trial records (attributes, values, constraints, MLflow run)
- `trial`: TrialRunner -> TrialResult (`trial_result`); `feasibility`, `gpu_wait`, `measure`, `server_process`
- `metrics`: flat figures of a benchmark summary (objective, constraints, MLflow, tables)
- `storage`, `recovery`, `stops`: Optuna RDB storage with heartbeats; failing trials of dead workers; study stops
- `best`: the winner; `report`: tables, CSV, live view; `preflight`: checks
- `attrs`: the trial attributes everything is built from; `redact`: secrets out of logs
Kept import-light: nothing heavy (optuna, mlflow) is imported here.
"""
