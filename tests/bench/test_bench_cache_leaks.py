"""No request reaches a server twice unless declared: dataset budgets, cache resets, cache-hit flagging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autotune.bench.cache_reset import CacheResetUnsupportedError
from autotune.bench.images import image_bytes
from autotune.bench.request_source import DatasetTooSmallError, RequestSource
from autotune.bench.runner import REQUESTS_PER_SEED, run_benchmark, run_benchmark_sync
from autotune.bench.schemas import SLO, CacheHits, ClientHealth, LoadSpec, Summary
from autotune.bench.window_checks import window_unusable_reason
from autotune.bench.workload import Workload, load_workload
from helpers.servers import MODEL_DIR, running_server


def _dataset(folder: Path, lines: int, **section: object) -> Workload:
    """`lines` requests, each with its own small image and text; max_tokens 2."""
    (folder / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(lines):
        (folder / "img" / f"{i}.png").write_bytes(image_bytes(64, 64, seed=1000 + i, fmt="png"))
        content = [{"type": "image_url", "image_url": {"url": f"img/{i}.png"}}, {"type": "text", "text": f"line {i}: what is it?"}]
        rows.append(json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 2}))
    (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    extra = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in section.items())
    (folder / "w.yaml").write_text(f"name: ds\nkind: dataset\ndataset:\n  path: data.jsonl\n{extra}")
    return load_workload(folder / "w.yaml")


def _bodies(workload: Workload, seed: int, count: int) -> list[bytes]:
    source = RequestSource(workload, "m")
    return [r.body for r in source.take(seed * REQUESTS_PER_SEED, count)]


def test_a_dataset_smaller_than_the_run_is_refused_with_the_counts_before_anything_is_sent(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    workload = _dataset(tmp_path, 5)
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=8, warmup_requests=2)
    with pytest.raises(DatasetTooSmallError, match=r"needs at least 10 distinct requests \(2 already prepared \+ 8 for the next window\) but the dataset has 5 lines"):
        run_benchmark_sync(url, workload, load, SLO(), telemetry=False)
    assert httpx.get(f"{url}/stats").json()["received"] == 0
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=3, warmup_requests=2)
    result = run_benchmark_sync(url, workload, load, SLO(), telemetry=False)  # 5 fit
    assert httpx.get(f"{url}/stats").json()["distinct_images"] == 5 and result.summary.completed == 3


def test_adjacent_seeds_read_a_dataset_from_opposite_ends(tmp_path: Path) -> None:
    # the tuner warms up with seed + 1, then measures with the seed: they never share a line while both fit
    workload = _dataset(tmp_path, 6)
    measure, warmup = _bodies(workload, 0, 4), _bodies(workload, 1, 2)
    assert len(set(measure) | set(warmup)) == 6
    assert _bodies(workload, 2, 1)[0] == measure[0]  # same parity, same end: the cache-hit check reports such repeats


def test_allow_repeats_and_resets_lift_the_dataset_budget(tmp_path: Path) -> None:
    workload = _dataset(tmp_path, 3, allow_repeats=True)
    assert len(RequestSource(workload, "m").take(0, 7)) == 7
    plain = _dataset(tmp_path, 3)
    source = RequestSource(plain, "m", reset_between_windows=True)
    assert len(source.take(0, 3)) == len(source.take(3, 3)) == 3  # each window fits on its own
    with pytest.raises(DatasetTooSmallError, match="the window needs 4 distinct requests but the dataset has 3 lines"):
        source.take(6, 4)


def test_a_dataset_that_allows_repeats_cycles_its_lines_in_a_duration_bounded_closed_loop(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=None, duration_s=0.4)
    result = run_benchmark_sync(url, _dataset(tmp_path, 3, allow_repeats=True), load, SLO(), telemetry=False)
    assert result.summary.completed > 3 and httpx.get(f"{url}/stats").json()["distinct_images"] == 3
    assert len({r.index for r in result.requests}) == len(result.requests)


def test_reset_caches_without_the_routes_fails_before_anything_is_sent(start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    load = LoadSpec(mode="concurrency", concurrency=1, num_requests=2, reset_caches=True)
    with pytest.raises(CacheResetUnsupportedError, match="no POST /reset_prefix_cache .*VLLM_SERVER_DEV_MODE=1"):
        asyncio.run(run_benchmark(url, _text_workload(), load, SLO(), telemetry=False))
    assert httpx.get(f"{url}/stats").json()["received"] == 0


def _text_workload() -> Workload:
    return Workload.model_validate(
        {"name": "t", "kind": "synthetic", "synthetic": {"input_tokens": 8, "output_tokens": 2}}
    )


@pytest.fixture(scope="module")
def simulated_dev_server() -> Iterator[str]:
    """`autotune serve --engine simulated` with vLLM's dev mode: the cache-reset routes exist."""
    if not Path(MODEL_DIR).is_dir():
        pytest.skip("model skeleton not present")
    with running_server(["--model", MODEL_DIR, "--engine", "simulated"], env={"VLLM_SERVER_DEV_MODE": "1"}) as url:
        yield url


