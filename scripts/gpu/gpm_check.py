"""Check NVML GPM on this GPU host: is it supported, and do its four metrics move as their names say?

Runs the tuner's own sampler (`autotune.observe.gpu.NvmlSampler`, GPM through `autotune.observe.gpm`) through phases of a few
seconds each and prints, per phase, NVML busy % beside SM active, SM occupancy, tensor-pipe active and DRAM
bandwidth % (GPM), as one JSON object (also written to --out):

- `idle`: nothing runs (SM active and tensor pipes near 0).
- `matmul`: bf16 matmuls in a loop with torch (SM active near 100, tensor pipes high).
- `copy`: large device-to-device copies with torch (DRAM bandwidth high, tensor pipes near 0).

Without torch, or with `--load none`, only the idle phase runs. Where GPM is unavailable the output says why.

    python3 scripts/gpu/gpm_check.py [--seconds 5] [--load all|matmul|copy|none] [--out gpm_check.json]

Run it from the repository root (or with the repository on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.observe.gpm import DEFAULT_GPM_INTERVAL_S, GpmReader, GpmUnavailable  # noqa: E402
from autotune.observe.gpu import NvmlSampler, visible_device_indices  # noqa: E402


def device_support(sampler: NvmlSampler) -> dict[str, str]:
    """Per visible device: GPM support as NVML answers it, probed with a reader of its own (opened and freed)."""
    nvml = sampler.nvml
    found = {}
    for index, name in zip(visible_device_indices(nvml), sampler.devices(), strict=True):
        label = f"GPU {index} ({name})"
        try:
            GpmReader.open(nvml, [nvml.nvmlDeviceGetHandleByIndex(index)], [label]).close()
            found[label] = "supported"
        except GpmUnavailable as exc:
            found[label] = f"unavailable: {exc.reason}"
    return found


def _matmul_load(size: int) -> Callable[[float], int]:
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)

    def run(until: float) -> int:
        count = 0
        while time.monotonic() < until:
            for _ in range(8):
                torch.matmul(a, b)
            torch.cuda.synchronize()
            count += 8
        return count

    return run


def _copy_load(mib: int) -> Callable[[float], int]:
    import torch

    source = torch.empty(mib * 1024 * 1024, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)

    def run(until: float) -> int:
        count = 0
        while time.monotonic() < until:
            for _ in range(8):
                target.copy_(source)
            torch.cuda.synchronize()
            count += 8
        return count

    return run


def _phase(sampler: NvmlSampler, name: str, seconds: float, load: Callable[[float], int] | None) -> dict[str, Any]:
    start = time.monotonic()
    until = start + seconds
    if load is None:
        time.sleep(seconds)  # the idle phase: nothing to wait for but time
        operations = 0
    else:
        operations = load(until)
    end = time.monotonic()
    summary = sampler.summarize(start, end)
    figures = summary.model_dump(exclude={"devices"}) if summary is not None else {}
    return {"phase": name, "seconds": round(end - start, 2), "operations": operations, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--load", choices=("all", "matmul", "copy", "none"), default="all")
    parser.add_argument("--matrix-size", type=int, default=8192, help="matmul: square bf16 matrices of this size")
    parser.add_argument("--copy-mib", type=int, default=2048, help="copy: MiB copied per operation")
    parser.add_argument("--interval-s", type=float, default=0.1, help="NVML sampling interval")
    parser.add_argument("--gpm-interval-s", type=float, default=DEFAULT_GPM_INTERVAL_S, help="GPM sample spacing (> 0.1 s)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    try:
        sampler = NvmlSampler(interval_s=args.interval_s, gpm_interval_s=args.gpm_interval_s)
    except Exception as exc:
        print(json.dumps({"nvml": f"not available: {type(exc).__name__}: {exc}", "gpm_status": "unavailable: no NVML"}))
        sys.exit(1)
    report: dict[str, Any] = {"devices": sampler.devices(), "driver": sampler.driver_version(), "gpm_support": device_support(sampler)}
    phases: list[tuple[str, Callable[[float], int] | None]] = [("idle", None)]
    if args.load != "none":
        try:
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError("torch sees no CUDA device")
            if args.load in ("all", "matmul"):
                phases.append(("matmul", _matmul_load(args.matrix_size)))
            if args.load in ("all", "copy"):
                phases.append(("copy", _copy_load(args.copy_mib)))
        except Exception as exc:  # no torch or no CUDA: the idle phase alone, and why
            report["load"] = f"not run: {type(exc).__name__}: {exc}"
    sampler.start()
    try:
        report["phases"] = [_phase(sampler, name, args.seconds, load) for name, load in phases]
    finally:
        sampler.stop()
    report["gpm_status"] = sampler.gpm_status
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    for phase in report["phases"]:
        print(
            f"{phase['phase']:>7}: NVML busy {phase.get('util_mean')}%  SM active {phase.get('sm_active_mean')}%  "
            f"occupancy {phase.get('sm_occupancy_mean')}%  tensor {phase.get('tensor_active_mean')}%  "
            f"DRAM bw {phase.get('dram_bw_mean')}%  [{phase.get('gpm_status')}]",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
