"""Benchmark: workloads, load generation, metrics, telemetry."""
