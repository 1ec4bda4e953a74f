"""A client that sizes itself: measured cost per request, processes planned with headroom, saturated windows re-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.bench import client_capacity, runner
from autotune.bench.client_capacity import FALLBACK_COST, ClientCost, client_cost
from autotune.bench.schedule import PROCESS_CORE_SHARE, choose_client_processes, next_client_processes
from autotune.bench.schemas import SLO, DiscardedAttempt, LoadSpec
from autotune.bench.workload import Workload


def test_processes_are_planned_at_half_a_core_from_the_measured_cost() -> None:
    cost = ClientCost(request_s=0.001, body_s_per_mb=0.01, token_s=20e-6, source="measured")
    per_request = cost.cpu_s_per_request(body_bytes=50_000, tokens=128)  # 1 + 0.5 + 2.56 ms
    assert per_request == pytest.approx(0.00406)
    cores = list(range(8))
    assert choose_client_processes(rate_rps=80, cpu_s_per_request=per_request, client_cpus=cores) == 1  # 0.32 cores
    assert choose_client_processes(rate_rps=200, cpu_s_per_request=per_request, client_cpus=cores) == 2  # 0.81 cores
    assert choose_client_processes(rate_rps=2000, cpu_s_per_request=per_request, client_cpus=cores) == 8  # capped
    with pytest.raises(ValueError, match="cpu_s_per_request"):
        choose_client_processes(rate_rps=10)


def test_a_saturated_client_gets_enough_processes_to_fall_to_half_a_core() -> None:
    assert PROCESS_CORE_SHARE == 0.5
    assert next_client_processes(1, 0.95, limit=6) == 2
    assert next_client_processes(2, 1.0, limit=6) == 4
    assert next_client_processes(1, None, limit=6) == 2  # saturated by lag alone: at least one more
    assert next_client_processes(3, 1.0, limit=4) == 4
    assert next_client_processes(4, 1.0, limit=4) is None


def test_client_cost_is_measured_once_per_machine_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(tmp_path))
    measured = client_cost()
    assert measured.source == "measured"
    assert 0 < measured.request_s < 0.05 and 0 < measured.token_s < 0.005 and measured.body_s_per_mb >= 0
    assert (tmp_path / "client-cost.json").is_file()

    def must_not_run() -> ClientCost:
        raise AssertionError("measured again")

    monkeypatch.setattr(client_capacity, "measure_client_cost", must_not_run)
    assert client_cost() == measured
    monkeypatch.setattr(client_capacity, "machine_key", lambda: "another machine")
    assert client_cost() == FALLBACK_COST  # a calibration that cannot run: the conservative fallback


def test_a_saturated_window_is_measured_again_with_more_processes(quick_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_assess = runner.assess

    def assess(processes):  # type: ignore[no-untyped-def]  # the test seam: one process "saturates"
        health = real_assess(processes)
        return health.model_copy(update={"saturated": True, "reason": "injected"}) if len(processes) < 2 else health

    monkeypatch.setattr(runner, "assess", assess)
    monkeypatch.setattr(runner, "client_cost", lambda: FALLBACK_COST)
    workload = Workload.model_validate({"name": "t", "kind": "synthetic", "synthetic": {"input_tokens": 8, "output_tokens": 2}})
    load = LoadSpec(mode="rate", rate_rps=40, arrival="constant", num_requests=10, client_cpus=[0, 1])
    result = runner.run_benchmark_sync(quick_server, workload, load, SLO(), telemetry=False)
    client = result.summary.client
    assert client.processes == 2 and client.saturated is False and client.max_processes == 2
    assert client.discarded_attempts == [DiscardedAttempt(processes=1, reason="injected")]
    assert sorted(r.index for r in result.requests) == list(range(10, 20))  # fresh requests; the first 10 were discarded
    assert result.summary.completed == 10


def test_client_processes_are_started_once_and_reused_by_later_windows(quick_server: str) -> None:
    import asyncio
    import json

    from autotune.bench.client import PreparedRequest
    from autotune.bench.processes import ClientProcesses, run_plans
    from autotune.bench.worker import WorkerPlan

    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True})

    def plan(worker: int, first: int) -> WorkerPlan:
        requests = [PreparedRequest(index=first + i, body=body.encode(), max_tokens=2) for i in range(3)]
        return WorkerPlan(worker_id=worker, chat_url=f"{quick_server}/v1/chat/completions", headers={}, requests=requests, concurrency=1)

    pool = ClientProcesses()
    try:
        first = asyncio.run(run_plans([plan(0, 0), plan(1, 3)], spawn=True, processes=pool))
        started = pool.pids
        second = asyncio.run(run_plans([plan(0, 6)], spawn=True, processes=pool))
        assert pool.pids == started and len(started) == 2
        assert sorted(o.index for r in first.reports for o in r.outcomes) == list(range(6))
        assert [o.index for o in second.reports[0].outcomes] == [6, 7, 8]
        assert all(o.success for r in (*first.reports, *second.reports) for o in r.outcomes)
    finally:
        pool.close()
    assert pool.pids == []
