"""run_benchmark end to end against the fake server: processes, self-watch, labels, sweep."""

from __future__ import annotations

import asyncio

import pytest

from autotune.bench.discovery import ServerUnreachableError
from autotune.bench.runner import run_benchmark, run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.worker import BURN_ENV
from autotune.bench.workload import Workload, resolve_workload


def _workload(output_tokens: int = 4, input_tokens: int = 16) -> Workload:
    data = resolve_workload("text-chat").model_dump()
    data["synthetic"].update(input_tokens=input_tokens, output_tokens=output_tokens)
    return Workload.model_validate(data)


def _tiny_image_workload() -> Workload:
    """vlm-chat with 32x32 images, 8 prompt and 2 output tokens: every request a distinct image, quickly sent."""
    data = resolve_workload("vlm-chat").model_dump()
    data["synthetic"].update(output_tokens=2, input_tokens=8)
    data["synthetic"]["images"]["sizes"] = ["32x32"]
    return Workload.model_validate(data)


def test_two_client_processes_return_merged_records(quick_server: str) -> None:
    load = LoadSpec(mode="concurrency", concurrency=4, num_requests=20, client_processes=2, warmup_requests=2)
    result = run_benchmark_sync(quick_server, _workload(), load, SLO(), telemetry=False)
    measured = [r for r in result.requests if not r.warmup]
    assert len(measured) == 20 and result.summary.completed == 20
    assert len({r.index for r in result.requests}) == 22  # unique across processes, warm-up included
    assert result.summary.client.processes == 2 and result.summary.client.cpu_util_max is not None


def test_open_loop_across_two_processes_keeps_the_whole_schedule(quick_server: str) -> None:
    load = LoadSpec(mode="rate", rate_rps=50.0, arrival="constant", num_requests=20, client_processes=2)
    result = run_benchmark_sync(quick_server, _workload(), load, SLO(), telemetry=False)
    sends = sorted(r.send_time_s for r in result.requests)
    assert len(sends) == 20
    assert all(abs(actual - i / 50.0) < 0.03 for i, actual in enumerate(sends))


def test_starved_client_is_flagged_saturated(quick_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    light = run_benchmark_sync(quick_server, _workload(), LoadSpec(mode="concurrency", concurrency=1, num_requests=4), SLO(), telemetry=False)
    assert light.summary.client.cpu_util_max < 0.9
    monkeypatch.setenv(BURN_ENV, "40")  # busy-wait 40 ms per received chunk: the event loop is blocked
    result = run_benchmark_sync(quick_server, _workload(), LoadSpec(mode="concurrency", concurrency=2, num_requests=4), SLO(), telemetry=False)
    client = result.summary.client
    assert client.saturated is True
    assert client.loop_lag_p99_ms > 25.0 and "loop lag" in client.reason
    assert result.summary.completed == 4  # still measured, but flagged


def test_simulated_server_is_labeled_and_its_config_recorded(start_fake_server) -> None:
    url = start_fake_server("--simulated", "--ttft-ms", "300", "--itl-ms", "1")
    result = run_benchmark_sync(url + "/v1/", _workload(), LoadSpec(mode="concurrency", concurrency=1, num_requests=2), SLO(), telemetry=False)
    assert result.simulated is True and result.server_config == {"engine": "simulated", "simulated": True, "model": "fake-model"}
    assert result.url == url
    assert result.summary.server["num_requests_running_max"] >= 1.0
    assert result.summary.server["generation_tokens"] == 8.0  # 2 requests x 4 tokens, window only


def test_plain_server_is_not_simulated_and_missing_metrics_are_empty(start_fake_server) -> None:
    url = start_fake_server("--no-metrics", "--model", "other-model")
    result = run_benchmark_sync(url, _workload(), LoadSpec(mode="concurrency", concurrency=1, num_requests=2), SLO(), telemetry=False)
    assert result.simulated is False and result.server_config is None and result.summary.server == {}
    assert result.summary.gpu is None  # no GPU here: "not available", never zeros
    assert result.versions["python"] and result.versions["aiohttp"] and result.hardware["cpu_count"] >= 1


def test_sweep_measures_the_max_then_rates_up_to_it(quick_server: str) -> None:
    load = LoadSpec(mode="sweep", concurrency=4, num_requests=8, sweep_steps=2)
    result = run_benchmark_sync(quick_server, _workload(), load, SLO(ttft_ms=1000), telemetry=False)
    assert result.summary.concurrency == 4 and result.summary.throughput_rps > 0
    rates = [step.offered_rate_rps for step in result.sweep]
    assert 1 <= len(rates) <= 2 and rates == sorted(rates)
    assert rates[0] == pytest.approx(result.summary.throughput_rps / 2)
    assert {r.phase for r in result.requests} == set(range(len(rates) + 1))
    assert len({r.index for r in result.requests}) == len(result.requests)


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ServerUnreachableError, match="cannot reach http://127.0.0.1:9/v1/models"):
        asyncio.run(run_benchmark("http://127.0.0.1:9", _workload(), LoadSpec(mode="concurrency", concurrency=1), SLO()))


