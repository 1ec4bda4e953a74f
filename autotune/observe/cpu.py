"""Where the server's CPU time goes: a per-process, per-role CPU profile over the measured window.

A vLLM server is a tree of processes. vLLM 0.24 names them with setproctitle as `<prefix>::<title>`
(prefix `VLLM`, env VLLM_PROCESS_NAME_PREFIX): `EngineCore` / `EngineCore_DP<r>` (v1/engine/core.py),
`APIServer_<i>` (extra API servers, v1/utils.py), `APIServer_DP<r>` (dp_supervisor.py), `Worker` /
`Worker_TP<r>`... (multiproc_executor.py), `DPCoordinator`. With one API server, the frontend is the
untitled process that launched vLLM (our `autotune serve`), the parent of the engine core.
Linux truncates the kernel name to 15 characters (`VLLM::EngineCor`); the command line keeps the title.

`ProcessCpuSampler` walks the root's tree every `interval_s` (psutil, background thread, like the
NVML sampler in `autotune.observe.gpu`), reads each process's cumulative user+system CPU seconds, and
`summarize(start, end)` turns the deltas between consecutive samples inside the window into cores
(CPU seconds per wall second), per role and per process. CPU a process spends before its first sample
or after its last one (it exited) is not seen: short-lived helpers are under-counted, never invented.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, Protocol, get_args

import numpy as np
import psutil
from pydantic import Field

from autotune.base_models import StrictModel
from autotune.observe.sampler import PeriodicSampler

Role = Literal["api_server", "engine_core", "gpu_worker", "other"]
ROLES: tuple[Role, ...] = get_args(Role)

DEFAULT_INTERVAL_S = 0.2  # 5 Hz
TOP_PROCESSES = 8
SINGLE_THREAD_BOUND_CORES = 0.9  # one process busy this much of one core: its main thread is the limit
CPU_SATURATED_FRACTION = 0.9  # the server uses this share of the CPUs it may run on
_LABEL_TOKENS = 3
_LABEL_TOKEN_CHARS = 40

# A setproctitle title, `<prefix>::<title>`; the kernel name may be cut to 15 characters.
_TITLE = re.compile(r"^[A-Za-z0-9_.\-]*::(?P<title>[A-Za-z0-9_]+)$")
_TITLE_ROLES: tuple[tuple[str, Role], ...] = (
    ("enginecor", "engine_core"),  # EngineCore, EngineCore_DP0, kernel name "VLLM::EngineCor"
    ("apiserv", "api_server"),  # APIServer_0, APIServer_DP0 (vLLM's Python name: ApiServer_0)
    ("worker", "gpu_worker"),  # Worker, Worker_TP1, Worker_DP0_PP1_TP0...
)

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


class RoleCpu(StrictModel):
    """CPU use of all processes of one role, in cores (CPU seconds per wall second)."""

    processes: int = Field(ge=0, description="distinct processes of this role seen in the window")
    cores_mean: float
    cores_p95: float
    cores_max: float
    busiest_process_cores_mean: float = Field(description="max over this role's processes of their mean cores")
    threads_max: int = Field(ge=0, description="most threads of this role's processes at one sample")


class ProcessCpu(StrictModel):
    pid: int
    role: Role
    label: str = Field(description="the process title, else a short command (program, script, subcommand)")
    cores_mean: float
    cores_max: float
    threads_max: int


class ServerCpuProfile(StrictModel):
    """The server's CPU over the measured window, by role; samples from the host, not the GPU."""

    root_pid: int
    roles: dict[Role, RoleCpu]
    total_cores_mean: float
    total_cores_p95: float
    total_cores_max: float
    top_processes: list[ProcessCpu] = Field(description="busiest processes by mean cores, at most TOP_PROCESSES")
    samples: int
    window_s: float
    interval_s: float
    affinity: list[int] | None = Field(description="CPUs the root process may run on (its pinning); None if unknown")
    host_cpus: int


