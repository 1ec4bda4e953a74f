"""Tuning: trial runner (one EngineConfig -> served, measured, stopped), Optuna study, best config.

Modules: `metrics` (flat figures of a summary), `trial` (TrialRunner -> TrialResult), `objective`
(an Optuna objective over a SearchSpace), `study` (create/resume, trial 0 = vLLM defaults, run),
`best` (choose the winner, write best.yaml), `report` (tables, CSV, ETA), `preflight` (disk checks).
Kept import-light: nothing heavy (optuna, mlflow) is imported here.
"""
