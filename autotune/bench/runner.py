"""Run a benchmark: discover the server, prepare requests, drive the load, summarize, record.

Public API (the tuner calls these):
    await run_benchmark(url, workload, load, slo, *, model=None, api_key=None, telemetry=True, progress=False)
    run_benchmark_sync(...)  # the same, from synchronous code

Modes (LoadSpec.mode): `concurrency` (closed loop), `rate` (open loop, Poisson or constant
arrivals), `sweep` (GuideLLM-style: a closed-loop run at high concurrency measures the max rate,
then open-loop runs at rates from max/steps up to max, stopping once the server falls behind
(requests complete at < 90% of the rate they were sent, first to last), errors rise by 5 points, or the client saturates),
`slo_rate` (the tuner's objective: a closed-loop probe at `concurrency` measures the capacity and the latency scale,
then steady-state open-loop windows (`autotune.bench.steady`: ramp and drain left out, sized from the latency unless
`slo_rate_window_s` fixes them) at rates chosen by `autotune.bench.rate_search` (fractions of the capacity, then
bisection to `slo_rate_tolerance`; or bisection from `slo_rate_bracket`, without a probe). The highest rate whose window
kept pace and met the SLO's p99s is `slo_rate_rps`, and that window is the summary, so its figures (GPU included) are
those of its steady part at the rate reported; every window's verdict is in its `steady` section).
Request bodies are rendered before each measured window (synthetic ones once per seed: they are cached on
disk, see body_cache.py); warm-up requests run first and are recorded but excluded from the summary. No request
reaches the server twice unless the workload declares it (request_source.py); every window reports the server's
prefix- and multimodal-cache hit rates against the workload's declared sharing (`Summary.cache`; a cache-flattered
window never passes), and the client sizes itself from its measured cost (client_capacity.py); a window whose
client saturated is run again with more processes, up to the client's cores (`ClientHealth.discarded_attempts`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from autotune.bench.cache_reset import reset_server_caches
from autotune.bench.client import Outcome, PreparedRequest
from autotune.bench.client_capacity import ClientCost, client_cost
from autotune.bench.discovery import ServerInfo, auth_headers, discover_server
from autotune.bench.environment import hardware, versions
from autotune.bench.health import assess
from autotune.bench.metrics import completion_rate_rps, compute_summary, measured, send_rate_rps
from autotune.bench.prepare import REQUESTS_PER_SEED
from autotune.bench.processes import ClientProcesses, run_plans
from autotune.bench.progress import NoProgress, ProgressReporter, RichProgress
from autotune.bench.rate_search import RateSearch
from autotune.bench.request_source import RequestSource
from autotune.bench.schedule import (
    arrival_offsets_s,
    choose_client_processes,
    deal_round_robin,
    max_client_processes,
    next_client_processes,
    split_evenly,
)
from autotune.bench.schemas import SLO, BenchResult, DiscardedAttempt, LoadSpec, RequestRecord, Summary
from autotune.bench.steady import LatencySource, WindowPlan, cut_window, e2el_p90_s, judge_window, plan_window
from autotune.bench.trace import ReplaySchedule, replay_schedule
from autotune.bench.window_checks import cache_hits, window_unusable_reason
from autotune.bench.worker import WorkerPlan
from autotune.bench.workload import Workload
from autotune.observe.cpu import CpuSampler, make_process_sampler
from autotune.observe.gpu import GpuSampler, make_gpu_sampler
from autotune.observe.prometheus import MetricsPoller, wait_until_idle
from autotune.observe.stacks.gate import StackProfileGate

log = logging.getLogger(__name__)

SWEEP_CONCURRENCY = 64
"""Closed-loop concurrency of the sweep's max-throughput run when LoadSpec.concurrency is unset."""
SWEEP_MIN_ACHIEVED_FRACTION = 0.9
SWEEP_MAX_ERROR_RISE = 0.05
CLOSED_LOOP_POOL_MIN = 64
CLOSED_LOOP_POOL_MAX = 8192
SIZING_SAMPLE = 16
"""Requests whose mean body size and output tokens size the client of a window (client_capacity.py)."""
GONE_CHECK_TIMEOUT_S = 5.0
"""After a window that completed nothing: how long the server has to answer `GET /v1/models` before the run stops."""
CLOSED_LOOP_RPS_PER_STREAM = 2.0
"""A closed loop bounded by duration only renders this many requests per second per stream, distinct ones; a window
that uses them all ends early rather than send one twice (unless the dataset allows repeats)."""


