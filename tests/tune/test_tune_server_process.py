"""ServerProcess: start-up crash vs timeout, group cleanup, injected faults, queue bound (429)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers.serving_testlib import MODEL_NAME, write_simulated_config

from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR, running_server_process
from autotune.tune.server_process import ServerProcess, ServerStartError, kill_process_group, process_group_exists

SIMULATED = ["--model", MODEL_DIR, "--engine", "simulated"]


def chat(max_tokens: int = 2, **extra: object) -> dict[str, object]:
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, **extra}


def wait_until(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_config_file_start_and_stop_kills_the_group(tmp_path: Path) -> None:
    config = write_simulated_config(tmp_path / "tuned.yaml")
    server = ServerProcess(config, log_path=tmp_path / "serve.log", startup_timeout_s=60)
    with server:
        assert server.alive()
        assert os.getpgid(server.pid) == server.pgid != os.getpgrp()
        assert httpx.get(f"{server.base_url}/health", trust_env=False).status_code == 200
        assert "SIMULATED engine" in server.log_tail()
    assert not server.alive()
    assert not kill_process_group(server.pgid)  # nothing left
    server.stop()  # idempotent


def test_crash_at_start_is_reported_as_crashed(tmp_path: Path) -> None:
    server = ServerProcess.from_serve_args(
        [*SIMULATED, "--port", "0"], log_path=tmp_path / "serve.log", env={"AUTOTUNE_SIMULATED_FAULT": "crash_at_start"}
    )
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert caught.value.reason == "crashed"
    assert caught.value.exit_code not in (None, 0)
    assert "crash_at_start" in caught.value.log_tail


def test_hang_at_start_is_reported_as_timeout(tmp_path: Path) -> None:
    server = ServerProcess.from_serve_args(
        [*SIMULATED, "--port", "0"],
        log_path=tmp_path / "serve.log",
        env={"AUTOTUNE_SIMULATED_FAULT": "hang_at_start"},
        startup_timeout_s=2,
    )
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert caught.value.reason == "timeout"
    assert not server.alive()  # stopped after the timeout


def _scripted_server(tmp_path: Path, script: str, startup_timeout_s: float) -> ServerProcess:
    """A ServerProcess whose child runs `script` (what `autotune serve` prints and does at start) instead."""
    server = ServerProcess.from_serve_args([], log_path=tmp_path / "serve.log", startup_timeout_s=startup_timeout_s)
    server.argv = [sys.executable, "-c", f"from serving.announce import START_FAILED_LINE\n{script}"]
    return server


def test_an_engine_failing_while_the_stop_is_held_is_a_crash_not_a_timeout(tmp_path: Path) -> None:
    """A slow machine: the deadline passes during the engine's start; uvicorn holds the stop signal until the start
    ends, the engine fails, the process exits by itself. That is a crash at start, whatever the timing."""
    script = (
        "import signal, sys\n"
        "def failed(*_):\n"
        "    print(START_FAILED_LINE + ': EngineStartError: no room for the KV cache', flush=True)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, failed)\n"
        "signal.pause()\n"
    )
    server = _scripted_server(tmp_path, script, startup_timeout_s=0.5)
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert caught.value.reason == "crashed" and caught.value.exit_code == 3
    assert "no room for the KV cache" in caught.value.log_tail


def test_a_failed_start_is_a_crash_before_the_deadline_even_while_the_process_exits_slowly(tmp_path: Path) -> None:
    script = "import signal\nprint(START_FAILED_LINE + ': EngineStartError: x', flush=True)\nsignal.pause()\n"
    server = _scripted_server(tmp_path, script, startup_timeout_s=120)
    started = time.monotonic()
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert caught.value.reason == "crashed" and time.monotonic() - started < 60  # not the 120 s deadline
    assert not server.alive()


def test_health_is_503_until_the_engine_is_ready(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOTUNE_SIMULATED_FAULT": "hang_at_start", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "autotune.cli", "serve", *SIMULATED, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first stdout line is the listening line
        base_url = line.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:"), line

        def health() -> int | None:
            try:
                return httpx.get(f"{base_url}/health", trust_env=False).status_code
            except httpx.HTTPError:
                return None

        assert wait_until(lambda: health() is not None)
        assert health() == 503
    finally:
        kill_process_group(process.pid)
        process.wait(timeout=10)


def test_engine_override_serves_a_vllm_config_simulated(tmp_path: Path) -> None:
    config = TunedConfig(engine_config=EngineConfig(model=MODEL_DIR, max_model_len=4096)).write(tmp_path / "t.yaml")
    with ServerProcess(config, engine=EngineKind.SIMULATED, log_path=tmp_path / "serve.log") as server:
        document = httpx.get(f"{server.base_url}/autotune/config", trust_env=False).json()
    assert document["engine"] == "simulated" and document["simulated"] is True
    assert document["engine_details"]["simulated"] is True


def test_fault_from_the_config_env_crashes_after_n_requests(tmp_path: Path) -> None:
    config = write_simulated_config(
        tmp_path / "tuned.yaml",
        engine_config=EngineConfig(
            model=MODEL_DIR, max_model_len=4096, env={"AUTOTUNE_SIMULATED_FAULT": "crash_after_requests:2"}
        ),
    )
    with (
        running_server_process(["--config", str(config)]) as server,
        httpx.Client(base_url=server.base_url, trust_env=False) as client,
    ):
        for _ in range(2):
            assert client.post("/v1/chat/completions", json=chat()).status_code == 200
        assert wait_until(lambda: not server.alive())
        assert server.exit_code == 3


def test_stall_after_requests_stops_answering(tmp_path: Path) -> None:
    with running_server_process(SIMULATED, env={"AUTOTUNE_SIMULATED_FAULT": "stall_after_requests:1"}) as server:
        with httpx.Client(base_url=server.base_url, trust_env=False, timeout=1.0) as client:
            assert client.post("/v1/chat/completions", json=chat()).status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                client.post("/v1/chat/completions", json=chat())
        assert server.alive()


def test_queue_bound_answers_429_with_retry_after(tmp_path: Path) -> None:
    config = write_simulated_config(
        tmp_path / "tuned.yaml",
        engine_config=EngineConfig(model=MODEL_DIR, max_model_len=4096, max_num_seqs=1),
        serving=ServingSettings(max_queued_requests=1),
    )
    with (
        running_server_process(["--config", str(config)]) as server,
        httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client,
    ):
        long = chat(max_tokens=3000, ignore_eos=True, stream=True)
        with client.stream("POST", "/v1/chat/completions", json=long) as running:
            assert running.status_code == 200
            running_metric = 'vllm:num_requests_running{engine="simulated"} 1.0'
            assert wait_until(lambda: running_metric in client.get("/metrics").text)
            with client.stream("POST", "/v1/chat/completions", json=long) as waiting:
                assert waiting.status_code == 200
                waiting_metric = 'vllm:num_requests_waiting{engine="simulated"} 1.0'
                assert wait_until(lambda: waiting_metric in client.get("/metrics").text)
                refused = client.post("/v1/chat/completions", json=chat())
                assert refused.status_code == 429
                assert refused.headers["retry-after"] == "1"
                assert refused.json()["error"]["type"] == "rate_limit_error"
                del waiting
        # client disconnects abort both sequences: the server is free again
        assert wait_until(lambda: 'vllm:num_requests_running{engine="simulated"} 0.0' in client.get("/metrics").text)
        assert client.post("/v1/chat/completions", json=chat()).status_code == 200


def test_kill_process_group_cleans_up_a_left_behind_server() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)",
        ],
        start_new_session=True,
    )
    try:
        assert kill_process_group(child.pid, timeout_s=5)
        assert not process_group_exists(child.pid)  # the child and its grandchild are gone
    finally:
        if child.poll() is None:
            child.kill()
    assert not kill_process_group(os.getpgrp())  # never our own group



@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU pinning needs Linux")
def test_server_pinned_to_cpus_runs_there_and_the_tuner_is_not(tmp_path: Path) -> None:
    import psutil

    config = write_simulated_config(tmp_path / "tuned.yaml")
    cores = sorted(os.sched_getaffinity(0))
    pinned = cores[-1:]
    with ServerProcess(config, log_path=tmp_path / "serve.log", startup_timeout_s=60, cpus=pinned) as server:
        assert psutil.Process(server.pid).cpu_affinity() == pinned
        assert sorted(os.sched_getaffinity(0)) == cores  # only the child was pinned
