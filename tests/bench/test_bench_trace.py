"""Trace replay: a timestamped JSONL trace sent at its own times (or time-scaled), checked line by line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.trace import load_trace
from autotune.bench.workload import Workload, load_workload, resolve_workload
from autotune.errors import ConfigError

# send offsets with distinct gaps (0.2, 0.3, 0.1, 0.4 s), an image-free line, and two equal times
TRACE = [
    {"timestamp_s": 100.0, "input_tokens": 16, "output_tokens": 3},
    {"timestamp_s": 100.2, "input_tokens": 40, "output_tokens": 5, "images": ["64x48"]},
    {"timestamp_s": 100.5, "input_tokens": 8, "output_tokens": 2, "images": [{"width": 32, "height": 32}, "48x32"]},
    {"timestamp_s": 100.6, "input_tokens": 12, "output_tokens": 4},
    {"timestamp_s": 101.0, "input_tokens": 20, "output_tokens": 6},
    {"timestamp_s": 101.0, "input_tokens": 24, "output_tokens": 7},
]
OFFSETS = [0.0, 0.2, 0.5, 0.6, 1.0, 1.0]


def _write_trace(folder: Path, lines: list[dict[str, object]] | list[str], name: str = "trace.jsonl") -> Path:
    path = folder / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _workload(folder: Path) -> Path:
    _write_trace(folder, TRACE)
    spec = folder / "replay.yaml"
    spec.write_text("name: replay-test\nkind: trace\ntrace: {path: trace.jsonl}\n")
    return spec


def test_trace_offsets_are_relative_to_the_first_line(tmp_path: Path) -> None:
    entries = load_trace(_write_trace(tmp_path, TRACE))
    assert [round(e.offset_s, 6) for e in entries] == OFFSETS
    assert entries[2].images == ((32, 32), (48, 32)) and entries[0].images == ()
    assert [e.output_tokens for e in entries] == [3, 5, 2, 4, 6, 7]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([TRACE[0], TRACE[2], TRACE[1]], "trace.jsonl:3: timestamp_s 100.2 is earlier than line 2's 100.5"),
        ([TRACE[0], {"input_tokens": 4, "output_tokens": 4}], "trace.jsonl:2: timestamp_s: Field required"),
        ([{**TRACE[0], "timestamp_s": "soon"}], "trace.jsonl:1: timestamp_s: Input should be a valid number"),
        ([{**TRACE[0], "output_tokens": 0}], "trace.jsonl:1: output_tokens: Input should be greater than or equal to 1"),
        ([{**TRACE[0], "images": ["big"]}], "trace.jsonl:1: images[0]: Value error, expected WIDTHxHEIGHT"),
        ([{**TRACE[0], "prompt": "hi"}], "trace.jsonl:1: prompt: Extra inputs are not permitted"),
        (["{not json"], "trace.jsonl:1: not valid JSON"),
        ([], "the trace has no requests"),
    ],
)
def test_bad_traces_are_refused_naming_the_line_and_field(tmp_path: Path, lines: list, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_trace(_write_trace(tmp_path, lines))
    assert message in str(refused.value)


@pytest.mark.parametrize("time_scale", [1.0, 0.5])
def test_replay_sends_each_line_at_its_scaled_time_with_its_shape(tmp_path: Path, quick_server: str, time_scale: float) -> None:
    workload = load_workload(_workload(tmp_path))
    load = LoadSpec(mode="replay", num_requests=None, time_scale=time_scale, warmup_requests=2, seed=3)
    result = run_benchmark_sync(quick_server, workload, load, SLO(), telemetry=False)
    measured = sorted((r for r in result.requests if not r.warmup), key=lambda r: r.index)
    assert len(measured) == len(TRACE) and all(r.success for r in measured)
    first = measured[0].send_time_s
    for line, (record, offset) in enumerate(zip(measured, OFFSETS, strict=True)):
        assert record.index % len(TRACE) == line  # request i of the window is trace line i
        assert abs((record.send_time_s - first) - offset * time_scale) < 0.03, (line, record.send_time_s - first)
        assert record.output_tokens == TRACE[line]["output_tokens"]  # the fake server streams max_tokens tokens
    assert result.summary.offered_rate_rps == pytest.approx(5 / (1.0 * time_scale))


def test_replay_cut_by_num_requests_and_duration(tmp_path: Path, quick_server: str) -> None:
    workload = load_workload(_workload(tmp_path))
    by_count = run_benchmark_sync(quick_server, workload, LoadSpec(mode="replay", num_requests=3), SLO(), telemetry=False)
    assert len(by_count.requests) == 3
    by_time = run_benchmark_sync(quick_server, workload, LoadSpec(mode="replay", num_requests=None, duration_s=0.55), SLO(), telemetry=False)
    assert len(by_time.requests) == 3  # offsets 0, 0.2, 0.5 are before 0.55 s


def test_a_trace_feeds_closed_loop_runs_with_its_shapes(tmp_path: Path, quick_server: str) -> None:
    workload = load_workload(_workload(tmp_path))
    result = run_benchmark_sync(quick_server, workload, LoadSpec(mode="concurrency", concurrency=2, num_requests=8), SLO(), telemetry=False)
    assert sorted(r.output_tokens for r in result.requests) == sorted(
        [TRACE[r.index % len(TRACE)]["output_tokens"] for r in result.requests]
    )


def test_replay_of_a_workload_without_a_trace_is_refused(quick_server: str) -> None:
    with pytest.raises(ConfigError, match="load.mode replay sends requests at a trace's times: workload 'text-chat' is kind 'synthetic'"):
        run_benchmark_sync(quick_server, resolve_workload("text-chat"), LoadSpec(mode="replay"), SLO(), telemetry=False)


def test_time_scale_needs_mode_replay() -> None:
    with pytest.raises(ValueError, match="time_scale applies to mode 'replay' only"):
        LoadSpec(mode="rate", rate_rps=1, time_scale=0.5)


def test_trace_workload_needs_its_section() -> None:
    with pytest.raises(ValueError, match="kind 'trace' needs a 'trace' section"):
        Workload.model_validate({"name": "x", "kind": "trace"})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", "bench", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_replays_the_shipped_sample_trace_time_scaled(tmp_path: Path, quick_server: str) -> None:
    out = tmp_path / "result.json"
    done = _cli("--url", quick_server, "--workload", "vlm-trace-sample", "--replay", "--time-scale", "0.05",
                "--no-telemetry", "--quiet", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    entries = load_trace(Path(resolve_workload("vlm-trace-sample").trace.path))  # type: ignore[union-attr]
    assert result["load"]["mode"] == "replay" and len(result["requests"]) == len(entries) == 130
    sends = sorted(r["send_time_s"] for r in result["requests"])
    assert sends[-1] - sends[0] == pytest.approx(entries[-1].offset_s * 0.05, abs=0.1)  # 1.5 s: 30 s of trace x 0.05


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "text-chat", "--replay"], "workload 'text-chat' is kind 'synthetic', not 'trace'"),
        (["--workload", "vlm-trace-sample", "--rate", "2", "--time-scale", "2"], "--time-scale applies to --replay only"),
    ],
)
def test_cli_refuses_replay_without_a_trace(args: list[str], message: str) -> None:
    done = _cli("--url", "http://127.0.0.1:9", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