def classify_process(name: str, cmdline: list[str]) -> Role:
    """The role of a process from its vLLM title (`VLLM::EngineCore`), read from its name or its command line.

    setproctitle writes the title over the whole command line (its first word) and the kernel name
    (cut to 15 characters); a title-like *argument* of another program is not a title.

    Untitled processes are "other"; `resolve_roles` also finds the untitled single API server.
    """
    for word in (name, *cmdline[:1]):  # setproctitle replaces the whole command line with the title
        match = _TITLE.match(word.strip())
        if match is None:
            continue
        title = match["title"].lower()
        for prefix, role in _TITLE_ROLES:
            if title.startswith(prefix):
                return role
    return "other"


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, process: psutil.Process) -> ProcessIdentity:
        """Read from a live process (psutil errors when it is gone)."""
        return cls(process.pid, process.ppid(), process.name(), tuple(process.cmdline()))


def resolve_roles(processes: Sequence[ProcessIdentity]) -> dict[int, Role]:
    """Roles of a process tree: titles first; with no titled API server, an engine core's parent is the frontend.

    With one API server vLLM runs it in the launching process (`vllm serve` or `autotune serve`),
    which carries no title; with several, they are titled children and the launcher only waits.
    """
    roles = {p.pid: classify_process(p.name, list(p.cmdline)) for p in processes}
    if "api_server" not in roles.values():
        for process in processes:
            if roles[process.pid] == "engine_core" and roles.get(process.ppid) == "other":
                roles[process.ppid] = "api_server"
    return roles


def process_label(name: str, cmdline: Sequence[str]) -> str:
    """A short name for reports: the title when there is one, else program, script and subcommand."""
    for word in (*cmdline[:1], name):  # the command line keeps the whole title, the kernel name 15 characters
        if _TITLE.match(word.strip()):
            return word.strip()
    words = [w for w in cmdline if w]
    if not words:
        return name
    tokens: list[str] = []
    for word in words[:_LABEL_TOKENS]:
        if tokens and word.startswith("-") and word not in ("-m", "-c"):
            break
        tokens.append(os.path.basename(word) if "/" in word and not word.startswith("-") else word)
    return " ".join(token[:_LABEL_TOKEN_CHARS] for token in tokens)


def bottleneck_hint(profile: ServerCpuProfile) -> str:
    """One sentence from the figures: a process at a full core, a saturated CPU set, or neither."""
    role, role_cpu = max(profile.roles.items(), key=lambda item: item[1].busiest_process_cores_mean)
    busiest = role_cpu.busiest_process_cores_mean
    findings = []
    if busiest >= SINGLE_THREAD_BOUND_CORES:
        findings.append(f"{role} busiest process at {busiest:.2f} cores mean: single-thread bound")
    allowed = len(profile.affinity) if profile.affinity else profile.host_cpus
    if allowed and profile.total_cores_mean >= CPU_SATURATED_FRACTION * allowed:
        findings.append(f"server uses {profile.total_cores_mean:.2f} of {allowed} allowed CPUs: CPU saturated")
    if findings:
        return "; ".join(findings)
    return f"no server process at a full core (busiest: {role} at {busiest:.2f} cores mean)"


@dataclass(frozen=True, slots=True)
class _ProcessSample:
    key: tuple[int, float]  # (pid, create time): a reused pid is another process
    pid: int
    role: Role
    label: str
    cpu_s: float
    threads: int


@dataclass(frozen=True, slots=True)
class _TreeSample:
    t_monotonic: float
    processes: tuple[_ProcessSample, ...]


@dataclass(frozen=True, slots=True)
class _Read:
    key: tuple[int, float]
    identity: ProcessIdentity
    cpu_s: float
    threads: int


class CpuSampler(Protocol):
    available: bool
    reason: str | None

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def mark_window_start(self) -> None: ...
    def mark_window_end(self) -> None: ...
    def summary(self) -> ServerCpuProfile | None: ...
    def summarize(self, start_monotonic: float, end_monotonic: float) -> ServerCpuProfile | None: ...
    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]: ...