def test_spawned_client_is_pinned_to_client_cpus(quick_server: str) -> None:
    import json

    from autotune.bench.client import PreparedRequest
    from autotune.bench.processes import run_plans
    from autotune.bench.worker import WorkerPlan

    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True})
    plan = WorkerPlan(
        worker_id=0, chat_url=f"{quick_server}/v1/chat/completions", headers={},
        requests=[PreparedRequest(index=i, body=body.encode(), max_tokens=2) for i in range(3)], concurrency=1, cpus=[0],
    )
    run = asyncio.run(run_plans([plan], spawn=True))
    (report,) = run.reports
    assert report.health.cpus == [0]
    assert [o.index for o in report.outcomes] == [0, 1, 2] and all(o.success for o in report.outcomes)


def test_runs_with_different_seeds_never_repeat_an_image(start_fake_server) -> None:
    # A repeated image is a prefix- and multimodal-cache hit on vLLM: a second run (or the measured run after a
    # warm-up) would look faster than real traffic. Each seed owns its own requests.
    import httpx

    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    workload = _tiny_image_workload()
    for seed in (0, 1):
        load = LoadSpec(mode="concurrency", concurrency=2, num_requests=6, warmup_requests=2, seed=seed)
        run_benchmark_sync(url, workload, load, SLO(), telemetry=False)
    stats = httpx.get(f"{url}/stats").json()
    assert stats["images"] == 16 and stats["distinct_images"] == 16
    run_benchmark_sync(url, workload, LoadSpec(mode="concurrency", concurrency=2, num_requests=6, seed=1), SLO(), telemetry=False)
    assert httpx.get(f"{url}/stats").json()["distinct_images"] == 16  # the same seed repeats itself exactly


def test_a_run_that_follows_one_of_the_same_seed_sends_none_of_its_requests(start_fake_server) -> None:
    # The tuner's screening and its full measurement share the seed and the server: on an H100 on 2026-12-07 the
    # full measurement's first window re-sent the screening's requests (15-16% cache hits) and was thrown away.
    # The second run starts at the first's `next_request`.
    import httpx

    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    workload = _tiny_image_workload()
    first = run_benchmark_sync(url, workload, LoadSpec(mode="concurrency", concurrency=2, num_requests=6, warmup_requests=2),
                               SLO(), telemetry=False)
    assert first.next_request == 8 and sorted(r.index for r in first.requests) == list(range(8))
    follow = LoadSpec(mode="concurrency", concurrency=2, num_requests=6, first_request=first.next_request)
    second = run_benchmark_sync(url, workload, follow, SLO(), telemetry=False)
    assert sorted(r.index for r in second.requests) == list(range(8, 14)) and second.next_request == 14
    assert httpx.get(f"{url}/stats").json()["distinct_images"] == 14  # no image reached the server twice
    again = run_benchmark_sync(url, workload, LoadSpec(mode="concurrency", concurrency=2, num_requests=6), SLO(), telemetry=False)
    assert again.next_request == 6 and httpx.get(f"{url}/stats").json()["distinct_images"] == 14  # from 0: repeats


def _slo_rate_load(fractions: list[float], refine: int = 0, above: list[float] | None = None) -> LoadSpec:
    """Short fixed windows (1.5 s of sending): these tests are about the search, not the windows' length."""
    return LoadSpec(
        mode="slo_rate", concurrency=8, num_requests=None, duration_s=1.5, slo_rate_fractions=fractions,
        slo_rate_refine_steps=refine, slo_rate_above=above or [], slo_rate_window_s=1.5,
    )


def test_slo_rate_reports_the_highest_rate_whose_p99s_meet_the_slo(start_fake_server) -> None:
    # Two streams at a time, 35 ms each: a hard capacity near 57 req/s; queueing raises TTFT near it.
    url = start_fake_server("--max-concurrent", "2", "--ttft-ms", "20", "--itl-ms", "5")
    slo = SLO(ttft_ms=150, tpot_ms=50)
    result = run_benchmark_sync(url, _workload(output_tokens=4), _slo_rate_load([0.3, 1.3, 0.6]), slo, telemetry=False)
    probe, *windows = result.sweep
    capacity = probe.throughput_rps
    assert probe.concurrency == 8 and 20 < capacity < 70
    assert [w.offered_rate_rps for w in windows] == pytest.approx([capacity * f for f in (1.3, 0.6, 0.3)][: len(windows)])
    chosen = result.summary.slo_rate_rps
    assert chosen == pytest.approx(windows[-1].offered_rate_rps) and chosen > 0
    assert result.summary.ttft_ms.p99 <= 150 and result.summary.tpot_ms.p99 <= 50
    assert result.summary.offered_rate_rps == chosen  # the summary is the window at the rate reported
    # 1.3x the capacity cannot be sustained: the server falls behind or TTFT p99 blows the SLO
    assert windows[0].offered_rate_rps > chosen


