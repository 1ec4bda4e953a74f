"""Stack dumps from inside a server process (autotune.observe.stacks.dumps), switched on by the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autotune.observe.stacks.dumps import DURING_ENV, EVERY_ENV, FOR_ENV, start_from_environment

ROOT = Path(__file__).resolve().parents[2]
# Imports the middleware module (as vLLM's API server does), then stays busy in a named function for 1.2 s.
CHILD = """
import time
import serving.vllm_middleware
def busy_in_warmup():
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        pass
busy_in_warmup()
"""


def _run_child(extra_env: dict[str, str], child: str = CHILD, path: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k not in (EVERY_ENV, FOR_ENV, DURING_ENV)} | extra_env
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), path) if p)
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stderr


def test_middleware_import_dumps_the_stacks_of_a_busy_process_when_asked() -> None:
    stderr = _run_child({EVERY_ENV: "0.2", FOR_ENV: "30"})
    assert "stack dumps every 0.2 s" in stderr
    assert stderr.count("busy_in_warmup") >= 2  # several dumps, each showing where the time goes


def test_no_dumps_unless_asked() -> None:
    stderr = _run_child({})
    assert "busy_in_warmup" not in stderr and "stack dumps" not in stderr


def test_dumps_stop_after_their_duration() -> None:
    stderr = _run_child({EVERY_ENV: "0.1", FOR_ENV: "0.35"})
    assert 1 <= stderr.count("busy_in_warmup") <= 4  # ~3 in 0.35 s, none in the remaining ~0.85 s
    assert stderr.count("autotune stack dump pid") <= stderr.count("busy_in_warmup") + 1  # + one during the import


def test_dumps_survive_threads_that_start_and_end_while_sampled() -> None:
    """faulthandler's watchdog crashed vLLM's API server (a segfault); the Python sampler must not."""
    churn = CHILD.rstrip().rsplit("\n", 1)[0] + """
import threading
def short_lived():
    sum(range(1000))
for _ in range(2000):
    t = threading.Thread(target=short_lived)
    t.start()
    t.join()
busy_in_warmup()"""
    env = {k: v for k, v in os.environ.items() if k not in (EVERY_ENV, FOR_ENV)} | {EVERY_ENV: "0.01", FOR_ENV: "30"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", churn], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "busy_in_warmup" in done.stderr


WARMUP_MODULE = """
import time
class Renderer:
    def warmup(self):
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            pass
def serve_requests():
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        pass
"""
DURING_CHILD = """
import serving.vllm_middleware
import fake_engine
fake_engine.Renderer().warmup()
fake_engine.serve_requests()
"""


def test_dumps_can_be_limited_to_one_callable_such_as_the_warmup(tmp_path: Path) -> None:
    (tmp_path / "fake_engine.py").write_text(WARMUP_MODULE)
    env = {EVERY_ENV: "0.1", DURING_ENV: "fake_engine:Renderer.warmup"}
    stderr = _run_child(env, DURING_CHILD, str(tmp_path))
    assert "while fake_engine:Renderer.warmup runs" in stderr
    assert stderr.count("in warmup") >= 3  # ~8 dumps over its 0.8 s
    assert "in serve_requests" not in stderr  # nothing after it returned: the measured window is untouched
    bad = _run_child({EVERY_ENV: "0.1", DURING_ENV: "fake_engine:Nope.warmup"}, DURING_CHILD, str(tmp_path))
    assert "in warmup" not in bad and "ignored" in bad


def test_bad_values_are_ignored_with_a_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    assert start_from_environment({EVERY_ENV: "often"}) is False
    assert start_from_environment({EVERY_ENV: "1", FOR_ENV: "-5"}) is False
    assert EVERY_ENV in caplog.text
    assert start_from_environment({}) is False
