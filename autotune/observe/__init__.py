"""Observation, the ground floor: what watches a server while it serves, read by bench, tune, report and serving.

- `sampler`: the background sampling thread with a measured window (`PeriodicSampler`).
- `gpu`, `gpm`: NVML GPU sampling (utilization, memory, power, clock) and NVML GPM's SM counters.
- `cpu`: the server's CPU time per process and role.
- `prometheus`: the server's `/metrics` over a measured window.
- `stacks`: the stack profile written inside each server process, the gate that starts it, its reader, the
  engine-core activity classification, and periodic stack dumps.
- `names`: the metric names these figures are recorded under.

It imports nothing from the packages that read it (tests/observe/test_observe_layering.py).
"""
