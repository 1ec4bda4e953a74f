"""Per-role CPU profile of a server process tree: real processes titled as vLLM titles them."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from autotune.observe.cpu import (
    SINGLE_THREAD_BOUND_CORES,
    NotAvailableCpuSampler,
    ProcessCpuSampler,
    ProcessIdentity,
    RoleCpu,
    ServerCpuProfile,
    bottleneck_hint,
    classify_process,
    make_process_sampler,
    process_label,
    resolve_roles,
)

pytestmark = pytest.mark.timeout(60)

# One process of a test tree: argv = TITLE ACTION [CHILD_TITLE CHILD_ACTION ...]. It sets its title the
# way vLLM does (setproctitle "VLLM::EngineCore"; "-" keeps none), starts its child, prints
# "ready PID TITLE", then acts: "sleep" until killed; "burn" waits for SIGUSR1, then spins one core;
# "burn-exit" waits for SIGUSR1, spins 0.3 s and exits. Every process gives up after LIMIT_S.
TREE_SCRIPT = """
import os, signal, subprocess, sys, time
import setproctitle
LIMIT_S = 30.0
title, action, *child = sys.argv[1:]
if title != "-":
    setproctitle.setproctitle(title)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
if child:
    subprocess.Popen([sys.executable, __file__, *child])
print("ready", os.getpid(), title, flush=True)
if action == "sleep":
    time.sleep(LIMIT_S)
else:
    signal.sigtimedwait({signal.SIGUSR1}, LIMIT_S)
    end = time.monotonic() + (0.3 if action == "burn-exit" else LIMIT_S)
    while time.monotonic() < end:
        pass
