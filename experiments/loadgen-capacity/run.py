"""Load-generator capacity: the highest streamed request rate the client sustains, 1 vs 2 processes.

Against a trivial local server (tests/bench/fake_openai_server.py: instant tokens, 128 per
response, one SSE chunk each), open-loop Poisson runs of DURATION_S at rates doubling from
START_RPS; the first rate not sustained is bisected once. "Sustained": the client is not flagged
saturated (CPU < 90% of a core, loop lag p99 < 25 ms, send lag p99 < 50 ms), no errors,
requests complete at >= 90% of the rate they were sent, and TTFT p50 < 20 ms (the server is
instant, so a higher TTFT means a queue somewhere). The server shares the machine's cores, so its
CPU use is recorded too. A last run paces tokens 20 ms apart (each chunk its own network read, as
from a real engine) at 100 req/s to show the client's cost per chunk.
Run: .venv/bin/python experiments/loadgen-capacity/run.py
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from fake_openai_server import launch_process  # noqa: E402

from autotune.bench.environment import hardware, versions  # noqa: E402
from autotune.bench.metrics import completion_rate_rps, send_rate_rps  # noqa: E402
from autotune.bench.runner import run_benchmark_sync  # noqa: E402
from autotune.bench.schemas import SLO, LoadSpec  # noqa: E402
from autotune.bench.workload import resolve_workload  # noqa: E402

TOKENS = 128
DURATION_S = 1.5
START_RPS = 100.0
MAX_RPS = 3200.0
TTFT_P50_LIMIT_MS = 20.0
PACED_ITL_MS = 20.0
PACED_RPS = 100.0
OUTPUT = Path(__file__).with_name("result.json")


def measure(url: str, server_pid: int, rate: float, processes: int, scenario: str = "instant") -> dict:
    server = psutil.Process(server_pid)
    cpu0 = sum(server.cpu_times()[:2])
    wall0 = time.perf_counter()
    result = run_benchmark_sync(
        url,
        resolve_workload("text-chat"),
        LoadSpec(mode="rate", rate_rps=rate, num_requests=None, duration_s=DURATION_S, client_processes=processes),
        SLO(),
        telemetry=False,
    )
    server_cpu = (sum(server.cpu_times()[:2]) - cpu0) / (time.perf_counter() - wall0)
    summary = result.summary
    sent, done = send_rate_rps(result.requests), completion_rate_rps(result.requests)
    sustained = (
        not summary.client.saturated
        and summary.failed == 0
        and sent is not None
        and done is not None
        and done >= 0.9 * sent
        and (summary.ttft_ms.p50 or 0.0) < TTFT_P50_LIMIT_MS
    )
    row = {
        "scenario": scenario,
        "processes": processes,
        "offered_rps": rate,
        "sent_rps": round(sent or 0.0, 1),
        "completed_rps": round(done or 0.0, 1),
        "requests": summary.completed + summary.failed,
        "failed": summary.failed,
        "chunks_per_s": round((done or 0.0) * TOKENS),
        "client_cpu_max": summary.client.cpu_util_max,
        "loop_lag_p99_ms": summary.client.loop_lag_p99_ms,
        "send_lag_p99_ms": summary.client.send_lag_p99_ms,
        "server_cpu": round(server_cpu, 3),
        "ttft_p50_ms": None if summary.ttft_ms.p50 is None else round(summary.ttft_ms.p50, 2),
        "sustained": sustained,
        "client_saturation_reason": summary.client.reason,
    }
    print(json.dumps(row), flush=True)
    return row


def capacity(url: str, server_pid: int, processes: int, runs: list[dict]) -> float | None:
    best, rate = None, START_RPS
    while rate <= MAX_RPS:
        row = measure(url, server_pid, rate, processes)
        runs.append(row)
        if not row["sustained"]:
            if best is not None:
                middle = (best + rate) / 2
                row = measure(url, server_pid, middle, processes)
                runs.append(row)
                best = middle if row["sustained"] else best
            break
        best, rate = rate, rate * 2
    return best


def main() -> None:
    started = time.perf_counter()
    runs: list[dict] = []
    found: dict[str, float | None] = {}
    with launch_process("--tokens", str(TOKENS)) as (url, pid):
        for processes in (1, 2):
            found[f"{processes}_process"] = capacity(url, pid, processes, runs)
    with launch_process("--tokens", str(TOKENS), "--itl-ms", str(PACED_ITL_MS)) as (url, pid):
        runs.append(measure(url, pid, PACED_RPS, 1, scenario=f"paced {PACED_ITL_MS:g} ms/token"))
    report = {
        "experiment": "loadgen-capacity",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "experiments/loadgen-capacity/run.py",
        "setup": {
            "server": f"tests/bench/fake_openai_server.py --tokens {TOKENS} (instant tokens, one chunk each)",
            "workload": "text-chat (256 prompt tokens, max_tokens 128)",
            "arrivals": "poisson",
            "duration_s_per_run": DURATION_S,
            "criterion": f"client not saturated, no errors, completions >= 90% of sends, TTFT p50 < {TTFT_P50_LIMIT_MS:g} ms",
            "paced_run": f"1 process, {PACED_RPS:g} req/s, tokens {PACED_ITL_MS:g} ms apart",
        },
        "max_sustained_rps": found,
        "runs": runs,
        "versions": versions(),
        "hardware": hardware([]),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    OUTPUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"max_sustained_rps": found, "wall_s": report["wall_s"]}))


if __name__ == "__main__":
    main()
