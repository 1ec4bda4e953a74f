"""Secrets stay out of what the tuner prints and writes: MLflow URI passwords, engine env values."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.servers import MODEL_DIR as MODEL
from helpers.tune import quick_space_mapping, space_from
from rich.console import Console

from autotune.config import EngineConfig, EngineKind, Provenance, TunedConfig
from autotune.errors import ConfigError
from autotune.tracking import MlflowTracker, RedactingFilter
from autotune.tune.preflight import prepare_engine_env
from autotune.redact import expand_env, redact_text
from autotune.tune.report import tuned_fields_table

PASSWORD = "pw-s3cr3t-77"
TOKEN = "hf_unitTestToken987"
def test_redact_text_masks_every_url_password() -> None:
    text = f"failed: API request to http://autotune:{PASSWORD}@127.0.0.1:5000/api/2.0 (url='https://u:{PASSWORD}@h/x')"
    cleaned = redact_text(text)
    assert PASSWORD not in cleaned and "http://autotune:***@127.0.0.1:5000/api/2.0" in cleaned
    assert redact_text("sqlite:////tmp/mlflow.db and user@example.com") == "sqlite:////tmp/mlflow.db and user@example.com"


class _FailingMlflow(http.server.BaseHTTPRequestHandler):
    """Answers /health, fails every MLflow API call with an error quoting the URL it was called at."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error_code": "BAD_REQUEST", "message": "no"}')

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_mlflow() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_mlflow_failure_warnings_do_not_show_the_uri_password(
    failing_mlflow: int, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = MlflowTracker(f"http://autotune:{PASSWORD}@127.0.0.1:{failing_mlflow}", study="s")
    with caplog.at_level(logging.DEBUG):
        assert tracker.start_study(tags={}, params={}) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "autotune.tracking"]
    assert any("the study goes on" in w for w in warnings), warnings
    captured = capsys.readouterr()
    assert PASSWORD not in caplog.text + captured.out + captured.err
    import os

    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # no "View run at http://u:pw@..."


def test_redacting_filter_rewrites_records_with_url_passwords() -> None:
    record = logging.LogRecord("mlflow.store", logging.WARNING, __file__, 1, "retry %s", (f"http://u:{PASSWORD}@h",), None)
    assert RedactingFilter().filter(record) and PASSWORD not in record.getMessage()


def _tuned(env: dict[str, str], extra: dict[str, Any] | None = None) -> TunedConfig:
    engine = EngineConfig(model=MODEL, max_num_seqs=8, env=env, extra_engine_args=extra or {})
    return TunedConfig(
        engine=EngineKind.SIMULATED, engine_config=engine,
        provenance=Provenance(study="s", trial_number=1, engine=EngineKind.SIMULATED, simulated=True),
    )


def test_settings_table_masks_secret_env_and_engine_args() -> None:
    tuned = _tuned({"HF_TOKEN": TOKEN, "VLLM_LOGGING_LEVEL": "INFO"}, {"api_key": "k-123456", "tokenizer": "/m/tok"})
    console = Console(record=True, width=200)
    console.print(tuned_fields_table(tuned))
    text = console.export_text()
    assert TOKEN not in text and "k-123456" not in text
    assert "VLLM_LOGGING_LEVEL" in text and "INFO" in text and "/m/tok" in text and "max_num_seqs" in text


def test_literal_secret_env_becomes_a_placeholder_and_reaches_only_the_environment(tmp_path: Path) -> None:
    data = quick_space_mapping()
    data["engine_base"]["env"] = {"HF_TOKEN": TOKEN, "VLLM_LOGGING_LEVEL": "INFO"}
    data["fixed"] = {"env.MY_API_KEY": "${TUNE_TEST_API_KEY}"}
    space = space_from(data)
    assert space.defaults_config().env == {
        "HF_TOKEN": "${HF_TOKEN}", "VLLM_LOGGING_LEVEL": "INFO", "MY_API_KEY": "${TUNE_TEST_API_KEY}"
    }
    assert space.secret_env == {"HF_TOKEN": TOKEN}
    assert TOKEN not in yaml.safe_dump(space.model_dump(mode="json"))  # what the study stores
    environ: dict[str, str] = {}
    with pytest.raises(ConfigError, match=r"MY_API_KEY \(\$\{TUNE_TEST_API_KEY\}\) not set"):
        prepare_engine_env(space, environ)
    environ["TUNE_TEST_API_KEY"] = "key-1"
    prepare_engine_env(space, environ)
    assert environ["HF_TOKEN"] == TOKEN
    # the server's side: placeholders expanded from its own (inherited) environment
    assert expand_env(space.defaults_config().env, environ) == {
        "HF_TOKEN": TOKEN, "VLLM_LOGGING_LEVEL": "INFO", "MY_API_KEY": "key-1"
    }


def test_trial_config_file_keeps_placeholders_and_the_server_gets_the_literal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_tune_trial import FakeServer, _bench, _runner

    monkeypatch.setenv("TUNE_TEST_VAR", "v")
    servers: list[FakeServer] = []
    seen: list[dict[str, Any]] = []

    def factory(config_path: Path, **kwargs: Any) -> FakeServer:
        seen.append(kwargs)
        servers.append(FakeServer(config_path))
        return servers[-1]

    runner = _runner(tmp_path, server=factory, benchmark=_bench(servers))
    engine = EngineConfig(model=MODEL, env={"HF_TOKEN": TOKEN, "OTHER": "${TUNE_TEST_VAR}"})
    result = runner.run(1, engine, Provenance(study="s", trial_number=1, engine=EngineKind.SIMULATED, simulated=True))
    assert result.state.value == "complete", result.reason
    written = Path(result.config_path or "").read_text()
    assert TOKEN not in written and "${HF_TOKEN}" in written and "${TUNE_TEST_VAR}" in written
    assert seen[0]["env"] == {"HF_TOKEN": TOKEN}

    monkeypatch.delenv("TUNE_TEST_VAR")
    failed = runner.run(2, engine, Provenance(study="s", trial_number=2, engine=EngineKind.SIMULATED, simulated=True))
    assert failed.state.value == "failed" and "TUNE_TEST_VAR" in (failed.reason or "")
