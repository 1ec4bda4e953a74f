"""Prometheus metrics of our app, in a registry per app (no import-time singletons).

Request counters and the TTFT histogram are updated by the chat route; engine gauges are read from
`Engine.stats()` at scrape time. Every series carries `engine="simulated"|"vllm"`; the GPU busy
fraction exists only for the simulated engine and is named `autotune_simulated_...`. vLLM-named
gauges (`vllm:num_requests_running`, ...) and cache counters (`vllm:prefix_cache_queries_total`,
`vllm:prefix_cache_hits_total`, `vllm:mm_cache_queries_total`, `vllm:mm_cache_hits_total`: vLLM 0.24's names
and units, from vllm/v1/metrics/loggers.py) are also exported so a scraper can read either server.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.engines.base import Engine

TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.label = engine.kind.value

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.engine.stats()
        label = [self.label]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["engine"])
            family.add_metric(label, value)
            return family

        yield gauge("autotune_queue_depth", "Requests accepted but not yet running", stats.queue_depth)
        yield gauge("autotune_running_seqs", "Sequences in the running batch", stats.running_seqs)
        yield gauge("autotune_kv_cache_usage_ratio", "KV cache blocks in use (0..1)", stats.kv_usage)
        yield gauge("vllm:num_requests_waiting", "Requests waiting (same meaning as vLLM's)", stats.queue_depth)
        yield gauge("vllm:num_requests_running", "Requests running (same meaning as vLLM's)", stats.running_seqs)
        yield gauge("vllm:kv_cache_usage_perc", "KV cache usage 0..1 (same meaning as vLLM's)", stats.kv_usage)
        preemptions = CounterMetricFamily("autotune_preemptions", "Sequences preempted", labels=["engine"])
        preemptions.add_metric(label, stats.preemptions_total)
        yield preemptions
        for name, doc, value in (
            ("vllm:prefix_cache_queries", "Prefix cache queries, in prompt tokens (as vLLM's)", stats.prefix_cache_queries),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in cached tokens (as vLLM's)", stats.prefix_cache_hits),
            ("vllm:mm_cache_queries", "Multi-modal cache queries, in images (as vLLM's)", stats.mm_cache_queries),
            ("vllm:mm_cache_hits", "Multi-modal cache hits, in images (as vLLM's)", stats.mm_cache_hits),
        ):
            if value is not None:
                counter = CounterMetricFamily(name, doc, labels=["engine"])
                counter.add_metric(label, value)
                yield counter
        if stats.gpu_busy_fraction is not None:
            yield gauge(
                "autotune_simulated_gpu_busy_fraction",
                "SIMULATED: modeled GPU time / wall time since start (not a measurement)",
                stats.gpu_busy_fraction,
            )
        if "gpu_busy_seconds_total" in stats.extra:
            busy = CounterMetricFamily(
                "autotune_simulated_gpu_busy_seconds", "SIMULATED: modeled GPU busy time", labels=["engine"]
            )
            busy.add_metric(label, stats.extra["gpu_busy_seconds_total"])
            yield busy


class ServingMetrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        engine_label = engine.kind.value
        self.requests = Counter(
            "autotune_requests", "Chat requests by HTTP status", ["engine", "status"], registry=self.registry
        )
        self.errors = Counter(
            "autotune_request_errors",
            "Chat requests answered with an error, by type",
            ["engine", "type"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "autotune_time_to_first_token_seconds",
            "Server-side TTFT",
            ["engine"],
            buckets=TTFT_BUCKETS_S,
            registry=self.registry,
        ).labels(engine_label)
        self.output_tokens = Counter(
            "autotune_output_tokens", "Generated tokens", ["engine"], registry=self.registry
        ).labels(engine_label)
        self.prompt_tokens = Counter(
            "autotune_prompt_tokens", "Prompt tokens (text + image)", ["engine"], registry=self.registry
        ).labels(engine_label)
        self._engine_label = engine_label
        self.registry.register(_EngineCollector(engine))

    def count_request(self, status: int, error_type: str | None = None) -> None:
        self.requests.labels(self._engine_label, str(status)).inc()
        if error_type is not None:
            self.errors.labels(self._engine_label, error_type).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
