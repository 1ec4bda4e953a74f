"""The server's stack profile: every process samples its threads while the load generator's gate is open."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autotune.observe.stacks.gate import StackProfileGate
from autotune.observe.stacks.profiler import DIR_ENV, HZ_ENV, StackProfiler, process_title
from autotune.observe.stacks.reader import is_wait, summarize_stack_profile
from serving.autostart import __file__ as autostart_init

ROOT = Path(__file__).resolve().parents[2]
# Started with the autostart folder on PYTHONPATH (as the trial runner starts a server): forks a child, as vLLM
# forks its engine core; each spins in its own function, says so, then stays until its profile file is closed.
CHILD = """
import os, sys, time
from pathlib import Path

window = Path(sys.argv[1])

def spin_in_parent():
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass

def spin_in_forked_child():
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        pass

def stay_until_closed():
    (window.parent / f"done.{os.getpid()}").touch()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = list(window.glob(f"*.{os.getpid()}.folded"))
        if files and files[0].read_text().splitlines()[0].endswith(" closed"):
            return
        time.sleep(0.02)
    sys.exit("profile file never closed")

pid = os.fork()
if pid == 0:
    spin_in_forked_child()
    stay_until_closed()
    os._exit(0)
spin_in_parent()
stay_until_closed()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _wait_for(predicate, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_every_process_of_a_server_profiles_itself_while_the_gate_is_open(tmp_path: Path) -> None:
    profile_dir = tmp_path / "stack-profile"
    gate = StackProfileGate(profile_dir)
    gate.open("phase01-rate10.00")
    env = dict(os.environ)
    env.update({
        DIR_ENV: str(profile_dir), HZ_ENV: "200",
        "PYTHONPATH": os.pathsep.join([str(Path(autostart_init).parent), str(ROOT)]),
    })
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(profile_dir / "phase01-rate10.00")], env=env)
    try:
        _wait_for(lambda: len(list(profile_dir.glob("done.*"))) == 2 or child.poll() is not None)
        assert gate.close("phase01-rate10.00") == []  # both processes marked their files closed
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()

    summary = summarize_stack_profile(profile_dir)
    [window] = summary.windows
    assert window.label == "phase01-rate10.00"
    assert len(window.processes) == 2 and all(p.complete for p in window.processes)
    spun = {}
    for process in window.processes:
        main = next(t for t in process.threads if t.name == "MainThread")
        top = main.self_frames[0].frame
        spun[top.rsplit(":", 1)[1]] = main.busy_share
    assert set(spun) == {"spin_in_parent", "spin_in_forked_child"}  # the forked child profiled itself too
    assert all(share > 0.3 for share in spun.values())


def test_nothing_is_recorded_while_the_gate_is_shut(tmp_path: Path) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="other")  # sample_once leaves out its caller's thread
    other.start()
    try:
        profiler = StackProfiler(tmp_path, hz=100)
        profiler.sample_once()
        assert list(tmp_path.iterdir()) == []
        gate = StackProfileGate(tmp_path)
        gate.open("w")
        profiler.sample_once()
        profiler._flush()
        [path] = (tmp_path / "w").glob("*.folded")
        assert path.read_text().splitlines()[0].endswith(" open")
        gate.path.unlink()
        profiler.sample_once()  # sees the gate shut: the window's file is final
        assert path.read_text().splitlines()[0].endswith(" closed")
        profiler.sample_once()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    finally:
        stop.set()
        other.join()


def test_a_blocked_thread_counts_as_waiting_and_a_spinning_one_as_busy(tmp_path: Path) -> None:
    stop = threading.Event()

    def blocked_on_event() -> None:
        stop.wait()

    def spinning() -> None:
        while not stop.is_set():
            pass

    threads = [threading.Thread(target=f, name=f.__name__) for f in (blocked_on_event, spinning)]
    for t in threads:
        t.start()
    profiler = StackProfiler(tmp_path, hz=100)
    StackProfileGate(tmp_path).open("w")
    try:
        for _ in range(50):
            profiler.sample_once()
            time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join()
    profiler._flush(closed=True)
    [window] = summarize_stack_profile(tmp_path).windows
    threads_by_name = {t.name: t for t in window.processes[0].threads}
    assert threads_by_name["blocked_on_event"].busy_share == 0.0
    assert threads_by_name["spinning"].busy_share > 0.9
    inclusive = {f.frame.rsplit(":", 1)[1]: f.share for f in threads_by_name["spinning"].inclusive_frames}
    assert inclusive["spinning"] > 0.9  # on the stack of every busy sample (its innermost frame may be is_set)


def test_wait_frames() -> None:
    assert is_wait("threading.py:wait") and is_wait("selectors.py:select") and is_wait("zmq/sugar/socket.py:recv_multipart")
    assert is_wait("asyncio/runners.py:run") and is_wait("concurrent/futures/thread.py:_worker")
    assert is_wait("zmq/utils/garbage.py:run") and is_wait("vllm/usage/usage_lib.py:_report_continuous_usage")
    assert not is_wait("vllm/v1/core/sched/scheduler.py:schedule") and not is_wait("vllm/v1/worker/gpu_model_runner.py:_to_list")


@pytest.mark.parametrize(
    ("argv", "title"),
    [
        (["/x/site-packages/autotune/cli/__main__.py", "serve", "--config", "c.yaml"], "cli_serve"),
        (["/x/site-packages/autotune/cli/serve.py", "--config", "c.yaml"], "cli_serve"),  # python -m autotune.cli.serve
        (["/usr/bin/vllm", "serve", "model"], "vllm_serve"),
    ],
)
def test_a_server_without_a_vllm_title_is_named_by_its_command(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], title: str
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setitem(sys.modules, "setproctitle", None)  # no vLLM title: the command names the process
    assert process_title() == title


def test_a_process_retitled_within_a_window_keeps_one_file_with_every_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM titles its processes as they start (`APIServer`, `EngineCore`): a start profile sees the title change,
    and the counts of one process must stay in one file (two would count its samples twice)."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="other")
    other.start()
    titles = iter(["cli_serve", "EngineCore"])
    title = next(titles)
    monkeypatch.setattr("autotune.observe.stacks.profiler.process_title", lambda: title)
    try:
        profiler = StackProfiler(tmp_path, hz=100)
        StackProfileGate(tmp_path).open("start")
        profiler.sample_once()
        profiler._flush()
        title = next(titles)
        profiler.sample_once()
        profiler._flush(closed=True)
    finally:
        stop.set()
        other.join()
    [path] = (tmp_path / "start").glob("*.folded")
    assert path.name == f"EngineCore.{os.getpid()}.folded"
    assert path.read_text().splitlines()[0].startswith("# samples 2 ")
