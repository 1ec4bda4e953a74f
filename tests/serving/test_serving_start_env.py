"""Engine env values read only when a process starts (LD_PRELOAD, MALLOC_*, PYTHON*): `autotune serve` executes itself
again with them (serving.start_env), so that they reach vLLM's forked processes too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from helpers.serving_testlib import write_simulated_config
from helpers.servers import MODEL_DIR, running_server_process

from autotune.config import EngineConfig, EngineKind, TunedConfig
from serving.engines.vllm_launcher import vllm_environment
from serving.launch import ServeOptions, serve_environment
from serving.start_env import REEXECUTED_ENV, start_environment, start_time_values_missing


def _environ_of(pid: int) -> dict[str, str]:
    environ = start_environment(Path(f"/proc/{pid}/environ"))
    assert environ is not None
    return environ


def test_only_start_time_variables_the_process_did_not_start_with_are_missing() -> None:
    env = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072", "LD_PRELOAD": "/usr/lib/libjemalloc.so.2",
           "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0", "PYTHONMALLOC": "malloc", "VLLM_LOGGING_LEVEL": "DEBUG",
           "HF_TOKEN": "hf_x", "OMP_NUM_THREADS": "4"}
    started_with = {"MALLOC_ARENA_MAX": "2", "LD_PRELOAD": "/other.so", "OMP_NUM_THREADS": "1"}
    assert start_time_values_missing(env, started_with) == {
        "MALLOC_MMAP_THRESHOLD_": "131072", "LD_PRELOAD": "/usr/lib/libjemalloc.so.2",
        "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0", "PYTHONMALLOC": "malloc",
    }  # read when used (VLLM_*, OMP_*, HF_TOKEN): exported in place as before


def test_the_start_environment_is_read_from_proc_with_values_holding_equals_signs(tmp_path: Path) -> None:
    environ = tmp_path / "environ"
    environ.write_bytes(b"A=1\0GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072\0EMPTY=\0")
    assert start_environment(environ) == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072", "EMPTY": ""}
    assert start_environment(tmp_path / "missing") is None


def test_the_options_give_the_same_command_line_again_without_the_api_key() -> None:
    options = ServeOptions(config_path=Path("best.yaml"), host="0.0.0.0", port=0, api_key="secret-key")
    assert options.to_argv() == ["--config", "best.yaml", "--host", "0.0.0.0", "--port", "0"]


def test_a_served_config_with_a_malloc_setting_runs_in_a_process_started_with_it(tmp_path: Path) -> None:
    config = write_simulated_config(
        tmp_path / "tuned.yaml",
        engine_config=EngineConfig(model=MODEL_DIR, max_model_len=4096,
                                   env={"MALLOC_ARENA_MAX": "2", "AUTOTUNE_TEST_READ_WHEN_USED": "1"}),
    )
    log_path = tmp_path / "serve.log"
    with running_server_process(["--config", str(config), "--api-key", "k-123"], log_path=log_path) as server:
        environ = _environ_of(server.pid)  # the same pid, executed again: its start environment has the value
        assert environ.get("MALLOC_ARENA_MAX") == "2" and environ.get(REEXECUTED_ENV) == "1"
        headers = {"Authorization": "Bearer k-123"}
        assert httpx.get(f"{server.base_url}/v1/models", headers=headers, trust_env=False).status_code == 200
        assert httpx.get(f"{server.base_url}/v1/models", trust_env=False).status_code == 401  # the key given on the command line survived
    text = log_path.read_text()
    assert text.count("executing again with MALLOC_ARENA_MAX set") == 1 and "k-123" not in text


def test_a_config_without_start_time_values_is_served_without_executing_again(tmp_path: Path) -> None:
    config = write_simulated_config(tmp_path / "tuned.yaml")
    with running_server_process(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
        assert REEXECUTED_ENV not in _environ_of(server.pid)
    assert "executing again" not in (tmp_path / "serve.log").read_text()


def test_vllm_is_served_with_a_fixed_mmap_threshold_unless_the_config_sets_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_TEST_TOKEN", "t-1")
    engine = EngineConfig(model=MODEL_DIR, env={"HF_TOKEN": "${AUTOTUNE_TEST_TOKEN}"})
    served = TunedConfig(engine=EngineKind.VLLM, engine_config=engine)
    env = serve_environment(served)  # what `autotune serve` starts (or executes itself again) with
    assert env == {"MALLOC_MMAP_THRESHOLD_": "131072", "HF_TOKEN": "t-1"}
    assert vllm_environment(served, "/tmp/c.json")["MALLOC_MMAP_THRESHOLD_"] == "131072"
    own = served.model_copy(update={"engine_config": engine.model_copy(update={"env": {"MALLOC_MMAP_THRESHOLD_": "65536"}})})
    assert serve_environment(own)["MALLOC_MMAP_THRESHOLD_"] == "65536"
    simulated = served.model_copy(update={"engine": EngineKind.SIMULATED})
    assert "MALLOC_MMAP_THRESHOLD_" not in serve_environment(simulated)  # the simulated engine is no vLLM
