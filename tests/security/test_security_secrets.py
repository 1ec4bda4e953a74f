"""The API key never leaves the process that needs it: not in the server's log (access log on), not in
any response (config, metrics, errors), not in `autotune bench` output or its result file.

(Secrets in the tuner's outputs and MLflow: tests/reliability/test_reliability_mlflow_outage.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability.reliability_record import Outcome, current_test, record_outcome

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR, running_server_process
from autotune.tune.server_process import ServerProcess

API_KEY = "sk-secret-5d41402abc4b2a76"
WRONG_KEY = "sk-other-service-7e9a0c3b"
MODEL_NAME = MODEL_DIR.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = TunedConfig(
        engine="simulated",
        engine_config=EngineConfig(model=MODEL_DIR, max_model_len=4096, env={"HF_TOKEN": "hf_envSecret42"}),
        serving=ServingSettings(log_level="debug"),  # access log on: the most the server ever writes
    ).write(tmp_path_factory.mktemp("secrets") / "tuned.yaml")
    assert API_KEY not in config.read_text()
    with running_server_process(["--config", str(config)], env={"AUTOTUNE_API_KEY": API_KEY}) as process:
        yield process


def test_no_secret_in_server_log_responses_or_benchmark_results(server: ServerProcess, tmp_path: Path) -> None:
    texts: dict[str, str] = {}
    good = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        chat = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        for name, response in {
            "chat": client.post("/v1/chat/completions", headers=good, json=chat),
            "chat with a wrong key": client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {WRONG_KEY}"}, json=chat),
            "bad request": client.post("/v1/chat/completions", headers=good, json={**chat, "max_tokens": -1}),
            "models": client.get("/v1/models", headers=good),
            "metrics": client.get("/metrics", headers=good),
            "config": client.get("/autotune/config", headers=good),
            "health": client.get("/health"),
        }.items():
            texts[f"response: {name}"] = str(response.headers) + response.text
    output = tmp_path / "result.json"
    bench = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "bench", "--url", server.base_url, "--workload", "text-chat",
         "--concurrency", "2", "--num-requests", "4", "--no-telemetry", "--quiet", "--output", str(output)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "AUTOTUNE_API_KEY": API_KEY},
    )
    texts["bench output"] = bench.stdout + bench.stderr
    texts["bench result file"] = output.read_text() if output.is_file() else ""
    texts["server log"] = server.log_tail(100_000)
    leaks = sorted(
        f"{where}: {what}"
        for where, text in texts.items()
        for what, secret in (("API key", API_KEY), ("wrong key", WRONG_KEY), ("HF_TOKEN", "hf_envSecret42"))
        if secret in text
    )
    record_outcome(
        Outcome(
            scenario="API key and engine-env secrets in server log, responses, bench output and result file",
            category="security",
            tried=len(texts),
            unit="outputs searched",
            lost=len(leaks),
            lost_meaning="an output holding the API key, a presented wrong key, or HF_TOKEN",
            expected="none of them anywhere (config shows ********** and ***)",
            test=current_test(),
        )
    )
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    assert json.loads(texts["bench result file"])["summary"]["completed"] == 4
    assert "POST /v1/chat/completions" in texts["server log"]  # the access log was on
    assert not leaks, leaks
