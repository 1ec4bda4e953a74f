"""Calibrate the simulated engine on GPU measurements, and predict configs with it.

- `dataset`: calibration points (config, workload, concurrency, measured figures) from result folders.
- `virtual`: predict a point with the virtual-time simulator (`simulate_closed_loop`) under a profile.
- `fit`: fit a few profile coefficients to the points (median absolute relative error), with k-fold hold-out.
- `report`: per-point tables and summary errors (Markdown, JSON, rich).
- `output`: the calibrated profile file (`calibrated: true` and a `calibration` block).
- `run`: the whole `autotune calibrate` as one call.

Predictions are simulator output, never measurements; they are labeled `predicted_*` everywhere.
"""

from autotune.calibrate.dataset import CalibrationDataset, CalibrationPoint, SkippedResult, collect_points
from autotune.calibrate.fit import FitResult, HoldOut, fit_profile, held_out_errors
from autotune.calibrate.run import CalibrationOutcome, CalibrationSettings, calibrate, run_folders
from autotune.calibrate.virtual import Prediction, predict

__all__ = [
    "CalibrationDataset",
    "CalibrationOutcome",
    "CalibrationPoint",
    "CalibrationSettings",
    "FitResult",
    "HoldOut",
    "Prediction",
    "SkippedResult",
    "calibrate",
    "collect_points",
    "fit_profile",
    "held_out_errors",
    "predict",
    "run_folders",
]