@dataclass(frozen=True, slots=True)
class PhaseLoad:
    """One measured window: a closed loop at `concurrency` or an open loop at `rate_rps`."""

    index: int
    kind: Literal["closed", "open"]
    concurrency: int | None = None
    rate_rps: float | None = None
    window: WindowPlan | None = None
    """Open loop: a steady-state window (slo_rate); None: bounded by LoadSpec.num_requests/duration_s."""

    @property
    def label(self) -> str:
        return f"concurrency {self.concurrency}" if self.kind == "closed" else f"rate {self.rate_rps:.2f} req/s"

    @property
    def slug(self) -> str:
        """A file-name label: `phase00-c256`, `phase03-rate52.10`."""
        load = f"c{self.concurrency}" if self.kind == "closed" else f"rate{self.rate_rps:.2f}"
        return f"phase{self.index:02d}-{load}"


@dataclass(slots=True)
class PhaseResult:
    summary: Summary
    records: list[RequestRecord]


def _record(outcome: Outcome) -> RequestRecord:
    return RequestRecord.model_validate(dataclasses.asdict(outcome))


class _Benchmark:
    def __init__(
        self, server: ServerInfo, workload: Workload, load: LoadSpec, slo: SLO, api_key: str | None,
        sampler: GpuSampler, progress: ProgressReporter, cpu_sampler: CpuSampler,
        stack_gate: StackProfileGate | None = None,
    ) -> None:
        self.server = server
        self.stack_gate = stack_gate
        self.workload = workload
        self.load = load
        self.slo = slo
        self.sampler = sampler
        self.cpu_sampler = cpu_sampler
        self.progress = progress
        self.api_key = api_key
        self.headers = {"Content-Type": "application/json", **auth_headers(api_key)}
        self.chat_url = f"{server.base_url}/v1/chat/completions"
        self.requests = RequestSource(workload, server.model, reset_between_windows=load.reset_caches)
        # Each seed owns its own block of request indexes: runs against the same server with different
        # seeds (the tuner's warm-up and measurement, successive CLI runs) never repeat an image or prompt,
        # so vLLM's prefix and multimodal caches cannot flatter the second run.
        self.next_index = load.seed * REQUESTS_PER_SEED + load.first_request
        self.first_window_monotonic: float | None = None
        self.replay: ReplaySchedule | None = None  # load mode replay: the trace's send times
        self._client_cost: ClientCost | None = None
        self.client_processes: ClientProcesses | None = None
        """Spawned client processes, kept across windows (closed by run_benchmark)."""
        self.first_window_wall: float | None = None
        self.on_window: Callable[[Summary, bool], None] | None = None
        """Told each measured window's summary as the window ends, and whether the engine is simulated
        (autotune.bench.window_log)."""

    def _build(self, count: int, what: str = "window") -> list[PreparedRequest]:
        first = self.next_index
        self.next_index += count
        return self.requests.take(first, count, what=what)

    def _closed_pool(self, concurrency: int) -> int:
        """Distinct requests for a closed loop bounded by duration only (a dataset: at most what it has left)."""
        duration = self.load.duration_s or 0.0
        pool = min(max(math.ceil(concurrency * duration * CLOSED_LOOP_RPS_PER_STREAM), CLOSED_LOOP_POOL_MIN), CLOSED_LOOP_POOL_MAX)
        lines = self.requests.dataset_lines
        if lines is not None and not self._repeats_allowed():
            used = 0 if self.load.reset_caches else self.next_index % REQUESTS_PER_SEED
            pool = min(pool, max(1, lines - used))
        return pool

    def _repeats_allowed(self) -> bool:
        dataset = self.workload.dataset
        return dataset is not None and dataset.allow_repeats

    def _processes(self, phase: PhaseLoad, requests: list[PreparedRequest]) -> tuple[int, float | None]:
        """Client processes for this window and the share of a core each is planned to use (open loop)."""
        if self.load.client_processes is not None:
            return self.load.client_processes, None
        if phase.rate_rps is not None and not requests:  # nothing to send
            return 1, None
        cpu_s = None
        if phase.rate_rps is not None and requests:
            if self._client_cost is None:
                self._client_cost = client_cost()
            body = sum(len(r.body) for r in requests) / len(requests)
            tokens = sum(r.max_tokens for r in requests) / len(requests)
            cpu_s = self._client_cost.cpu_s_per_request(body, tokens)
        processes = choose_client_processes(
            concurrency=phase.concurrency, rate_rps=phase.rate_rps, client_cpus=self.load.client_cpus,
            cpu_s_per_request=cpu_s,
        )
        share = None if cpu_s is None or phase.rate_rps is None else phase.rate_rps * cpu_s / processes
        return processes, share

    def _plans(self, phase: PhaseLoad, warmup_count: int, processes: int | None = None) -> tuple[list[WorkerPlan], float | None]:
        load = self.load
        warmup = self._build(warmup_count, "warm-up")
        offsets: list[float] | None = None
        cycle_stride: int | None = None
        if phase.kind == "open" and self.replay is not None:  # the trace's own send times
            self.next_index = self.replay.first_index(self.next_index)
            offsets = self.replay.offsets_s
            count = len(offsets)
        elif phase.kind == "open":
            assert phase.rate_rps is not None
            bounds = (
                {"num_requests": load.num_requests, "duration_s": load.duration_s}
                if phase.window is None
                else {"num_requests": None, "duration_s": phase.window.schedule_s}
            )
            offsets = arrival_offsets_s(phase.rate_rps, load.arrival, seed=load.seed + phase.index, **bounds)
            count = len(offsets)
        else:
            assert phase.concurrency is not None
            if load.num_requests is not None:
                count = load.num_requests
            else:  # bounded by duration only: distinct requests, reused only where the dataset allows repeats
                count = self._closed_pool(phase.concurrency)
                cycle_stride = count if self._repeats_allowed() else None
        share: float | None = None
        if processes is None:  # sized from a sample, so that the processes start while the rest is rendered
            processes, share = self._processes(phase, self.requests.sample(self.next_index, min(count, SIZING_SAMPLE)))
        if phase.concurrency is not None:
            processes = min(processes, phase.concurrency)
        if self._spawns(processes):
            self._client_pool().ensure(processes)
        requests = self._build(count)
        cpus = load.client_cpus
        concurrencies = split_evenly(phase.concurrency, processes) if phase.concurrency else [None] * processes
        if phase.kind == "open":
            assert offsets is not None
            request_parts = deal_round_robin(requests, processes)
            offset_parts: list[list[float] | None] = list(deal_round_robin(offsets, processes))
        else:
            counts = split_evenly(len(requests), processes)
            starts = [sum(counts[:i]) for i in range(processes)]
            request_parts = [requests[s : s + c] for s, c in zip(starts, counts, strict=True)]
            offset_parts = [None] * processes
        warmup_parts = deal_round_robin(warmup, processes)
        return [
            WorkerPlan(
                worker_id=i,
                chat_url=self.chat_url,
                headers=self.headers,
                requests=request_parts[i],
                offsets_s=offset_parts[i],
                concurrency=concurrencies[i],
                duration_s=load.duration_s,
                cycle_stride=cycle_stride,
                warmup=warmup_parts[i],
                warmup_concurrency=max(1, min(len(warmup_parts[i]), concurrencies[i] or 8)),
                phase=phase.index,
                wait_for_s=None if phase.window is None else phase.window.send_s,
                deadline_s=None if phase.window is None else phase.window.schedule_s,
                cpus=None if not cpus else ([cpus[i % len(cpus)]] if len(cpus) >= processes else list(cpus)),
            )
            for i in range(processes)
        ], share

    async def run_phase(self, phase: PhaseLoad, warmup_count: int = 0) -> PhaseResult:
        """Measure one window; while its client saturates, measure it again with more processes (fresh requests)."""
        limit = max_client_processes(self.load.client_cpus)
        discarded: list[DiscardedAttempt] = []
        processes: int | None = None
        while True:
            result = await self._run_attempt(phase, warmup_count, processes)
            client = result.summary.client
            more = None if self.load.client_processes is not None else next_client_processes(
                client.processes, client.cpu_util_max, limit
            )
            if not client.saturated or more is None:
                break
            log.warning(
                "%s: the client saturated with %d process(es) (%s); measuring again with %d",
                phase.label, client.processes, client.reason, more,
            )
            discarded.append(DiscardedAttempt(processes=client.processes, reason=client.reason or "saturated"))
            processes, warmup_count = more, 0
        client = result.summary.client.model_copy(update={"max_processes": limit, "discarded_attempts": discarded})
        return PhaseResult(result.summary.model_copy(update={"client": client}), result.records)

    def _spawns(self, processes: int) -> bool:
        return processes > 1 or bool(self.load.client_cpus)

    def _client_pool(self) -> ClientProcesses:
        if self.client_processes is None:
            self.client_processes = ClientProcesses()
        return self.client_processes

    async def _run_attempt(self, phase: PhaseLoad, warmup_count: int, processes: int | None) -> PhaseResult:
        plans, share = self._plans(phase, warmup_count, processes)
        spawn = self._spawns(len(plans))
        unbounded = (phase.kind == "closed" and self.load.num_requests is None) or phase.window is not None
        total = None if unbounded else sum(len(p.requests) for p in plans)  # a window stops once its steady part ends
        self.progress.phase(f"{'SIMULATED ' if self.server.simulated else ''}{phase.label}", total)
        log.info("phase %d: %s, %d client process(es)", phase.index, phase.label, len(plans))
        async with httpx.AsyncClient(headers=auth_headers(self.api_key)) as client:
            poller = MetricsPoller(client, f"{self.server.base_url}/metrics")

            idle: dict[str, float] = {}

            async def before_window() -> None:
                waited, in_flight = await wait_until_idle(client, f"{self.server.base_url}/metrics")
                if in_flight is not None:
                    idle.update(idle_wait_s=waited, requests_in_flight_at_start=in_flight)
                    if in_flight:
                        log.warning("%s starts with %g requests still on the server after %.0f s", phase.label, in_flight, waited)
                if self.load.reset_caches:
                    await reset_server_caches(client, self.server.base_url)
                await poller.start()
                if self.stack_gate is not None:
                    self.stack_gate.open(phase.slug)

            try:
                run = await run_plans(
                    plans, spawn=spawn, on_done=self.progress.advance, before_window=before_window,
                    processes=self.client_processes if spawn else None,
                )
            finally:
                if self.stack_gate is not None and (unclosed := self.stack_gate.close(phase.slug)):
                    log.warning("stack profile of %s: %s did not close their files", phase.label, ", ".join(unclosed))
                await poller.stop()
        if self.first_window_monotonic is None:
            self.first_window_monotonic = run.start_monotonic
            self.first_window_wall = run.start_wall
        outcomes = [o for report in run.reports for o in (*report.warmup_outcomes, *report.outcomes)]
        records = sorted((_record(o) for o in outcomes), key=lambda r: (not r.warmup, r.send_time_s, r.index))
        self.next_index = max([self.next_index, *(r.index + 1 for r in records)])
        span = (run.start_monotonic, run.end_monotonic)
        cut = None
        if phase.window is not None:  # figures of the steady part only (ramp and drain requests are load)
            cut = cut_window(records, phase.window, self.load.slo_rate_ramp_latencies)
            records = cut.records
            span = (run.start_monotonic + cut.ramp_s, run.start_monotonic + phase.window.send_s)
        summary = compute_summary(records, self.slo, offered_rate_rps=phase.rate_rps, concurrency=phase.concurrency)
        health = assess([report.health for report in run.reports]).model_copy(update={"planned_core_share": share})
        summary = summary.model_copy(
            update={
                "client": health,
                "gpu": self.sampler.summarize(*span),
                "server_cpu": self.cpu_sampler.summarize(*span),
                "server": {**poller.summary(), **idle},
            }
        )
        if cut is not None and phase.window is not None and phase.rate_rps is not None:
            steady = judge_window(summary, cut, phase.window, self.slo, self.load, phase.rate_rps)
            summary = summary.model_copy(update={"steady": steady})
        declared = self.workload.declared_cache_sharing()
        summary = summary.model_copy(update={"cache": cache_hits(summary.server, declared, reset_before=self.load.reset_caches)})
        if summary.cache is not None and summary.cache.flattered:
            log.warning("%s is cache-flattered: %s", phase.label, summary.cache.reason)
        if summary.client.saturated:
            log.warning("client saturated during %s: %s", phase.label, summary.client.reason)
        if self.on_window is not None:
            self.on_window(summary, self.server.simulated)
        return PhaseResult(summary, records)

    async def run(self) -> tuple[Summary, list[Summary], list[RequestRecord]]:
        load = self.load
        if load.mode == "concurrency":
            result = await self.run_phase(PhaseLoad(0, "closed", concurrency=load.concurrency), load.warmup_requests)
            return result.summary, [], result.records
        if load.mode == "rate":
            result = await self.run_phase(PhaseLoad(0, "open", rate_rps=load.rate_rps), load.warmup_requests)
            return result.summary, [], result.records
        if load.mode == "slo_rate":
            return await self._slo_rate()
        if load.mode == "replay":
            self.replay = replay_schedule(self.workload, load)
            result = await self.run_phase(PhaseLoad(0, "open", rate_rps=self.replay.mean_rate_rps), load.warmup_requests)
            return result.summary, [], result.records
        return await self._sweep()

    async def _slo_rate(self) -> tuple[Summary, list[Summary], list[RequestRecord]]:
        load = self.load
        windows: list[Summary] = []
        records: list[RequestRecord] = []
        warmup = load.warmup_requests
        latency: float | None = None
        source: LatencySource = "earlier window"
        if load.slo_rate_bracket is not None:
            low, high = load.slo_rate_bracket
            search = RateSearch.from_bracket(low, high, tolerance=load.slo_rate_tolerance, max_bisections=load.slo_rate_refine_steps)
        else:
            probe = await self.run_phase(PhaseLoad(0, "closed", concurrency=load.concurrency or SWEEP_CONCURRENCY), warmup)
            warmup = 0
            windows.append(probe.summary)
            records.extend(probe.records)
            capacity = probe.summary.throughput_rps
            if not capacity or probe.summary.client.saturated:
                why = "the client saturated" if probe.summary.client.saturated else "it completed nothing"
                log.warning("slo_rate: the capacity probe is not usable (%s)", why)
                return probe.summary.model_copy(update={"slo_rate_rps": 0.0}), windows, records
            latency, source = e2el_p90_s(measured(probe.records)), "probe"
            search = RateSearch.from_probe(
                capacity, load.slo_rate_fractions, load.slo_rate_above,
                tolerance=load.slo_rate_tolerance, max_bisections=load.slo_rate_refine_steps,
            )
        by_rate: dict[float, Summary] = {}
        phase = 0
        while (rate := search.next_rate()) is not None:
            phase += 1
            step = await self._slo_window(phase, rate, plan_window(load, rate, latency, source), warmup)
            warmup = 0
            windows.append(step.summary)
            records.extend(step.records)
            steady = step.summary.steady
            assert steady is not None
            if step.summary.client.saturated:
                log.warning("slo_rate stopped at %.2f req/s: the client saturated", rate)
                search.stop()
                break
            if await self._stopped_answering(step.summary):
                log.warning("slo_rate stopped at %.2f req/s: the server stopped answering", rate)
                search.stop()
                break
            unusable = window_unusable_reason(step.summary)  # e.g. cache-flattered: never an objective value
            met = steady.met and unusable is None
            search.record(rate, met, behind_throughput_rps=step.summary.throughput_rps if steady.fell_behind else None)
            by_rate[rate] = step.summary
            log.info("slo_rate: %.2f req/s %s", rate, "meets the SLO" if met else f"misses: {unusable or steady.verdict}")
            if met and source != "probe" and rate >= search.rate_rps:
                # no probe: later windows are sized from the latency at the highest rate that passed
                latency, source = e2el_p90_s(measured(step.records)) or latency, "earlier window"
        best = search.rate_rps
        update: dict[str, Any] = {"slo_rate_rps": best, "slo_rate_censored": search.censored, "slo_rate_failed_rps": search.failed_rps}
        if best > 0:
            if search.censored:
                log.warning("slo_rate: %.2f req/s is a lower bound: no rate tried above it failed", best)
            return by_rate[best].model_copy(update=update), windows, records
        return windows[-1].model_copy(update=update) if windows else Summary(**update), windows, records

    async def _stopped_answering(self, window: Summary) -> bool:
        """A window that completed nothing, and a server that no longer answers: the windows after it would only
        collect connection errors, each for its whole length (an engine that died mid-measurement, its server gone)."""
        if window.completed > 0:
            return False
        try:
            async with httpx.AsyncClient(timeout=GONE_CHECK_TIMEOUT_S, headers=auth_headers(self.api_key)) as client:
                await client.get(f"{self.server.base_url}/v1/models")
        except httpx.TransportError:
            return True
        return False

    async def _slo_window(self, phase: int, rate: float, window: WindowPlan, warmup: int = 0) -> PhaseResult:
        """One steady-state window at `rate`; its verdict and steady-state figures are in `summary.steady`."""
        return await self.run_phase(PhaseLoad(phase, "open", rate_rps=rate, window=window), warmup)

    async def _sweep(self) -> tuple[Summary, list[Summary], list[RequestRecord]]:
        load = self.load
        records: list[RequestRecord] = []
        top: Summary | None = None
        max_rate = load.sweep_max_rate_rps
        warmup = load.warmup_requests
        if max_rate is None:
            first = await self.run_phase(PhaseLoad(0, "closed", concurrency=load.concurrency or SWEEP_CONCURRENCY), warmup)
            warmup = 0
            top, records = first.summary, list(first.records)
            max_rate = first.summary.throughput_rps
            if not max_rate:
                log.warning("sweep: the max-throughput run completed nothing; no rates to sweep")
                return top, [], records
        steps: list[Summary] = []
        base_error: float | None = None
        for k in range(1, load.sweep_steps + 1):
            rate = max_rate * k / load.sweep_steps
            step = await self.run_phase(PhaseLoad(k, "open", rate_rps=rate), warmup)
            warmup = 0
            steps.append(step.summary)
            records.extend(step.records)
            base_error = step.summary.error_rate if base_error is None else base_error
            achieved, sent = completion_rate_rps(step.records), send_rate_rps(step.records)
            if step.summary.client.saturated:
                log.warning("sweep stopped at %.2f req/s: the client saturated", rate)
                break
            if await self._stopped_answering(step.summary):
                log.warning("sweep stopped at %.2f req/s: the server stopped answering", rate)
                break
            if achieved is not None and sent is not None and achieved < SWEEP_MIN_ACHIEVED_FRACTION * sent:
                log.info("sweep stopped at %.2f req/s: completions %.2f/s < sends %.2f/s (server saturated)", rate, achieved, sent)
                break
            if step.summary.error_rate > base_error + SWEEP_MAX_ERROR_RISE:
                log.info("sweep stopped at %.2f req/s: error rate %.1f%%", rate, 100 * step.summary.error_rate)
                break
        return top or steps[-1], steps, records


