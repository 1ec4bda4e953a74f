"""Server-side figures from the Prometheus `/metrics` endpoint, for the measured window.

Gauges (requests waiting/running, KV-cache usage) are polled during the window: mean and max.
Counters (tokens, preemptions, prefix/multimodal cache hits) and the queue-time histogram are
read before and after: the window's increase. Names are matched without their namespace, so
vLLM's `vllm:num_requests_waiting` and ours (serving/metrics.py exports the vLLM gauge names,
plus `autotune_preemptions_total`, `autotune_output_tokens_total`, `autotune_prompt_tokens_total`)
both count; several label sets (engines) are summed, except KV-cache usage and the simulated
engine's modeled GPU busy fraction, which are averaged. A server without /metrics gives an empty dict.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from prometheus_client.parser import text_string_to_metric_families

GAUGES_SUMMED = ("num_requests_waiting", "num_requests_running")
GAUGES_AVERAGED = ("kv_cache_usage_perc", "gpu_cache_usage_perc", "simulated_gpu_busy_fraction")
COUNTERS = (
    "prompt_tokens_total",
    "generation_tokens_total",
    "num_preemptions_total",
    "prefix_cache_queries_total",
    "prefix_cache_hits_total",
    "mm_cache_queries_total",
    "mm_cache_hits_total",
    "request_queue_time_seconds_sum",
    "request_queue_time_seconds_count",
)


ALIASES = {
    # our server's own names (serving/metrics.py) for the same figures
    "preemptions_total": "num_preemptions_total",
    "output_tokens_total": "generation_tokens_total",
}


def _base_name(name: str) -> str:
    name = name.rsplit(":", 1)[-1].removeprefix("autotune_")
    return ALIASES.get(name, name)


def parse_metrics(text: str) -> dict[str, float]:
    """The figures we track from one scrape (absent ones are left out)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    tracked = set(GAUGES_SUMMED) | set(GAUGES_AVERAGED) | set(COUNTERS)
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError):
        return {}
    for family in families:
        for sample in family.samples:
            name = _base_name(sample.name)
            if name not in tracked:
                continue
            sums[name] = sums.get(name, 0.0) + float(sample.value)
            counts[name] = counts.get(name, 0) + 1
    values = dict(sums)
    for name in GAUGES_AVERAGED:
        if name in values:
            values[name] /= counts[name]
    if "gpu_cache_usage_perc" in values and "kv_cache_usage_perc" not in values:
        values["kv_cache_usage_perc"] = values.pop("gpu_cache_usage_perc")
    return values


def summarize_window(before: dict[str, float], during: list[dict[str, float]], after: dict[str, float]) -> dict[str, float]:
    """Gauge mean/max over the polls; counter increases over the window; derived rates."""
    result: dict[str, float] = {}
    for name in (*GAUGES_SUMMED, "kv_cache_usage_perc", "simulated_gpu_busy_fraction"):
        values = [poll[name] for poll in during if name in poll]
        if values:
            result[f"{name}_mean"] = sum(values) / len(values)
            result[f"{name}_max"] = max(values)
    delta = {name.removesuffix("_total"): after[name] - before[name] for name in COUNTERS if name in before and name in after}
    for name in ("prompt_tokens", "generation_tokens", "num_preemptions", "prefix_cache_queries", "prefix_cache_hits", "mm_cache_queries", "mm_cache_hits"):
        if name in delta:
            result[name] = delta[name]
    for kind in ("prefix_cache", "mm_cache"):
        queries = delta.get(f"{kind}_queries")
        if queries:
            result[f"{kind}_hit_rate"] = delta.get(f"{kind}_hits", 0.0) / queries
    count = delta.get("request_queue_time_seconds_count")
    if count:
        result["queue_time_ms_mean"] = 1000.0 * delta.get("request_queue_time_seconds_sum", 0.0) / count
    return result


IDLE_WAIT_LIMIT_S = 120.0
"""How long a window waits for the server to finish the requests of the window before it (see wait_until_idle)."""


async def wait_until_idle(
    client: httpx.AsyncClient, url: str, *, limit_s: float = IDLE_WAIT_LIMIT_S, poll_s: float = 0.5
) -> tuple[float, float | None]:
    """Poll `/metrics` until no request runs or waits on the server, at most `limit_s`.

    Requests the client gave up on (a window's cancelled drain, an overloaded window's backlog) may still run on the
    server for a while; a window started on top of them measures their load too. Returns the seconds waited and the
    requests still running or waiting when it gave up waiting or started (None: the server has no such gauges).
    """
    started = asyncio.get_running_loop().time()
    while True:
        try:
            response = await client.get(url, timeout=5.0)
        except httpx.HTTPError:
            return 0.0, None
        if response.status_code != 200:
            return 0.0, None
        figures = parse_metrics(response.text)
        if not any(name in figures for name in GAUGES_SUMMED):
            return 0.0, None
        in_flight = sum(figures.get(name, 0.0) for name in GAUGES_SUMMED)
        waited = asyncio.get_running_loop().time() - started
        if in_flight == 0 or waited >= limit_s:
            return round(waited, 3), in_flight
        await asyncio.sleep(poll_s)


class MetricsPoller:
    """Scrapes `/metrics` before, during (every `interval_s`) and after the window."""

    def __init__(self, client: httpx.AsyncClient, url: str, interval_s: float = 0.5, first_poll_s: float = 0.1) -> None:
        self.client = client
        self.url = url
        self.interval_s = interval_s
        self.first_poll_s = first_poll_s
        self.available = True
        self.before: dict[str, float] = {}
        self.during: list[dict[str, float]] = []
        self.after: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def scrape(self) -> dict[str, float]:
        if not self.available:
            return {}
        try:
            response = await self.client.get(self.url, timeout=5.0)
        except httpx.HTTPError:
            return {}
        if response.status_code != 200:
            self.available = False  # no /metrics here: stop asking
            return {}
        return parse_metrics(response.text)

    async def _poll(self) -> None:
        delay = min(self.first_poll_s, self.interval_s)  # a first look soon, for short windows
        while True:
            await asyncio.sleep(delay)
            delay = self.interval_s
            figures = await self.scrape()
            if figures:
                self.during.append(figures)

    async def start(self) -> None:
        """Scrape the counters' starting values and poll the gauges until `stop()`."""
        self.before = await self.scrape()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling and scrape the counters' final values (a no-op if never started)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.after = await self.scrape()

    def summary(self) -> dict[str, float]:
        return summarize_window(self.before, self.during, self.after) if self.available else {}