def test_slo_rate_goes_above_a_passing_top_fraction_until_a_rate_fails(start_fake_server) -> None:
    """On the GPU 6 of 18 trials passed at 0.95 of their probe: their value was capped by the probe, not measured."""
    url = start_fake_server("--max-concurrent", "2", "--ttft-ms", "20", "--itl-ms", "5")
    slo = SLO(ttft_ms=150, tpot_ms=50)
    capped = run_benchmark_sync(url, _workload(output_tokens=4), _slo_rate_load([0.3]), slo, telemetry=False)
    assert capped.summary.slo_rate_censored is True  # passed at the only rate tried: a lower bound, flagged
    load = _slo_rate_load([0.3], above=[0.6, 1.5])
    result = run_benchmark_sync(url, _workload(output_tokens=4), load, slo, telemetry=False)
    probe, low, *above = result.sweep
    capacity = probe.throughput_rps
    assert low.offered_rate_rps == pytest.approx(0.3 * capacity)
    assert [w.offered_rate_rps for w in above] == pytest.approx([0.6 * capacity, 1.5 * capacity][: len(above)])
    chosen = result.summary.slo_rate_rps
    assert chosen is not None and chosen >= low.offered_rate_rps
    # 1.5x the capacity of two 35 ms streams cannot be met: it fails, so the value is measured, not a lower bound
    assert result.summary.slo_rate_censored is False and chosen < 1.5 * capacity


def test_slo_rate_above_must_lie_above_the_fractions() -> None:
    with pytest.raises(ValueError, match="slo_rate_above"):
        _slo_rate_load([0.95, 0.5], above=[0.9, 1.2])


def test_slo_rate_is_zero_when_no_rate_meets_the_slo(start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "20", "--itl-ms", "2")
    slo = SLO(ttft_ms=5)  # below the injected 20 ms: nothing can meet it
    result = run_benchmark_sync(url, _workload(output_tokens=4), _slo_rate_load([0.5, 0.25]), slo, telemetry=False)
    assert result.summary.slo_rate_rps == 0.0 and result.summary.slo_rate_censored is False
    assert len(result.sweep) == 3  # the probe and both rates were tried
    assert len({r.index for r in result.requests}) == len(result.requests)  # fresh requests in every window


def test_slo_rate_bisects_between_the_passing_rate_and_the_failing_one_above_it(start_fake_server) -> None:
    url = start_fake_server("--max-concurrent", "2", "--ttft-ms", "20", "--itl-ms", "5")
    load = _slo_rate_load([1.3, 0.3], refine=2)
    result = run_benchmark_sync(url, _workload(output_tokens=4), load, SLO(ttft_ms=150, tpot_ms=50), telemetry=False)
    probe, too_fast, slow, first_middle, second_middle = result.sweep
    capacity = probe.throughput_rps
    assert [too_fast.offered_rate_rps, slow.offered_rate_rps] == pytest.approx([1.3 * capacity, 0.3 * capacity])
    assert first_middle.offered_rate_rps == pytest.approx(0.8 * capacity)  # halfway between 0.3 (met) and 1.3 (missed)
    chosen = result.summary.slo_rate_rps
    met_first_middle = chosen is not None and chosen >= first_middle.offered_rate_rps
    expected_next = 1.05 if met_first_middle else 0.55
    assert second_middle.offered_rate_rps == pytest.approx(expected_next * capacity)
    passing = [w.offered_rate_rps for w in (slow, first_middle, second_middle) if w.offered_rate_rps <= chosen]
    assert chosen == pytest.approx(max(passing)) and result.summary.offered_rate_rps == chosen


def test_slo_rate_stops_after_the_first_window_once_the_server_is_gone(start_fake_server) -> None:
    """A server that died mid-measurement (on the GPU: an engine core killed, its API server gone) ends the search:
    the windows after it would each collect connection errors for their whole length."""
    url = start_fake_server("--ttft-ms", "5", "--itl-ms", "2", "--exit-after", "100")
    load = _slo_rate_load([0.9, 0.6, 0.3, 0.15])
    result = run_benchmark_sync(url, _workload(output_tokens=4), load, SLO(ttft_ms=150, tpot_ms=50), telemetry=False)
    probe, *windows = result.sweep
    assert probe.completed > 0
    # the server exits inside the probe or a window; the first window that completed nothing is the last one tried
    # (without the check, every lower fraction would be tried for 1.5 s against no server)
    assert [w.completed == 0 for w in windows] == [False] * (len(windows) - 1) + [True]
    assert len(windows) < 4 and windows[-1].failed > 0
    assert result.summary.slo_rate_rps == 0.0
