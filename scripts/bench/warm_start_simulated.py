"""Server start times, cold (a new interpreter) against warm (forked from `autotune.cli.warm_parent`), on the
SIMULATED engine: what `--warm-start` saves of our own imports and set-up, not a GPU figure.

usage: python scripts/bench/warm_start_simulated.py OUT.json [--starts N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from autotune.bench.environment import cpu_model, versions
from autotune.config import EngineKind
from autotune.model_files import usable_model_dir
from autotune.tune.server_process import ServerProcess
from autotune.tune.warm_start import WarmParent

MODEL = str(Path(__file__).resolve().parents[2] / "search_spaces" / "models" / "qwen3-vl-4b-instruct")


def _start_s(folder: Path, name: str, launcher: WarmParent | None) -> float:
    """Seconds from asking for the server to its /health answering."""
    started = time.monotonic()
    with ServerProcess.from_serve_args(["--model", MODEL, "--engine", "simulated", "--port", "0"],
                                       log_path=folder / f"{name}.log", launcher=launcher):
        return round(time.monotonic() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    usable_model_dir(MODEL)  # the packed tokenizer unpacked once, before anything is timed
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        cold = [_start_s(folder, f"cold{i}", None) for i in range(args.starts)]
        started = time.monotonic()
        parent = WarmParent(EngineKind.SIMULATED, folder / "warm-parent.log")
        parent_ready_s = round(time.monotonic() - started, 3)
        try:
            warm = [_start_s(folder, f"warm{i}", parent) for i in range(args.starts)]
        finally:
            parent.close()
    record = {
        "simulated": True,
        "what": "autotune serve --engine simulated: seconds from asking for the server to /health answering",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": {"cpus": os.cpu_count(), "cpu": cpu_model()},
        "versions": versions(),
        "cold_s": cold, "warm_s": warm, "warm_parent_ready_s": parent_ready_s,
        "cold_median_s": statistics.median(cold), "warm_median_s": statistics.median(warm),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("cold_median_s", "warm_median_s", "warm_parent_ready_s")}))


if __name__ == "__main__":
    main()
