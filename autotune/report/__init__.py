"""`autotune report`: one self-contained document per study (HTML with embedded PNGs, or Markdown with
PNG files beside it): vLLM defaults vs best, Pareto front, history, importances, latency CDFs, GPU use
over time, failed and pruned trials, and a SIMULATED banner when the engine was simulated."""

from autotune.report.build import ReportFormat, ReportOutcome, write_report
from autotune.report.data import ReportData, TrialRun, gather

__all__ = ["ReportData", "ReportFormat", "ReportOutcome", "TrialRun", "gather", "write_report"]
