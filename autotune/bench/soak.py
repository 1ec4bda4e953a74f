"""A soak: one steady open-loop rate against a running server for a long time, with the server's memory, open
file descriptors and latencies recorded as series, then judged against stated bounds.

    record = run_soak("http://127.0.0.1:8000", SoakSettings(rate_rps=10, duration_s=1800), server_pid=PID)
    problems = judge(record)            # [] when it held; each problem in words
    plot_soak(record, Path("soak.png"))  # autotune.bench.soak_plot

The load is `run_benchmark` in `rate` mode (constant arrivals computed up front, the usual client, workload
and records). Beside it a thread samples, every `sample_interval_s`, the RSS and open descriptors summed over
the server's process tree (`server_pid` and its children, on this host; none without a pid; the RSS also by
vLLM process role: API servers, engine cores, GPU workers, other), its PSS likewise (proportional set size: a
page shared by several processes of the tree, such as vLLM's shared-memory queues or a fork's copy-on-write pages,
is counted once in the sum instead of once per process), once a progress line each role's PSS by the kind of
mapping that holds it (autotune.observe.memory_maps: the GPU driver's pinned host buffers, C heap, anonymous, shared
memory, files; a memory verdict names the kind that grew) and the GPUs' used memory (NVML; none without). The run
is cut into windows of `window_s` by send time, after `settle_s` of settling (a window of its own that no bound
judges: a fresh server's allocator arenas, pinned host buffers and queues fill to their working size under the
first minutes of a new load; a leak goes on growing after it); the verdict compares the last window with the first
judged one:
- errors: no request failed (warm-up excluded);
- memory: max PSS of the last window <= max PSS of the first window + `memory_growth_mib` (RSS where PSS was not
  sampled; the first window absorbs warm-up allocations; a leak shows as growth after it; a broken bound quotes the
  last window's growth rate, near 0 for a fill that levelled off);
- descriptors: the fewest open fds of the last window <= the fewest of the first window + `fd_growth` (a leak
  raises the floor; the sockets of requests in flight come and go with the latency, and a slower host holds more);
- latency: p99 TTFT and p99 E2E latency of the last window <= `p99_ratio` x those of the first + `p99_slack_ms`;
- the client kept up (a saturated load generator measures itself, not the server).
While it runs, the soak prints a progress line at least once a minute (memory by role and mapping kind, descriptors,
GPU memory) and a line per window but the last once its requests have finished (autotune.bench.soak_live): a run
cut off before its record keeps both, and `autotune soak-progress` reads them back (autotune.bench.soak_progress).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import psutil
from pydantic import AliasChoices, Field, model_validator

from autotune.bench.runner import run_benchmark
from autotune.bench.schemas import SLO, LoadSpec, RequestRecord
from autotune.bench.soak_live import LiveWindows
from autotune.bench.soak_windows import SoakWindow, request_figures, window_spans
from autotune.bench.workload import Workload, resolve_workload
from autotune.base_models import ClosedModel
from autotune.observe.cpu import ProcessIdentity, Role, resolve_roles
from autotune.observe.gpu import gpu_memory_used_mib
from autotune.observe.memory_maps import MappingKind, pss_by_mapping_kind

_MIB = 2**20
_MAX_ERRORS_KEPT = 20
PROGRESS_EVERY_S = 60.0  # a progress line at least this often, whatever the window


class SoakBounds(ClosedModel):
    """What 'no growth' and 'stable' mean for one soak (the verdict's criteria)."""

    memory_growth_mib: Annotated[float, Field(ge=0)] = Field(
        default=32.0, validation_alias=AliasChoices("memory_growth_mib", "rss_growth_mib"),  # records before PSS
        description="Allowed rise of the server's memory (its PSS, else RSS) from the first window's max to the last's",
    )
    fd_growth: Annotated[int, Field(ge=0)] = Field(default=8, description="Allowed rise of its open file descriptors, likewise")
    p99_ratio: Annotated[float, Field(ge=1)] = Field(default=1.5, description="Last window's p99 / first window's p99 allowed")
    p99_slack_ms: Annotated[float, Field(ge=0)] = Field(
        default=100.0, description="Added to the ratio's bound (absolute jitter of a shared host)"
    )
    max_errors: Annotated[int, Field(ge=0)] = 0

    def p99_limit_ms(self, first_ms: float) -> float:
        """The highest p99 the last window may have, given the first judged window's."""
        return self.p99_ratio * first_ms + self.p99_slack_ms


class SoakSettings(ClosedModel):
    rate_rps: Annotated[float, Field(gt=0)]
    duration_s: Annotated[float, Field(gt=0)]
    workload: str = Field(default="vlm-chat", description="Built-in workload name or YAML file")
    window_s: Annotated[float, Field(gt=0)] = 60.0
    settle_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Seconds under load before the first judged window (recorded as a window of its own)"
    )
    sample_interval_s: Annotated[float, Field(gt=0)] = 1.0
    warmup_requests: Annotated[int, Field(ge=0)] = 8
    seed: int = 0
    client_processes: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Client processes sharing the rate (default: sized from the rate, re-run when saturated)"
    )
    bounds: SoakBounds = Field(default_factory=SoakBounds)

    @model_validator(mode="after")
    def _judged_time_left(self) -> SoakSettings:
        if self.settle_s >= self.duration_s:
            raise ValueError(f"settle_s ({self.settle_s:g}) must be shorter than duration_s ({self.duration_s:g}): "
                             "the windows after it are the ones judged")
        return self