"""


def wait_until(predicate: Callable[[], bool], deadline_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Tree:
    def __init__(self, root: subprocess.Popen[str], ready: dict[str, int]) -> None:
        self.root = root
        self.pids = ready  # title -> pid ("-" for the untitled root)


@pytest.fixture
def start_tree(tmp_path: Path) -> Iterator[Callable[..., Tree]]:
    """Factory: `start_tree("-", "sleep", "VLLM::EngineCore", "burn")`; every tree is killed as a group."""
    script = tmp_path / "tree.py"
    script.write_text(TREE_SCRIPT)
    started: list[subprocess.Popen[str]] = []

    def start(*spec: str) -> Tree:
        root = subprocess.Popen(
            [sys.executable, str(script), *spec], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        started.append(root)
        assert root.stdout is not None
        ready: dict[str, int] = {}
        deadline = time.monotonic() + 15
        while len(ready) < len(spec) // 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([root.stdout], [], [], remaining)[0]:
                raise AssertionError(f"process tree not ready: {ready}")
            _, pid, title = root.stdout.readline().split()
            ready[title] = int(pid)
        return Tree(root, ready)

    yield start
    for root in started:
        try:
            os.killpg(root.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        root.wait(timeout=10)
        if root.stdout is not None:
            root.stdout.close()


def samples_after(sampler: ProcessCpuSampler, t: float) -> int:
    return sum(1 for row in sampler.timeseries(origin=0.0) if row["t_s"] > t)


@pytest.mark.parametrize(
    ("name", "cmdline", "role"),
    [
        # Titles as vLLM 0.24 sets them (set_process_title: f"{prefix}::{name}"), full and kernel-truncated.
        ("VLLM::EngineCore", ["VLLM::EngineCore", "", ""], "engine_core"),
        ("VLLM::EngineCore_DP1", ["VLLM::EngineCore_DP1"], "engine_core"),
        ("VLLM::EngineCor", [], "engine_core"),
        ("VLLM::APIServer_0", ["VLLM::APIServer_0", ""], "api_server"),
        ("python3", ["VLLM::APIServer_DP2"], "api_server"),
        ("VLLM::Worker", ["VLLM::Worker"], "gpu_worker"),
        ("VLLM::Worker_TP", ["VLLM::Worker_TP1_EP1"], "gpu_worker"),
        ("MYAPP::Worker_DP0_PP1_TP0", [], "gpu_worker"),  # VLLM_PROCESS_NAME_PREFIX=MYAPP
        ("VLLM::DPCoordinator", ["VLLM::DPCoordinator"], "other"),
        ("python3.12", ["/venv/bin/python3.12", "/venv/bin/autotune", "serve", "--config", "t.yaml"], "other"),
        ("python3.12", ["python", "-c", "from multiprocessing.resource_tracker import main;main(5)"], "other"),
        ("python3.12", ["python", "--served-model-name", "Worker", "EngineCore"], "other"),  # no title
        ("python3.12", ["python", "tree.py", "VLLM::EngineCore"], "other"),  # an argument, not a title
    ],
)
def test_classify_process_reads_vllm_titles(name: str, cmdline: list[str], role: str) -> None:
    assert classify_process(name, cmdline) == role


def test_single_api_server_is_the_untitled_parent_of_the_engine_core() -> None:
    def ident(pid: int, ppid: int, title: str) -> ProcessIdentity:
        return ProcessIdentity(pid, ppid, "python3", (title,) if title else ("python", "autotune", "serve"))

    single = [ident(10, 1, ""), ident(11, 10, "VLLM::EngineCore"), ident(12, 11, "VLLM::Worker_TP0"), ident(13, 10, "")]
    assert resolve_roles(single) == {10: "api_server", 11: "engine_core", 12: "gpu_worker", 13: "other"}
    several = [ident(10, 1, ""), ident(11, 10, "VLLM::EngineCore"), ident(14, 10, "VLLM::APIServer_0")]
    assert resolve_roles(several) == {10: "other", 11: "engine_core", 14: "api_server"}
    assert process_label("python3.12", ["/venv/bin/python3.12", "/venv/bin/autotune", "serve", "--port", "1"]) == (
        "python3.12 autotune serve"
    )
    assert process_label("VLLM::EngineCor", ["VLLM::EngineCore_DP0", ""]) == "VLLM::EngineCore_DP0"


def test_burning_engine_core_shows_one_core_only_inside_its_window(start_tree: Callable[..., Tree]) -> None:
    tree = start_tree("-", "sleep", "VLLM::EngineCore", "burn", "VLLM::Worker_TP0", "sleep")
    sampler = ProcessCpuSampler(tree.root.pid, interval_s=0.1)
    sampler.start()
    try:
        idle_start = time.monotonic()
        wait_until(lambda: samples_after(sampler, idle_start) >= 6, what="idle samples")
        idle_end = time.monotonic()
        os.kill(tree.pids["VLLM::EngineCore"], signal.SIGUSR1)
        burn_start = time.monotonic()
        wait_until(lambda: samples_after(sampler, burn_start) >= 12, what="burn samples")
        burn_end = time.monotonic()
    finally:
        sampler.stop()

    idle = sampler.summarize(idle_start, idle_end)
    burn = sampler.summarize(burn_start, burn_end)
    assert idle is not None and burn is not None
    assert idle.roles["engine_core"].cores_mean < 0.2  # the burn after the window is not in it
    engine = burn.roles["engine_core"]
    assert engine.processes == 1 and engine.cores_mean > 0.6 and engine.busiest_process_cores_mean > 0.6
    assert engine.cores_max >= engine.cores_p95 >= 0.0 and engine.threads_max >= 1
    worker = burn.roles["gpu_worker"]
    assert worker.processes == 1 and worker.cores_mean < 0.2
    frontend = burn.roles["api_server"]  # the untitled root, parent of the engine core
    assert frontend.processes == 1 and frontend.cores_mean < 0.2
    assert burn.roles["other"].processes == 0
    busiest = burn.top_processes[0]
    assert (busiest.pid, busiest.role, busiest.label) == (tree.pids["VLLM::EngineCore"], "engine_core", "VLLM::EngineCore")
    assert burn.total_cores_mean >= engine.cores_mean
    assert 12 <= burn.samples <= 20 and burn.window_s <= burn_end - burn_start
    assert burn.affinity == sorted(os.sched_getaffinity(tree.root.pid))
    assert burn.host_cpus == os.cpu_count()
    assert sampler.summarize(0.0, idle_start - 1.0) is None  # no sample in that window


def test_process_exiting_mid_run_does_not_stop_the_sampler(start_tree: Callable[..., Tree]) -> None:
    tree = start_tree("-", "sleep", "VLLM::APIServer_0", "burn-exit")
    child = tree.pids["VLLM::APIServer_0"]
    sampler = ProcessCpuSampler(tree.root.pid, interval_s=0.1)
    sampler.start()
    try:
        start = time.monotonic()
        wait_until(lambda: samples_after(sampler, start) >= 2, what="samples")
        os.kill(child, signal.SIGUSR1)

        def exited() -> bool:
            try:
                return psutil.Process(child).status() == psutil.STATUS_ZOMBIE  # the root does not reap it
            except psutil.NoSuchProcess:
                return True

        wait_until(exited, what="the child's exit")
        gone = time.monotonic()
        wait_until(lambda: samples_after(sampler, gone) >= 3, what="samples after the exit")
        os.killpg(tree.root.pid, signal.SIGKILL)  # the whole server goes away
        tree.root.wait(timeout=10)
        sampler.sample_once()  # a vanished tree is an empty sample, not an error
        end = time.monotonic()
    finally:
        sampler.stop()

    profile = sampler.summarize(start, end)
    assert profile is not None
    assert profile.roles["api_server"].processes == 1
    assert profile.roles["api_server"].cores_max > 0.3  # its 0.3 s burn was seen before it exited
    assert sampler.timeseries(origin=0.0)[-1]["processes"] == 0.0


def test_affinity_is_the_root_pinning(start_tree: Callable[..., Tree]) -> None:
    tree = start_tree("-", "sleep")
    pinned = min(os.sched_getaffinity(0))
    os.sched_setaffinity(tree.root.pid, {pinned})
    sampler = make_process_sampler(tree.root.pid)
    assert isinstance(sampler, ProcessCpuSampler)
    sampler.sample_once()
    sampler.sample_once()
    profile = sampler.summarize(0.0, time.monotonic())
    assert profile is not None and profile.affinity == [pinned] == sorted(os.sched_getaffinity(tree.root.pid))


def test_no_process_to_watch_gives_no_profile() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    for pid in (None, gone.pid):
        sampler = make_process_sampler(pid)
        assert isinstance(sampler, NotAvailableCpuSampler) and sampler.reason
        sampler.start()
        sampler.stop()
        assert sampler.summarize(0.0, time.monotonic()) is None and sampler.timeseries() == []


def _profile(busiest: dict[str, float], total: float, affinity: list[int] | None, host_cpus: int = 16) -> ServerCpuProfile:
    roles = {
        role: RoleCpu(
            processes=1, cores_mean=b, cores_p95=b, cores_max=b, busiest_process_cores_mean=b, threads_max=4
        )
        for role, b in busiest.items()
    }
    return ServerCpuProfile(
        root_pid=1, roles=roles, total_cores_mean=total, total_cores_p95=total, total_cores_max=total,
        top_processes=[], samples=10, window_s=2.0, interval_s=0.2, affinity=affinity, host_cpus=host_cpus,
    )  # fmt: skip


def test_bottleneck_hint_names_the_evidence() -> None:
    low = {"api_server": 0.4, "engine_core": 0.5, "gpu_worker": 0.3, "other": 0.0}
    bound = {**low, "engine_core": 0.97}
    assert bottleneck_hint(_profile(bound, 1.7, None)) == (
        "engine_core busiest process at 0.97 cores mean: single-thread bound"
    )
    assert bottleneck_hint(_profile(low, 1.2, None)).startswith("no server process at a full core")
    saturated = bottleneck_hint(_profile(low, 3.8, [0, 1, 2, 3]))
    assert saturated == "server uses 3.80 of 4 allowed CPUs: CPU saturated"
    at_threshold = {**low, "api_server": SINGLE_THREAD_BOUND_CORES}
    assert "api_server busiest process" in bottleneck_hint(_profile(at_threshold, 1.5, None))
