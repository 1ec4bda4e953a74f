"""`autotune bench` CLI, result files and DataFrames; integration with `autotune serve --engine simulated`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from autotune.bench.options import parse_cpu_list, parse_rate_range, parse_slo
from autotune.bench.result import load_result, result_to_dataframe
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.workload import resolve_workload
from autotune.cli.main import app  # every command registered (the _app module alone has those imported so far)
from autotune.errors import ConfigError

from helpers.servers import MODEL_DIR, running_server

SERVE_DEADLINE_S = 60.0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", "bench", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_writes_a_result_that_loads_as_a_dataframe(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--simulated", "--ttft-ms", "2", "--itl-ms", "1")
    out = tmp_path / "result.json"
    done = _cli(
        "--url", url, "--workload", "vlm-chat", "--concurrency", "2", "--num-requests", "4", "--warmup", "1",
        "--slo", "ttft_ms=2000", "--slo", "tpot_ms=50", "--output", str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "SIMULATED concurrency 2" in done.stderr and "4/4" in done.stderr  # the progress bar
    assert "SIMULATED" in done.stdout and "TTFT ms" in done.stdout and "goodput req/s" in done.stdout
    result = load_result(out)
    assert result.simulated is True and result.slo == SLO(ttft_ms=2000, tpot_ms=50)
    assert result.workload["name"] == "vlm-chat" and result.load.warmup_requests == 1
    frame = result_to_dataframe(result)
    assert len(frame) == 5 and int(frame["warmup"].sum()) == 1
    assert frame.loc[~frame["warmup"], "success"].all()
    assert (frame.loc[~frame["warmup"], "output_tokens"] == 128).all()
    assert frame["tpot_ms"].notna().all() and frame.attrs["simulated"] is True


def test_cli_takes_a_jsonl_dataset_as_the_workload(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--simulated", "--ttft-ms", "2", "--itl-ms", "1")
    data = tmp_path / "mydata.jsonl"
    lines = [{"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 5} for i in range(3)]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "result.json"
    done = _cli("--url", url, "--workload", str(data), "--concurrency", "1", "--num-requests", "3", "--warmup", "0",
                "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = load_result(out)
    assert result.workload["name"] == "mydata" and result.workload["kind"] == "dataset"
    assert result.summary.completed == 3 and all(r.output_tokens == 5 for r in result.requests)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "2", "--rate", "3"], "exactly one of --concurrency N, --rate R, --sweep, --slo-rate or --replay"),
        (["--rate", "0"], "rate_rps: Input should be greater than 0"),
        (["--rate", "1", "--slo", "latency=3"], "NAME one of ttft_ms, tpot_ms, e2el_ms"),
        (["--rate", "1", "--client-cpus", "a-b"], "--client-cpus"),
        (["--rate", "1", "--workload", "nope"], "not a file and not a built-in"),
    ],
)
def test_cli_rejects_bad_options_with_a_clear_message(args: list[str], message: str) -> None:
    done = _cli("--url", "http://127.0.0.1:9", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "1", "--window-s", "120"], "--window-s: for --slo-rate only"),
        (["--slo-rate", "--slo", "ttft_ms=100", "--rate-range", "90:30"], "--rate-range: expected LOW:HIGH"),
        (["--slo-rate", "--slo", "ttft_ms=100", "--window-s", "0"], "slo_rate_window_s: Input should be greater than 0"),
    ],
)
def test_cli_rejects_bad_slo_rate_options_by_name(args: list[str], message: str) -> None:
    """In-process (the exit code and the message's printing are checked by the test above)."""
    done = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", *args])
    assert isinstance(done.exception, ConfigError) and message in str(done.exception)


def test_cli_help_lists_the_modes() -> None:
    help_text = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}).output
    for option in ("--concurrency", "--rate", "--sweep", "--slo", "--client-cpus", "--output", "--window-s", "--rate-range"):
        assert option in help_text


def test_cli_slo_rate_with_a_fixed_window_and_a_rate_range(tmp_path: Path, start_fake_server) -> None:
    """The GPU proof's command shape: no capacity probe, fixed windows, every window's verdict in the result."""
    url = start_fake_server("--max-concurrent", "1", "--ttft-ms", "30")  # ~30 req/s at most
    workload = tmp_path / "short.yaml"
    workload.write_text("name: short\nkind: synthetic\nsynthetic: {input_tokens: 16, output_tokens: 4}\n")
    out = tmp_path / "slo-rate.json"
    done = _cli(
        "--url", url, "--workload", str(workload), "--slo-rate", "--slo", "ttft_ms=250", "--window-s", "1",
        "--rate-range", "10:40", "--rate-tolerance", "0.5", "--output", str(out), "--quiet",
    )
    assert done.returncode == 0, done.stderr
    result = load_result(out)
    assert result.load.slo_rate_bracket == (10.0, 40.0) and result.load.slo_rate_window_s == 1.0
    assert result.load.slo_rate_tolerance == 0.5
    assert result.sweep and all(w.concurrency is None and w.steady is not None and w.steady.send_s == 1.0 for w in result.sweep)
    assert result.sweep[0].offered_rate_rps == 25.0  # the bracket's midpoint first
    assert "verdict" in done.stdout and "highest rate within SLO p99s" in done.stdout