class ResourceSample(ClosedModel):
    t_s: float = Field(description="Seconds since the load started")
    rss_mib: float | None = None
    rss_by_role_mib: dict[Role, float] | None = Field(
        default=None, description="The RSS of the tree by vLLM process role (autotune.observe.cpu.resolve_roles)"
    )
    pss_mib: float | None = Field(default=None, description="The tree's PSS: its shared pages counted once")
    pss_by_role_mib: dict[Role, float] | None = Field(default=None, description="The PSS of the tree by vLLM process role")
    pss_by_role_and_mapping_mib: dict[Role, dict[MappingKind, float]] | None = Field(
        default=None,
        description="The PSS of each role by the kind of mapping that holds it (autotune.observe.memory_maps: pinned "
        "host buffers of the GPU driver, C heap, anonymous, shared memory, files); read once a progress line",
    )
    open_fds: int | None = None
    processes: int | None = None
    gpu_memory_used_mib: float | None = None
    read_ms: float | None = Field(
        default=None, description="Time this sample took to read (PSS walks each process's page tables under its memory map lock)"
    )

    def memory_mib(self) -> tuple[float | None, dict[Role, float] | None]:
        """(tree total, by role) of the measure the verdict judges: the PSS where sampled, else the RSS."""
        if self.pss_mib is not None:
            return self.pss_mib, self.pss_by_role_mib
        return self.rss_mib, self.rss_by_role_mib


class SoakRecord(ClosedModel):
    kind: str = "autotune-soak"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    url: str
    settings: SoakSettings
    simulated: bool
    server_pid: int | None = None
    sent: int
    failed: int
    errors: list[str] = Field(default_factory=list, description=f"The first {_MAX_ERRORS_KEPT} error messages")
    client_saturated: bool = False
    client_note: str | None = None
    client_processes: int | None = Field(default=None, description="Client processes that sent the load")
    windows: list[SoakWindow]
    samples: list[ResourceSample]
    requests: list[tuple[float, float | None, float | None, bool]] = Field(
        default_factory=list,
        description="(send time s to 1 ms, TTFT ms and E2E latency ms to 0.1 ms, success) per measured request",
    )
    problems: list[str] = Field(default_factory=list, description="The verdict: empty when every bound held")
    packed: str | None = Field(
        default=None, description="How `autotune pack` rounded the per-request times after the windows were computed",
    )