class NotAvailableCpuSampler:
    """No server process to watch: the profile is None, with the reason."""

    available = False

    def __init__(self, reason: str = "not available") -> None:
        self.reason: str | None = reason

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def mark_window_start(self) -> None: ...
    def mark_window_end(self) -> None: ...

    def summary(self) -> ServerCpuProfile | None:
        return None

    def summarize(self, start_monotonic: float, end_monotonic: float) -> ServerCpuProfile | None:
        return None

    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]:
        return []


def _read_process(process: psutil.Process) -> _Read | None:
    try:
        with process.oneshot():
            times = process.cpu_times()
            identity = ProcessIdentity.of(process)
            return _Read((process.pid, process.create_time()), identity, times.user + times.system, process.num_threads())
    except _GONE:
        return None


def _root_affinity(root: psutil.Process) -> list[int] | None:
    try:
        return sorted(root.cpu_affinity())  # type: ignore[attr-defined]  # not on every platform
    except (*_GONE, AttributeError, OSError):
        return None


class ProcessCpuSampler(PeriodicSampler["_TreeSample", ServerCpuProfile]):
    available = True
    reason: str | None = None
    thread_name = "autotune-cpu-sampler"

    def __init__(self, root_pid: int, *, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        super().__init__(interval_s=interval_s)
        self.root_pid = root_pid
        self._root = psutil.Process(root_pid)  # NoSuchProcess if it is not there
        self.affinity = _root_affinity(self._root)
        self.host_cpus = psutil.cpu_count(logical=True) or os.cpu_count() or 1

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except _GONE:
            return []  # the server is gone: an empty sample, zero cores from here on

    def sample_once(self) -> None:
        now = time.monotonic()
        reads = [read for read in map(_read_process, self._tree()) if read is not None]
        roles = resolve_roles([read.identity for read in reads])
        processes = tuple(
            _ProcessSample(
                key=read.key,
                pid=read.identity.pid,
                role=roles[read.identity.pid],
                label=process_label(read.identity.name, read.identity.cmdline),
                cpu_s=read.cpu_s,
                threads=read.threads,
            )
            for read in reads
        )
        self._add(_TreeSample(now, processes))

    def summarize(self, start_monotonic: float, end_monotonic: float) -> ServerCpuProfile | None:
        """The profile from samples inside [start, end]; None with fewer than two (no rate without a delta)."""
        window = [s for s in self._snapshot() if start_monotonic <= s.t_monotonic <= end_monotonic]
        if len(window) < 2:
            return None
        return _profile(window, root_pid=self.root_pid, interval_s=self.interval_s, affinity=self.affinity, host_cpus=self.host_cpus)

    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]:
        """Cores per role between consecutive samples; `t_s` (interval end) from `origin` (default: window start)."""
        samples = self._snapshot()
        if origin is None:
            origin = self._window[0] if self._window[0] is not None else (samples[0].t_monotonic if samples else 0.0)
        rows = []
        for after, dt, deltas in _intervals(samples):
            cores = dict.fromkeys(ROLES, 0.0)
            for process, delta in deltas:
                cores[process.role] += delta / dt
            row = {"t_s": round(after.t_monotonic - origin, 4), "processes": float(len(after.processes))}
            row.update({f"cores_{role}": round(value, 4) for role, value in cores.items()})
            row["cores_total"] = round(sum(cores.values()), 4)
            rows.append(row)
        return rows


def _intervals(samples: Sequence[_TreeSample]) -> Iterator[tuple[_TreeSample, float, list[tuple[_ProcessSample, float]]]]:
    """Each interval between consecutive samples that has a length: (its end sample, seconds, CPU seconds per process)."""
    for before, after in pairwise(samples):
        dt = after.t_monotonic - before.t_monotonic
        if dt > 0:
            yield after, dt, list(_deltas(before, after))


