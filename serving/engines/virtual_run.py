"""Run the simulated engine's model in virtual time (discrete events, no sleeping).

Same `CostModel`, `Frontends` and `BatchScheduler` as the real-time `SimulatedEngine`, driven by a
closed-loop client (fixed concurrency). Used by tests and to sanity-check a profile quickly:
`simulate_closed_loop(...)` takes milliseconds for what would take seconds in real time.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from serving.engines.base import GenerationRequest
from serving.engines.batching import BatchScheduler, Sequence
from serving.engines.cost_model import CostModel
from serving.engines.frontend import Frontends


@dataclass(frozen=True, slots=True)
class VirtualRunResult:
    completed: int
    duration_s: float
    throughput_rps: float
    output_tokens_per_s: float
    mean_ttft_s: float
    mean_latency_s: float
    max_running_seqs: int
    preemptions: int
    gpu_busy_fraction: float
    # Per completed request, in completion order (what a benchmark's percentiles are computed over).
    request_ttft_s: tuple[float, ...] = field(default=(), repr=False)
    # (latency - TTFT) / (tokens - 1), aligned with request_ttft_s; NaN for a one-token request
    request_tpot_s: tuple[float, ...] = field(default=(), repr=False)

    @property
    def ttft_p50_s(self) -> float:
        return statistics.median(self.request_ttft_s) if self.request_ttft_s else self.mean_ttft_s

    @property
    def tpot_p50_s(self) -> float | None:
        defined = [tpot for tpot in self.request_tpot_s if tpot == tpot]  # NaN: one-token requests
        return statistics.median(defined) if defined else None


def simulate_closed_loop(
    cost: CostModel,
    make_request: Callable[[int], GenerationRequest],
    *,
    concurrency: int,
    num_requests: int,
) -> VirtualRunResult:
    """`concurrency` clients each send a request as soon as their previous one completed."""
    scheduler = BatchScheduler(cost)
    frontends = Frontends(cost)
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    issued = completed = max_running = 0
    busy_s = ttft_sum = latency_sum = 0.0
    engine_free_at: float | None = 0.0  # None while a step is in flight
    sent_at: dict[str, float] = {}
    first_token: set[str] = set()
    ttft_of: dict[str, float] = {}
    tokens_of: dict[str, int] = {}
    request_ttft: list[float] = []
    request_tpot: list[float] = []

    def push(at: float, kind: str, payload: object) -> None:
        heapq.heappush(events, (at, next(order), kind, payload))

    def issue(now: float) -> None:
        nonlocal issued
        if issued >= num_requests:
            return
        request = make_request(issued)
        issued += 1
        frontend = frontends.pick()
        sent_at[request.request_id] = now
        push(frontends.admit(frontend, now, request.images), "admit", (request, frontend))

    for _ in range(min(concurrency, num_requests)):
        issue(0.0)
    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "admit":
            request, frontend = payload  # type: ignore[misc]
            scheduler.add(request, token=(request, frontend))
        elif kind == "step_end":
            engine_free_at = now
            for seq in payload:  # type: ignore[union-attr]
                seq_request, frontend = seq.token
                delivered = frontends.deliver_token(frontend, now)
                key = seq_request.request_id
                tokens_of[key] = tokens_of.get(key, 0) + 1
                if key not in first_token:
                    first_token.add(key)
                    ttft_of[key] = delivered - sent_at[key]
                    ttft_sum += ttft_of[key]
                if seq.finished:
                    push(delivered, "done", key)
        elif kind == "done":
            completed += 1
            latency = now - sent_at.pop(payload)  # type: ignore[call-overload]
            latency_sum += latency
            ttft = ttft_of.pop(payload)  # type: ignore[call-overload]
            tokens = tokens_of.pop(payload)  # type: ignore[call-overload]
            request_ttft.append(ttft)
            request_tpot.append((latency - ttft) / (tokens - 1) if tokens > 1 else float("nan"))
            issue(now)
        if engine_free_at is not None and scheduler.has_work:
            outcome = scheduler.step()
            if outcome is not None:
                busy_s += outcome.duration_s
                max_running = max(max_running, len(scheduler.running) + len(outcome.finished))
                engine_free_at = None
                emitted: list[Sequence] = outcome.emitted
                push(now + outcome.duration_s, "step_end", emitted)
    duration = now or 1e-9
    return VirtualRunResult(
        completed=completed,
        duration_s=duration,
        throughput_rps=completed / duration,
        output_tokens_per_s=scheduler.tokens_generated_total / duration,
        mean_ttft_s=ttft_sum / max(1, len(first_token)),
        mean_latency_s=latency_sum / max(1, completed),
        max_running_seqs=max_running,
        preemptions=scheduler.preemptions_total,
        gpu_busy_fraction=min(1.0, busy_s / duration),
        request_ttft_s=tuple(request_ttft),
        request_tpot_s=tuple(request_tpot),
    )