def test_option_parsers() -> None:
    assert parse_cpu_list("0-2,5") == [0, 1, 2, 5]
    assert parse_rate_range("40:120.5") == (40.0, 120.5)
    with pytest.raises(ConfigError, match="--rate-range"):
        parse_rate_range("40")
    assert parse_slo(["ttft_ms=2000", "tpot:50"]) == SLO(ttft_ms=2000, tpot_ms=50)
    with pytest.raises(ConfigError, match="greater than 0"):
        parse_slo(["e2el_ms=-1"])


def test_gz_result_files_are_compressed_and_load_the_same(tmp_path: Path) -> None:
    from autotune.bench.result import save_result
    from autotune.bench.schemas import BenchResult, LoadSpec, RequestRecord, Summary

    result = BenchResult(
        url="http://127.0.0.1:1", workload={"name": "w"}, load=LoadSpec(mode="concurrency", concurrency=1),
        summary=Summary(completed=50), requests=[RequestRecord(index=i, send_time_s=i, success=True) for i in range(50)],
    )
    plain, packed = save_result(result, tmp_path / "r.json"), save_result(result, tmp_path / "r.json.gz")
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and packed.stat().st_size < plain.stat().st_size / 3
    assert load_result(packed) == load_result(plain) == result


def test_load_result_names_the_file_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "autotune-bench-result", "url": "x"}))
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        load_result(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_result(tmp_path / "missing.json")


def test_against_autotune_serve_simulated() -> None:
    """The real serving app with the simulated engine on the shipped skeleton (its start failing fails the test)."""
    with running_server(["--engine", "simulated", "--model", MODEL_DIR], startup_timeout_s=SERVE_DEADLINE_S) as url:
        load = LoadSpec(mode="concurrency", concurrency=2, num_requests=4, warmup_requests=1)
        result = run_benchmark_sync(url, resolve_workload("vlm-chat"), load, SLO(), telemetry=False)
    assert result.simulated is True and result.server_config is not None
    assert result.summary.completed == 4 and result.summary.failed == 0
    assert all(r.output_tokens == 128 and r.input_tokens and r.input_tokens > 64 for r in result.requests if r.success)
    assert result.summary.ttft_ms.p50 is not None and result.summary.server


def test_space_option_measures_the_spaces_own_objective_with_its_warm_up(tmp_path: Path, start_fake_server) -> None:
    """`--space`: the workload, SLO, load and warm-up of a trial of that space, on a server already running."""
    url = start_fake_server("--simulated", "--ttft-ms", "2", "--itl-ms", "1")
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "simulated-quick.yaml"
    out = tmp_path / "objective.json"
    done = _cli("--url", url, "--space", str(space), "--quiet", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = load_result(out)
    assert result.load.mode == "concurrency" and result.load.concurrency == 8 and result.load.num_requests == 16
    assert result.slo == SLO(ttft_ms=1000, tpot_ms=50) and result.workload["name"] == "vlm-chat"
    assert result.summary.completed == 16
    stats = httpx.get(f"{url}/stats").json()
    assert stats["received"] == 16 + 2 and stats["distinct_images"] == 18  # the load and two warm-up requests, none repeated


@pytest.mark.parametrize("extra", [["--slo", "ttft_ms=1"], ["--concurrency", "3"], ["--window-s", "30"]])
def test_space_option_refuses_options_that_would_change_the_objective(extra: list[str]) -> None:
    space = Path(__file__).resolve().parents[2] / "search_spaces" / "simulated-quick.yaml"
    done = _cli("--url", "http://127.0.0.1:9", "--space", str(space), *extra)
    assert done.returncode == 2
    assert "--space measures the space's own" in done.stderr and extra[0] in done.stderr


def test_cli_reset_caches_against_a_server_without_the_routes_says_how_to_get_them(start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    done = _cli("--url", url, "--workload", "text-chat", "--concurrency", "1", "--num-requests", "2", "--reset-caches", "--quiet")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no POST /reset_prefix_cache" in done.stderr and "VLLM_SERVER_DEV_MODE=1" in done.stderr
    assert httpx.get(f"{url}/stats").json()["received"] == 0