class ResourceSampler:
    """Samples the server's process tree (RSS, open fds) and GPU memory in a thread until stopped; each sample
    carries its wall-clock time (the benchmark's send times count from its window's wall-clock start)."""

    def __init__(
        self, server_pid: int | None, interval_s: float, *, report: Callable[[str], None] | None = None,
        report_every_s: float = 60.0,
    ) -> None:
        """`report`: called every `report_every_s` with a line on the latest sample (a long soak's progress)."""
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.report = report
        self.report_every_s = report_every_s
        self.samples: list[tuple[float, ResourceSample]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample_once(self, *, with_mappings: bool = False) -> tuple[float, ResourceSample]:
        """`with_mappings`: also each role's PSS by mapping kind (slow: it walks every mapping of every process)."""
        started = time.perf_counter()
        usage = _tree_usage(self.server_pid, with_mappings=with_mappings) if self.server_pid is not None else None
        gpu_memory = _gpu_memory_used_mib()
        return time.time(), ResourceSample(
            t_s=0.0,
            rss_mib=None if usage is None else usage.rss_mib,
            rss_by_role_mib=None if usage is None else usage.rss_by_role_mib,
            pss_mib=None if usage is None else usage.pss_mib,
            pss_by_role_mib=None if usage is None else usage.pss_by_role_mib,
            pss_by_role_and_mapping_mib=None if usage is None else usage.pss_by_role_and_mapping_mib,
            open_fds=None if usage is None else usage.open_fds,
            processes=None if usage is None else usage.processes,
            gpu_memory_used_mib=gpu_memory,
            read_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def series(self, origin_unix_s: float) -> list[ResourceSample]:
        """The samples with `t_s` counted from `origin_unix_s` (those before it are negative: the warm-up)."""
        return [sample.model_copy(update={"t_s": round(at - origin_unix_s, 3)}) for at, sample in self.samples]

    def _loop(self) -> None:
        started = next_report = time.monotonic()
        while not self._stop.is_set():
            due = time.monotonic() >= next_report  # a progress line, and the memory by mapping kind with it
            self.samples.append(self.sample_once(with_mappings=due))
            if due:
                next_report += self.report_every_s
                if self.report is not None:
                    self.report(progress_line(time.monotonic() - started, self.samples[-1][1]))
            self._stop.wait(self.interval_s)


def progress_line(elapsed_s: float, sample: ResourceSample) -> str:
    """'soak: 120 s in: server RSS 812.3 MiB, PSS 640.1 MiB (api_server 400.0, engine_core 240.1), 16 open fds,
    3 processes, GPU memory 70284 MiB': the memory by role too, so that a run cut off before its record is written
    still says which process grew."""
    by_role = sample.memory_mib()[1]
    roles = f" ({', '.join(f'{role} {mib}' for role, mib in sorted(by_role.items()))})" if by_role else ""
    memory_text = f"PSS {sample.pss_mib} MiB{roles}" if sample.pss_mib is not None else None
    parts = [text for value, text in (
        (sample.rss_mib, f"server RSS {sample.rss_mib} MiB" + ("" if memory_text else roles)),
        (sample.pss_mib, memory_text),
        (sample.open_fds, f"{sample.open_fds} open fds"), (sample.processes, f"{sample.processes} processes"),
        (sample.gpu_memory_used_mib, f"GPU memory {sample.gpu_memory_used_mib} MiB"),
    ) if value is not None]
    mappings = "".join(
        f"; {role} by mapping: " + ", ".join(f"{kind} {mib}" for kind, mib in _largest(kinds, MAPPING_KINDS_SHOWN))
        for role, kinds in sorted((sample.pss_by_role_and_mapping_mib or {}).items())
    )
    return f"soak: {elapsed_s:.0f} s in: " + (", ".join(parts) or "no server process sampled") + mappings


MAPPING_KINDS_SHOWN = 3  # a progress line names each role's largest mapping kinds


def _largest(kinds: dict[MappingKind, float], count: int) -> list[tuple[MappingKind, float]]:
    return sorted(kinds.items(), key=lambda item: -item[1])[:count]


@dataclass(frozen=True, slots=True)
class TreeUsage:
    rss_mib: float
    rss_by_role_mib: dict[Role, float]
    pss_mib: float | None  # None when a process's smaps could not be read
    pss_by_role_mib: dict[Role, float] | None
    pss_by_role_and_mapping_mib: dict[Role, dict[MappingKind, float]] | None  # None unless asked for, or unreadable
    open_fds: int
    processes: int


def _memory(process: psutil.Process) -> tuple[int, int | None]:
    """(RSS, PSS) in bytes; PSS None where smaps is not readable (another user's process, a non-Linux host)."""
    try:
        full = process.memory_full_info()
    except (psutil.AccessDenied, NotImplementedError):
        return process.memory_info().rss, None
    return full.rss, getattr(full, "pss", None)


def _tree_usage(pid: int, *, with_mappings: bool = False) -> TreeUsage | None:
    """RSS and PSS (in all and by vLLM role; `with_mappings`: each role's PSS by mapping kind too), open fds and
    processes of `pid` and its descendants; None when it is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    identities: list[ProcessIdentity] = []
    rss: dict[int, int] = {}
    pss: dict[int, int | None] = {}
    kinds: dict[int, dict[MappingKind, float] | None] = {}
    fds = 0
    for process in processes:
        try:
            with process.oneshot():
                memory, process_fds, identity = _memory(process), process.num_fds(), ProcessIdentity.of(process)
        except psutil.Error:
            continue  # a child that exited between the listing and the read: none of its figures counted
        if with_mappings:
            kinds[process.pid] = pss_by_mapping_kind(process)
        rss[process.pid], pss[process.pid] = memory
        fds += process_fds
        identities.append(identity)
    roles = resolve_roles(identities)
    complete_pss = {p: v for p, v in pss.items() if v is not None}
    has_pss = len(complete_pss) == len(rss)  # a sum without one process's PSS would understate the tree
    return TreeUsage(
        rss_mib=round(sum(rss.values()) / _MIB, 2),
        rss_by_role_mib=_by_role(rss, roles),
        pss_mib=round(sum(complete_pss.values()) / _MIB, 2) if has_pss else None,
        pss_by_role_mib=_by_role(complete_pss, roles) if has_pss else None,
        pss_by_role_and_mapping_mib=_kinds_by_role(kinds, roles) if with_mappings else None,
        open_fds=fds,
        processes=len(processes),
    )


def _kinds_by_role(
    kinds_by_pid: dict[int, dict[MappingKind, float] | None], roles: dict[int, Role],
) -> dict[Role, dict[MappingKind, float]] | None:
    """Each role's PSS by mapping kind; None when one process's maps could not be read (a partial sum would mislead)."""
    if any(kinds_by_pid.get(process_pid) is None for process_pid in roles):
        return None
    by_role: dict[Role, dict[MappingKind, float]] = {}
    for process_pid, role in roles.items():
        totals = by_role.setdefault(role, {})
        for kind, mib in (kinds_by_pid[process_pid] or {}).items():
            totals[kind] = totals.get(kind, 0.0) + mib
    return {role: {kind: round(mib, 2) for kind, mib in sorted(totals.items())} for role, totals in sorted(by_role.items())}


def _by_role(bytes_by_pid: dict[int, int], roles: dict[int, Role]) -> dict[Role, float]:
    by_role: dict[Role, float] = {}
    for process_pid, role in roles.items():
        by_role[role] = by_role.get(role, 0.0) + bytes_by_pid[process_pid] / _MIB
    return {role: round(value, 2) for role, value in sorted(by_role.items())}


def _gpu_memory_used_mib() -> float | None:
    used = gpu_memory_used_mib()
    return None if not used else round(float(sum(used)), 1)


def _rounded_ms(value: float | None) -> float | None:
    """A latency as the record keeps it, to 0.1 ms (the windows' percentiles are computed before rounding)."""
    return None if value is None else round(value, 1)


def _max(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _max_by_role(by_role_series: Sequence[dict[Role, float] | None]) -> dict[Role, float] | None:
    by_role: dict[Role, float] = {}
    for sample in by_role_series:
        for role, value in (sample or {}).items():
            by_role[role] = max(by_role.get(role, value), value)
    return by_role or None


def _largest_growth_role(first: dict[Role, float] | None, last: dict[Role, float] | None) -> tuple[Role, float] | None:
    """The role that grew most from `first` to `last` and by how much (MiB); None unless both have roles."""
    if not first or not last:
        return None
    growth = {role: value - first.get(role, 0.0) for role, value in last.items()}
    role = max(growth, key=lambda name: growth[name])
    return role, growth[role]


def _growth_by_mapping(record: SoakRecord, first: SoakWindow, last: SoakWindow, role: Role) -> str:
    """' (of which gpu_driver mappings +X MiB, heap +Y MiB)': the role's growth by mapping kind, from the last sample
    of the first judged window that has it to the last of the last window (mappings are read once a progress line;
    the last of a window is the nearest to its max under growth); '' without two such samples."""
    def kinds_in(window: SoakWindow) -> list[dict[MappingKind, float]]:
        return [s.pss_by_role_and_mapping_mib[role] for s in record.samples
                if window.start_s <= s.t_s <= window.end_s and s.pss_by_role_and_mapping_mib
                and role in s.pss_by_role_and_mapping_mib]
    before, after = kinds_in(first), kinds_in(last)
    if not before or not after or before[-1] is after[-1]:
        return ""
    growth = {kind: after[-1].get(kind, 0.0) - before[-1].get(kind, 0.0) for kind in {*before[-1], *after[-1]}}
    grown = [(kind, mib) for kind, mib in sorted(growth.items(), key=lambda item: -item[1])[:2] if mib > 0]
    if not grown:
        return ""
    return " (of which " + ", ".join(f"{kind} mappings +{mib:.1f} MiB" for kind, mib in grown) + ")"


def windows_of(
    requests: Sequence[RequestRecord], samples: Sequence[ResourceSample], *, duration_s: float, window_s: float,
    settle_s: float = 0.0,
) -> list[SoakWindow]:
    """Cut the run into windows of `window_s` by send time (the last one may be shorter, but not under half), after
    a settling window [0, settle_s) when `settle_s` > 0."""
    spans = window_spans(duration_s=duration_s, window_s=window_s, settle_s=settle_s)
    windows: list[SoakWindow] = []
    for index, (begin, end) in enumerate(spans):
        last = index + 1 == len(spans)
        inside = [r for r in requests if begin <= r.send_time_s < end or (last and r.send_time_s >= end)]
        sampled = [s for s in samples if begin <= s.t_s < end or (last and s.t_s >= end)]
        fds = _max([s.open_fds for s in sampled])
        fds_floor = min((s.open_fds for s in sampled if s.open_fds is not None), default=None)
        windows.append(
            SoakWindow(
                start_s=round(begin, 3),
                end_s=round(end, 3),
                settling=settle_s > 0 and index == 0,
                **request_figures(inside),
                rss_max_mib=_max([s.rss_mib for s in sampled]),
                rss_max_by_role_mib=_max_by_role([s.rss_by_role_mib for s in sampled]),
                pss_max_mib=_max([s.pss_mib for s in sampled]),
                pss_max_by_role_mib=_max_by_role([s.pss_by_role_mib for s in sampled]),
                fds_max=None if fds is None else int(fds),
                fds_min=fds_floor,
                gpu_memory_max_mib=_max([s.gpu_memory_used_mib for s in sampled]),
            )
        )
    return windows


def _memory_growth(record: SoakRecord, first: SoakWindow, last: SoakWindow) -> tuple[str, float, str] | None:
    """(measure, growth MiB from the first window's max to the last's, the role that grew most and, for PSS, its
    mapping kinds): PSS where both windows have it (shared pages counted once), else RSS; None without memory
    samples."""
    if first.pss_max_mib is not None and last.pss_max_mib is not None:
        largest = _largest_growth_role(first.pss_max_by_role_mib, last.pss_max_by_role_mib)
        where = "" if largest is None else (f"; most in {largest[0]} processes (+{largest[1]:.1f} MiB)"
                                             + _growth_by_mapping(record, first, last, largest[0]))
        return "PSS", last.pss_max_mib - first.pss_max_mib, where
    if first.rss_max_mib is not None and last.rss_max_mib is not None:
        largest = _largest_growth_role(first.rss_max_by_role_mib, last.rss_max_by_role_mib)
        where = "" if largest is None else f"; most in {largest[0]} processes (+{largest[1]:.1f} MiB)"
        return "RSS", last.rss_max_mib - first.rss_max_mib, where
    return None


def _last_window_rate(record: SoakRecord, measure: str) -> str:
    """'; +X MiB/min in the last window' (least squares over its samples under load): a fill that levels off shows a rate
    near 0 there, a leak the rate it had all along; '' with fewer than 3 samples."""
    last = record.windows[-1]
    points = [(s.t_s, s.pss_mib if measure == "PSS" else s.rss_mib) for s in record.samples
              if last.start_s <= s.t_s <= last.end_s]  # under load: not the drain after it
    present = [(t, v) for t, v in points if v is not None]
    if len(present) < 3 or len({t for t, _ in present}) < 2:
        return ""
    slope = statistics.linear_regression([t for t, _ in present], [v for _, v in present]).slope
    return f"; {slope * 60:+.1f} MiB/min in the last window"


def judged_windows(record: SoakRecord) -> list[SoakWindow]:
    """The windows the verdict compares: all but the settling one."""
    return [window for window in record.windows if not window.settling]


def first_judged_label(window: SoakWindow) -> str:
    """'first judged window', with '(after N s of settling)' when a settling span came before it."""
    return "first judged window" + (f" (after {window.start_s:g} s of settling)" if window.start_s > 0 else "")


def judge(record: SoakRecord, bounds: SoakBounds | None = None) -> list[str]:
    """Each bound the soak broke, in words (empty: it held). Needs at least two windows to speak of growth."""
    bounds = bounds or record.settings.bounds
    problems: list[str] = []
    if record.failed > bounds.max_errors:
        problems.append(f"{record.failed} request(s) failed (allowed {bounds.max_errors}): {record.errors[:3]}")
    if record.client_saturated:
        problems.append(f"the load generator fell behind ({record.client_note}): it measured itself, not the server")
    judged = judged_windows(record)
    if len(judged) < 2:
        problems.append(f"{len(judged)} judged window(s): a soak needs at least two to compare")
        return problems
    first, last = judged[0], judged[-1]
    memory = _memory_growth(record, first, last)
    if memory is not None and memory[1] > bounds.memory_growth_mib:
        name, growth, by_role = memory
        problems.append(
            f"server {name} grew {growth:.1f} MiB from the {first_judged_label(first)} to the last "
            f"(bound {bounds.memory_growth_mib:g} MiB){by_role}{_last_window_rate(record, name)}"
        )
    if first.fds_min is not None and last.fds_min is not None and last.fds_min > first.fds_min + bounds.fd_growth:
        problems.append(
            f"open file descriptors grew from at least {first.fds_min} to at least {last.fds_min} (bound +{bounds.fd_growth})"
        )
    for name in ("ttft_p99_ms", "e2el_p99_ms"):
        before, after = getattr(first, name), getattr(last, name)
        if before is None or after is None:
            problems.append(f"{name}: no successful request in the first or the last window")
            continue
        limit = bounds.p99_limit_ms(before)
        if after > limit:
            problems.append(f"{name} rose from {before:.0f} to {after:.0f} ms (bound {limit:.0f} ms)")
    return problems


async def soak_async(
    url: str, settings: SoakSettings, *, server_pid: int | None = None, workload: Workload | None = None,
    model: str | None = None, api_key: str | None = None, report: Callable[[str], None] | None = None,
) -> SoakRecord:
    """`report`: called once a window, or every PROGRESS_EVERY_S when windows are longer, with a line on the server's
    latest sample (the soak's progress), and with a line on each window but the last once its requests are done
    (autotune.bench.soak_live)."""
    load = LoadSpec(
        mode="rate", rate_rps=settings.rate_rps, arrival="constant", num_requests=None, duration_s=settings.duration_s,
        warmup_requests=settings.warmup_requests, seed=settings.seed, client_processes=settings.client_processes,
    )
    sampler = ResourceSampler(server_pid, settings.sample_interval_s, report=report,
                              report_every_s=min(settings.window_s, PROGRESS_EVERY_S))
    live = None
    if report is not None:  # each window told once its requests are done: a run cut off later keeps its latencies
        live = LiveWindows(duration_s=settings.duration_s, window_s=settings.window_s, settle_s=settings.settle_s,
                           report=report)
    sampler.start()
    try:
        bench = await run_benchmark(
            url, workload or resolve_workload(settings.workload), load, SLO(), model=model, api_key=api_key, telemetry=False,
            progress=live or False,
        )
    finally:
        sampler.stop()
    measured = [r for r in bench.requests if not r.warmup]
    assert bench.window_start_unix_s is not None  # rate mode runs one window
    samples = sampler.series(bench.window_start_unix_s)
    errors = [r.error for r in measured if r.error]
    record = SoakRecord(
        url=bench.url,
        settings=settings,
        simulated=bench.simulated,
        server_pid=server_pid,
        sent=len(measured),
        failed=sum(not r.success for r in measured),
        errors=errors[:_MAX_ERRORS_KEPT],
        client_saturated=bench.summary.client.saturated,
        client_note=bench.summary.client.reason,
        client_processes=bench.summary.client.processes,
        windows=windows_of(measured, samples, duration_s=settings.duration_s, window_s=settings.window_s,
                           settle_s=settings.settle_s),
        samples=samples,
        requests=[(round(r.send_time_s, 3), _rounded_ms(r.ttft_ms), _rounded_ms(r.e2el_ms), r.success) for r in measured],
    )
    record.problems = judge(record)
    return record


def run_soak(url: str, settings: SoakSettings, **kwargs: object) -> SoakRecord:
    """`soak_async` from synchronous code (its own event loop)."""
    return asyncio.run(soak_async(url, settings, **kwargs))  # type: ignore[arg-type]