async def run_benchmark(
    url: str,
    workload: Workload,
    load: LoadSpec,
    slo: SLO,
    *,
    model: str | None = None,
    api_key: str | None = None,
    telemetry: bool = True,
    progress: bool | ProgressReporter = False,
    server_pid: int | None = None,
    stack_profile_dir: Path | None = None,
    on_window: Callable[[Summary, bool], None] | None = None,
) -> BenchResult:
    """Benchmark the OpenAI-compatible server at `url`; `model=None` asks /v1/models.

    `progress`: a progress bar on stderr, or a `ProgressReporter` told of each phase and of each request as it finishes.
    `server_pid`: the server's root process on this host; its process tree's CPU use by role
    (API server, engine core, ...) is profiled over each measured window (`summary.server_cpu`).
    `stack_profile_dir`: the server was started with `autotune.observe.stacks.profiler` writing there; each measured window
    opens its gate (`autotune.observe.stacks.gate`), so the server's processes sample their stacks in it.
    `on_window`: called with each measured window's summary (its verdict included) and whether the server's engine is
    simulated, as soon as the window ends, so a caller keeps the finished windows of a run that is cut short
    (`autotune.bench.window_log`).

    Raises ServerUnreachableError when the server cannot be asked anything; request failures
    during the run are data (records with `error`). With more than one client process (or
    `client_cpus`) the clients are spawned processes: a script calling this needs the usual
    `if __name__ == "__main__":` guard of multiprocessing.
    """
    server = await discover_server(url, model=model, api_key=api_key)
    if server.simulated:
        log.warning("the server runs the SIMULATED engine: results are not GPU measurements")
    sampler = make_gpu_sampler(telemetry)
    cpu_sampler = make_process_sampler(server_pid)
    reporter: ProgressReporter = (
        progress if not isinstance(progress, bool) else RichProgress() if progress else NoProgress()
    )
    if load.reset_caches:  # before anything is sent: a server without the routes fails the run here
        async with httpx.AsyncClient(headers=auth_headers(api_key)) as client:
            await reset_server_caches(client, server.base_url)
    sampler.start()
    cpu_sampler.start()
    try:
        gate = StackProfileGate(stack_profile_dir) if stack_profile_dir is not None else None
        bench = _Benchmark(server, workload, load, slo, api_key, sampler, reporter, cpu_sampler, gate)
        bench.on_window = on_window
        try:
            summary, sweep, records = await bench.run()
        finally:
            if bench.client_processes is not None:
                bench.client_processes.close()
    finally:
        sampler.stop()
        cpu_sampler.stop()
        reporter.close()
    return BenchResult(
        url=server.base_url,
        workload=workload.model_dump(mode="json"),
        load=load,
        slo=slo,
        server_config=server.config,
        simulated=server.simulated,
        versions=versions(sampler.driver_version()),
        hardware={**hardware(sampler.devices()), "gpu_telemetry": "nvml" if sampler.available else sampler.reason},
        summary=summary,
        requests=records,
        gpu_timeseries=sampler.timeseries(bench.first_window_monotonic),
        server_cpu_timeseries=cpu_sampler.timeseries(bench.first_window_monotonic),
        sweep=sweep,
        window_start_unix_s=bench.first_window_wall,
        next_request=bench.next_index - load.seed * REQUESTS_PER_SEED,
    )


def run_benchmark_sync(*args: Any, **kwargs: Any) -> BenchResult:
    """`run_benchmark` from synchronous code (starts its own event loop); the same arguments."""
    return asyncio.run(run_benchmark(*args, **kwargs))
