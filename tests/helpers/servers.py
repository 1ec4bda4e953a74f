"""Start `autotune serve` for a test and always clean it up.

    from helpers.servers import running_server

    with running_server(["--model", MODEL_DIR, "--engine", "simulated"]) as base_url:
        httpx.get(f"{base_url}/health")

`args` are `autotune serve` arguments; `--port 0` is added unless a port is given. The server runs
in its own process group (killed as a group on exit); readiness is polled on /health with a
deadline; on a start-up failure the error carries the server's log tail. Use `running_server_process`
to get the `autotune.tune.server_process.ServerProcess` (pid, log_tail(), alive()) instead of just the URL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from autotune.tune.server_process import ServerProcess

# For `mlflow server` / `mlflow ui` started by a test: without MLflow's job execution (huey consumers for its GenAI
# jobs, 5.4 s of CPU each at start), which neither the tests nor autotune use.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# The Qwen3-VL-4B skeleton the project ships (its tokenizer packed: autotune.model_files).
MODEL_DIR = str(Path(__file__).resolve().parents[2] / "search_spaces" / "models" / "qwen3-vl-4b-instruct")


@contextmanager
def running_server_process(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 60.0,
    log_path: Path | None = None,
) -> Iterator[ServerProcess]:
    serve_args = list(args)
    if "--port" not in serve_args:
        serve_args += ["--port", "0"]
    with tempfile.TemporaryDirectory(prefix="autotune-serve-") as tmp:
        server = ServerProcess.from_serve_args(
            serve_args,
            log_path=log_path or Path(tmp) / "serve.log",
            startup_timeout_s=startup_timeout_s,
            env=env,
        )
        with server:
            yield server


@contextmanager
def running_server(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 60.0,
) -> Iterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`) of a ready server."""
    with running_server_process(args, env=env, startup_timeout_s=startup_timeout_s) as server:
        yield server.base_url
