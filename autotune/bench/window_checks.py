"""Whether a measured window may be an objective value: cache hits within the workload's sharing, an unsaturated client.

- Cache hits: vLLM counts prefix-cache queries and hits in tokens (`vllm:prefix_cache_queries`,
  `vllm:prefix_cache_hits`, vllm/v1/metrics/loggers.py) and multimodal-cache queries and hits in items
  (`vllm:mm_cache_queries`, `vllm:mm_cache_hits`); `autotune/observe/prometheus.py` turns their increase over the window into
  `prefix_cache_hit_rate` and `mm_cache_hit_rate`. A rate above what the workload declares it shares
  (`Workload.declared_cache_sharing`) by more than `CACHE_HIT_TOLERANCE` means requests reached the server
  twice: the window is flagged (`Summary.cache.flattered`).
- Client: a window whose client saturated (`ClientHealth.saturated`) after the runner gave it as many processes
  as it could measures the load generator, not the server.
"""

from __future__ import annotations

from autotune.bench.schemas import CacheHits, Summary
from autotune.bench.workload import CacheSharing

CACHE_HIT_TOLERANCE = 0.05
"""Hit-rate points above the declared sharing that a window may show (template tokens, block rounding)."""


def cache_hits(server: dict[str, float], declared: CacheSharing, *, reset_before: bool = False) -> CacheHits:
    """The window's hit rates from its /metrics figures, checked against the declared sharing."""
    prefix = server.get("prefix_cache_hit_rate")
    mm = server.get("mm_cache_hit_rate")
    reasons: list[str] = []
    for name, rate, allowed in (("prefix", prefix, declared.prefix), ("multimodal", mm, declared.mm)):
        if rate is not None and rate > allowed + CACHE_HIT_TOLERANCE:
            reasons.append(
                f"{name}-cache hit rate {rate:.1%} exceeds the workload's declared sharing {allowed:.0%} by more than "
                f"{CACHE_HIT_TOLERANCE:.0%} points"
            )
    if reasons:
        reasons.append(
            "requests reached the server more than once (an earlier run with the same seed or dataset lines?): "
            "use another seed, a larger dataset or reset_caches"
        )
    return CacheHits(
        prefix_hit_rate=None if prefix is None else round(prefix, 6),
        mm_hit_rate=None if mm is None else round(mm, 6),
        prefix_declared=declared.prefix,
        mm_declared=declared.mm,
        reset_before=reset_before,
        flattered=bool(reasons),
        reason="; ".join(reasons) or None,
    )


def window_unusable_reason(summary: Summary) -> str | None:
    """Why this window must not be an objective value (None: it may be used)."""
    if summary.cache is not None and summary.cache.flattered:
        return f"cache-flattered: {summary.cache.reason}"
    client = summary.client
    if client.saturated:
        if client.max_processes is not None and client.processes >= client.max_processes:
            how = f"with {client.processes} client process(es), the most the client's cores allow"
        else:
            how = f"with {client.processes} client process(es), as many as were asked for"
        return f"client saturated {how}: {client.reason}"
    return None