def test_a_repeated_dataset_is_flagged_cache_flattered_and_a_fresh_one_is_not(tmp_path: Path, simulated_dev_server: str) -> None:
    workload = _dataset(tmp_path, 8)
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=8)
    fresh = run_benchmark_sync(simulated_dev_server, workload, load, SLO(), telemetry=False).summary
    assert fresh.cache is not None and fresh.cache.flattered is False
    assert fresh.cache.mm_hit_rate == 0.0 and fresh.cache.prefix_hit_rate is not None and fresh.cache.prefix_hit_rate < 0.05
    assert window_unusable_reason(fresh) is None
    again = run_benchmark_sync(simulated_dev_server, workload, load, SLO(), telemetry=False).summary  # same lines again
    assert again.cache is not None and again.cache.flattered is True
    assert again.cache.mm_hit_rate == 1.0 and again.cache.prefix_hit_rate is not None and again.cache.prefix_hit_rate > 0.5
    assert "multimodal-cache hit rate 100.0% exceeds the workload's declared sharing 0%" in (again.cache.reason or "")
    assert (window_unusable_reason(again) or "").startswith("cache-flattered")
    reset = LoadSpec(mode="concurrency", concurrency=2, num_requests=8, reset_caches=True)
    after_reset = run_benchmark_sync(simulated_dev_server, workload, reset, SLO(), telemetry=False).summary
    assert after_reset.cache is not None and after_reset.cache.reset_before is True
    assert after_reset.cache.flattered is False and after_reset.cache.mm_hit_rate == 0.0


def test_declared_sharing_is_not_flagged(tmp_path: Path, simulated_dev_server: str) -> None:
    workload = _dataset(tmp_path, 4, allow_repeats=True)
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=8, seed=7)
    summary = run_benchmark_sync(simulated_dev_server, workload, load, SLO(), telemetry=False).summary
    assert summary.cache is not None and summary.cache.mm_hit_rate and summary.cache.mm_hit_rate >= 0.5
    assert summary.cache.flattered is False and summary.cache.mm_declared == 1.0


def test_window_unusable_reason_names_the_cause() -> None:
    assert window_unusable_reason(Summary()) is None
    flattered = Summary(cache=CacheHits(prefix_hit_rate=0.9, flattered=True, reason="prefix-cache hit rate 90.0% ..."))
    assert window_unusable_reason(flattered) == "cache-flattered: prefix-cache hit rate 90.0% ..."
    at_most = Summary(client=ClientHealth(processes=3, max_processes=3, saturated=True, reason="loop lag"))
    assert window_unusable_reason(at_most) == "client saturated with 3 client process(es), the most the client's cores allow: loop lag"


def test_trial_metrics_carry_the_hit_rates_and_the_flag() -> None:
    from autotune.tune.metrics import summary_metrics

    figures = summary_metrics(Summary(cache=CacheHits(prefix_hit_rate=0.4, mm_hit_rate=1.0, flattered=True)))
    assert (figures["cache_flattered"], figures["cache_prefix_hit_rate"], figures["cache_mm_hit_rate"]) == (1.0, 0.4, 1.0)
    assert "cache_flattered" not in summary_metrics(Summary())  # a result from before the check: absent, never 0
