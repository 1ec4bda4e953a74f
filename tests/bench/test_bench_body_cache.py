"""Request bodies rendered once per workload and seed, kept on disk in chunks, reused by every later run."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.bench import request_source
from autotune.bench.body_cache import CHUNK_REQUESTS, BodyCache, decode_chunk, encode_chunk, prune, workload_key
from autotune.bench.client import PreparedRequest
from autotune.bench.prepare import build_requests
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.workload import Workload, resolve_workload


def _small_vlm() -> Workload:
    data = resolve_workload("vlm-chat").model_dump()
    data["synthetic"].update(output_tokens=2, input_tokens=8)
    data["synthetic"]["images"]["sizes"] = ["32x32"]
    return Workload.model_validate(data)


class _Counting:
    """A render function that counts the requests it renders."""

    def __init__(self, workload: Workload) -> None:
        self.calls = 0
        self.workload = workload

    def range(self, first: int, count: int) -> list[PreparedRequest]:
        self.calls += count
        return build_requests(self.workload, count, "m", first_index=first)


def test_chunks_round_trip_and_overlapping_ranges_reuse_them(tmp_path: Path) -> None:
    workload = _small_vlm()
    counting = _Counting(workload)
    cache = BodyCache(workload_key(workload, "m"), counting.range, folder=tmp_path)
    first = cache.take(10, 5)
    assert [r.index for r in first] == list(range(10, 15)) and counting.calls == CHUNK_REQUESTS
    assert [r.body for r in first] == [r.body for r in build_requests(workload, 5, "m", first_index=10)]
    again = BodyCache(workload_key(workload, "m"), counting.range, folder=tmp_path).take(0, CHUNK_REQUESTS + 3)
    assert counting.calls == 2 * CHUNK_REQUESTS  # only the second chunk was rendered
    assert again[10:15] == first and len(again) == CHUNK_REQUESTS + 3
    assert decode_chunk(encode_chunk(first)) == first


def test_a_damaged_chunk_is_rendered_again(tmp_path: Path) -> None:
    workload = _small_vlm()
    counting = _Counting(workload)
    BodyCache("k", counting.range, folder=tmp_path).take(0, 1)
    (chunk,) = tmp_path.glob("*.bin")
    chunk.write_bytes(chunk.read_bytes()[:-10])
    assert BodyCache("k", counting.range, folder=tmp_path).take(0, 1)[0].index == 0
    assert counting.calls == 2 * CHUNK_REQUESTS


def test_the_key_changes_with_what_the_bodies_depend_on() -> None:
    workload = _small_vlm()
    other = Workload.model_validate({**workload.model_dump(), "seed": 3})
    renamed = Workload.model_validate({**workload.model_dump(), "name": "same-requests"})
    assert workload_key(workload, "m") != workload_key(workload, "other-model")
    assert workload_key(workload, "m") != workload_key(other, "m")
    assert workload_key(workload, "m") == workload_key(renamed, "m")


def test_prune_removes_the_least_recently_used_chunks(tmp_path: Path) -> None:
    import os

    for age, name in enumerate(("old", "mid", "new")):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(age * 10**9, age * 10**9))
    prune(tmp_path, 250)
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["mid.bin", "new.bin"]


def test_a_second_run_of_the_same_seed_renders_nothing(quick_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = request_source.make_renderer

    def counting(workload: Workload):  # type: ignore[no-untyped-def]
        renderer = real(workload)

        class Counted:
            lines = renderer.lines

            def render(self, index: int, model_name: str) -> PreparedRequest:
                rendered.append(index)
                return renderer.render(index, model_name)

        return Counted()

    monkeypatch.setattr(request_source, "make_renderer", counting)
    workload = _small_vlm()
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=6, warmup_requests=2, seed=41)
    first = run_benchmark_sync(quick_server, workload, load, SLO(), telemetry=False)
    assert len(rendered) == CHUNK_REQUESTS  # one chunk covers the 8 requests
    second = run_benchmark_sync(quick_server, workload, load, SLO(), telemetry=False)
    assert len(rendered) == CHUNK_REQUESTS and second.summary.completed == first.summary.completed == 6


def test_many_missing_chunks_render_in_parallel_processes_with_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autotune.bench import body_cache

    monkeypatch.setattr(body_cache, "_cores", lambda: body_cache.PARALLEL_MIN_CORES)  # this machine may have fewer
    workload = _small_vlm()
    counting = _Counting(workload)
    cache = BodyCache("k", counting.range, folder=tmp_path, parallel=(workload.model_dump_json(), "m"))
    count = body_cache.PARALLEL_MIN_CHUNKS * CHUNK_REQUESTS
    requests = cache.take(0, count)
    assert counting.calls == 0 and cache.rendered_requests == count  # rendered by the spawned processes
    assert [r.body for r in requests[::97]] == [r.body for r in build_requests(workload, count, "m")[::97]]