def _deltas(before: _TreeSample, after: _TreeSample) -> Iterable[tuple[_ProcessSample, float]]:
    """CPU seconds each process used between two samples (processes seen in both)."""
    previous = {p.key: p.cpu_s for p in before.processes}
    for process in after.processes:
        if process.key in previous:
            yield process, max(0.0, process.cpu_s - previous[process.key])


@dataclass(slots=True)
class _ProcessTotals:
    pid: int
    role: Role
    label: str
    cpu_s: float = 0.0
    cores_max: float = 0.0
    threads_max: int = 0


def _profile(
    window: list[_TreeSample], *, root_pid: int, interval_s: float, affinity: list[int] | None, host_cpus: int
) -> ServerCpuProfile:
    window_s = window[-1].t_monotonic - window[0].t_monotonic
    series: dict[Role, list[float]] = {role: [] for role in ROLES}
    role_cpu_s = dict.fromkeys(ROLES, 0.0)
    totals: dict[tuple[int, float], _ProcessTotals] = {}
    threads_max = dict.fromkeys(ROLES, 0)
    for sample in window:  # the latest role and label win: titles are set just after a process starts
        threads = dict.fromkeys(ROLES, 0)
        for process in sample.processes:
            entry = totals.setdefault(process.key, _ProcessTotals(process.pid, process.role, process.label))
            entry.role, entry.label = process.role, process.label
            entry.threads_max = max(entry.threads_max, process.threads)
            threads[process.role] += process.threads
        for role in ROLES:
            threads_max[role] = max(threads_max[role], threads[role])
    for _after, dt, deltas in _intervals(window):
        cores = dict.fromkeys(ROLES, 0.0)
        for process, delta in deltas:
            entry = totals[process.key]
            entry.cpu_s += delta
            entry.cores_max = max(entry.cores_max, delta / dt)
            cores[process.role] += delta / dt
            role_cpu_s[process.role] += delta
        for role in ROLES:
            series[role].append(cores[role])
    total_series = [sum(values) for values in zip(*series.values(), strict=True)]

    def mean_cores(cpu_s: float) -> float:
        return cpu_s / window_s if window_s > 0 else 0.0

    processes = [
        ProcessCpu(
            pid=e.pid,
            role=e.role,
            label=e.label,
            cores_mean=round(mean_cores(e.cpu_s), 4),
            cores_max=round(e.cores_max, 4),
            threads_max=e.threads_max,
        )
        for e in totals.values()
    ]
    processes.sort(key=lambda p: p.cores_mean, reverse=True)
    roles = {
        role: RoleCpu(
            processes=sum(1 for e in totals.values() if e.role == role),
            cores_mean=round(mean_cores(role_cpu_s[role]), 4),
            cores_p95=_percentile(series[role], 95),
            cores_max=_percentile(series[role], 100),
            busiest_process_cores_mean=max((p.cores_mean for p in processes if p.role == role), default=0.0),
            threads_max=threads_max[role],
        )
        for role in ROLES
    }
    return ServerCpuProfile(
        root_pid=root_pid,
        roles=roles,
        total_cores_mean=round(mean_cores(sum(role_cpu_s.values())), 4),
        total_cores_p95=_percentile(total_series, 95),
        total_cores_max=_percentile(total_series, 100),
        top_processes=processes[:TOP_PROCESSES],
        samples=len(window),
        window_s=round(window_s, 4),
        interval_s=interval_s,
        affinity=affinity,
        host_cpus=host_cpus,
    )


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4) if values else 0.0


def make_process_sampler(pid: int | None, *, interval_s: float = DEFAULT_INTERVAL_S) -> CpuSampler:
    """A sampler of the process tree under `pid`, or NotAvailableCpuSampler when there is none to watch."""
    if pid is None:
        return NotAvailableCpuSampler("no server process id (server not started by us)")
    try:
        sampler = ProcessCpuSampler(pid, interval_s=interval_s)
        sampler._root.cpu_times()
    except _GONE as exc:
        return NotAvailableCpuSampler(f"cannot watch process {pid}: {type(exc).__name__}")
    return sampler
