"""Soak a server: one steady open-loop rate for a long time; memory, descriptors and latency series, a verdict, a plot.

Against a server already running (give its root pid so that its process tree's RSS and open descriptors are
sampled; GPU memory is sampled through NVML when there is a GPU):

    .venv/bin/python scripts/soak.py --url http://127.0.0.1:8000 --pid 12345 --rate 12 --duration-s 1800 \\
        --out experiments/soak/2026-12-04

Or starting `autotune serve --config best.yaml` itself (stopped at the end):

    .venv/bin/python scripts/soak.py --config experiments/STUDY/best.yaml --rate 12 --duration-s 1800 --out DIR

Writes DIR/soak.json (autotune.bench.soak.SoakRecord: settings, bounds, windows, samples, per-request times,
problems) and DIR/soak.png; exits 1 when a bound broke (the problems are printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autotune.bench.soak import SoakBounds, SoakRecord, SoakSettings, run_soak  # noqa: E402
from autotune.bench.soak_plot import plot_soak  # noqa: E402


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="Base URL of a running OpenAI-compatible server")
    target.add_argument("--config", type=Path, help="Start `autotune serve --config CONFIG` on a free loopback port")
    parser.add_argument("--pid", type=int, help="The running server's root process (its tree is sampled)")
    parser.add_argument("--rate", type=float, required=True, help="Requests per second (constant arrivals)")
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--workload", default="vlm-chat", help="Built-in workload name or YAML file")
    parser.add_argument("--window-s", type=float, default=60.0, help="Windows the first and last of which are compared")
    parser.add_argument("--warmup-requests", type=int, default=8)
    parser.add_argument("--model", help="Model name to request (default: asked from /v1/models)")
    parser.add_argument("--api-key", help="Bearer key of the server (default: none)")
    parser.add_argument("--rss-growth-mib", type=float, default=SoakBounds().rss_growth_mib)
    parser.add_argument("--fd-growth", type=int, default=SoakBounds().fd_growth)
    parser.add_argument("--p99-ratio", type=float, default=SoakBounds().p99_ratio)
    parser.add_argument("--p99-slack-ms", type=float, default=SoakBounds().p99_slack_ms)
    parser.add_argument("--out", type=Path, required=True, help="Folder for soak.json and soak.png")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, int | None]]:
    if args.url:
        yield args.url, args.pid
        return
    from autotune.tune.server_process import ServerProcess

    args.out.mkdir(parents=True, exist_ok=True)
    with ServerProcess.from_serve_args(["--config", str(args.config), "--port", "0"], log_path=args.out / "server.log") as server:
        yield server.base_url, server.pid


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    settings = SoakSettings(
        rate_rps=args.rate, duration_s=args.duration_s, workload=args.workload, window_s=args.window_s,
        warmup_requests=args.warmup_requests,
        bounds=SoakBounds(rss_growth_mib=args.rss_growth_mib, fd_growth=args.fd_growth, p99_ratio=args.p99_ratio,
                          p99_slack_ms=args.p99_slack_ms),
    )
    with _server(args) as (url, pid):
        record: SoakRecord = run_soak(url, settings, server_pid=pid, model=args.model, api_key=args.api_key)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(record.model_dump_json(indent=1))
    plot_soak(record, args.out / "soak.png")
    first, last = record.windows[0], record.windows[-1]
    print(f"{record.sent} requests, {record.failed} failed; first window p99 TTFT {first.ttft_p99_ms} ms, E2E {first.e2el_p99_ms} ms, "
          f"RSS max {first.rss_max_mib} MiB, fds max {first.fds_max}; last window {last.ttft_p99_ms} ms, {last.e2el_p99_ms} ms, "
          f"{last.rss_max_mib} MiB, {last.fds_max}")
    for problem in record.problems:
        print(f"problem: {problem}")
    print(f"{args.out / 'soak.json'}, {args.out / 'soak.png'}")
    return 1 if record.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
