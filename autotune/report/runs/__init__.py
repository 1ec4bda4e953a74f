"""Summaries of recorded GPU runs (experiments/), computed from their raw files: `autotune summarize`."""
