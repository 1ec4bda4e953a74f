"""The soak's windows and verdict (autotune.bench.soak), on synthetic series, and its sampler on a stand-in process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from autotune.bench.schemas import RequestRecord
from autotune.bench.soak import (
    ResourceSample, ResourceSampler, SoakBounds, SoakRecord, SoakSettings, judge, progress_line, windows_of,
)
from autotune.bench.soak_plot import memory_series, plot_soak
from autotune.observe.memory_maps import mapping_kind

DURATION_S = 180.0


def _requests(e2el_ms: float = 500.0, last_minute_e2el_ms: float | None = None, failed_at: float | None = None) -> list[RequestRecord]:
    records = []
    for index in range(int(DURATION_S * 2)):  # 2 req/s
        sent = index / 2
        slow = last_minute_e2el_ms is not None and sent >= 120
        records.append(
            RequestRecord(
                index=index, send_time_s=sent, success=sent != failed_at, ttft_ms=50.0,
                e2el_ms=last_minute_e2el_ms if slow else e2el_ms, error="HTTP 500: boom" if sent == failed_at else None,
            )
        )
    return records


def _samples(rss_per_s: float = 0.0, fds_per_s: float = 0.0) -> list[ResourceSample]:
    return [
        ResourceSample(t_s=float(t), rss_mib=300.0 + rss_per_s * t, open_fds=int(20 + fds_per_s * t), processes=1)
        for t in range(-5, int(DURATION_S) + 2)
    ]


def _record(requests: list[RequestRecord], samples: list[ResourceSample], settle_s: float = 0.0) -> SoakRecord:
    window_s = 60 if not settle_s else (DURATION_S - settle_s) / 2
    settings = SoakSettings(rate_rps=2, duration_s=DURATION_S, window_s=window_s, settle_s=settle_s)
    record = SoakRecord(
        url="http://127.0.0.1:1", settings=settings, simulated=True, sent=len(requests),
        failed=sum(not r.success for r in requests), errors=[r.error for r in requests if r.error],
        windows=windows_of(requests, samples, duration_s=DURATION_S, window_s=window_s, settle_s=settle_s),
        samples=samples,
    )
    record.problems = judge(record)
    return record


def test_windows_split_by_send_time_and_keep_the_tail_in_the_last() -> None:
    windows = windows_of(_requests(), _samples(rss_per_s=0.1), duration_s=DURATION_S, window_s=60)
    assert [(w.start_s, w.end_s, w.sent) for w in windows] == [(0, 60, 120), (60, 120, 120), (120, 180, 120)]
    assert windows[0].rss_max_mib == 300.0 + 0.1 * 59 and windows[-1].rss_max_mib == 300.0 + 0.1 * 181  # warm-up samples out
    assert windows_of(_requests(), _samples(), duration_s=170, window_s=60)[-1].end_s == 170  # 50 s tail: its own window
    assert len(windows_of(_requests(), _samples(), duration_s=200, window_s=60)) == 3  # a 20 s tail joins the last


def test_a_settling_span_is_a_window_of_its_own_and_the_tail_never_joins_it() -> None:
    windows = windows_of(_requests(), _samples(), duration_s=DURATION_S, window_s=60, settle_s=60)
    assert [(w.start_s, w.end_s, w.settling) for w in windows] == [(0, 60, True), (60, 120, False), (120, 180, False)]
    short = windows_of(_requests(), _samples(), duration_s=DURATION_S, window_s=240, settle_s=160)  # 20 s after it
    assert [(w.start_s, w.end_s, w.settling) for w in short] == [(0, 160, True), (160, 180, False)]
    with pytest.raises(ValueError, match="settle_s .180. must be shorter than duration_s .180."):
        SoakSettings(rate_rps=2, duration_s=180, settle_s=180)


def test_a_fill_inside_the_settling_span_passes_and_a_leak_after_it_does_not() -> None:
    # a fresh server's buffers fill by 200 MiB over its first 90 s, then hold: a broken bound without settling
    fill = [s.model_copy(update={"pss_mib": 150.0 + 200.0 * min(max(s.t_s, 0.0), 90.0) / 90.0}) for s in _samples()]
    [unsettled] = _record(_requests(), fill).problems
    assert unsettled.startswith("server PSS grew 68.9 MiB from the first judged window to the last")
    assert _record(_requests(), fill, settle_s=90).problems == []
    # the same fill, then 1 MiB/s for good: a leak after the settling span is still one
    leak = [s.model_copy(update={"pss_mib": (s.pss_mib or 0.0) + max(s.t_s - 90.0, 0.0)}) for s in fill]
    [problem] = _record(_requests(), leak, settle_s=90).problems
    assert problem.startswith("server PSS grew 47.0 MiB from the first judged window (after 90 s of settling) to the last")
    assert problem.endswith("; +60.0 MiB/min in the last window")
    # latency is judged after the settling span too: a cold first minute is not the baseline that hides a slowdown
    cold_then_slower = [r.model_copy(update={"e2el_ms": 5000.0 if r.send_time_s < 60 else 500.0 if r.send_time_s < 135 else 1000.0})
                        for r in _requests()]
    assert _record(cold_then_slower, _samples()).problems == []  # 5,000 ms then 1,000: "faster"
    [slower] = _record(cold_then_slower, _samples(), settle_s=90).problems
    assert slower.startswith("e2el_p99_ms rose from 500 to 1000 ms")


def test_a_steady_run_holds_every_bound() -> None:
    assert _record(_requests(), _samples(rss_per_s=0.01)).problems == []


def test_a_leak_of_memory_or_descriptors_is_reported() -> None:
    memory = _record(_requests(), _samples(rss_per_s=0.5)).problems  # 60 MiB over the two minutes after the first
    assert len(memory) == 1 and "RSS grew" in memory[0]
    descriptors = _record(_requests(), _samples(fds_per_s=0.1)).problems  # +12 fds
    assert len(descriptors) == 1 and "descriptors grew" in descriptors[0]


def test_sockets_of_requests_in_flight_are_not_a_leak() -> None:
    samples = _samples()
    for sample in samples:  # the last minute: 12 more connections open at times (a slower host), the floor unchanged
        if sample.t_s >= 120 and int(sample.t_s) % 2:
            sample.open_fds = (sample.open_fds or 0) + 12
    record = _record(_requests(), samples)
    assert record.windows[-1].fds_max == record.windows[0].fds_max + 12
    assert record.problems == []


def test_rising_latency_and_failures_are_reported() -> None:
    slower = _record(_requests(e2el_ms=500, last_minute_e2el_ms=900), _samples()).problems  # > 1.5 x 500 + 100
    assert len(slower) == 1 and "e2el_p99_ms rose from 500 to 900" in slower[0]
    assert _record(_requests(e2el_ms=500, last_minute_e2el_ms=840), _samples()).problems == []  # within the bound
    failed = _record(_requests(failed_at=30.0), _samples()).problems
    assert len(failed) == 1 and "1 request(s) failed" in failed[0] and "HTTP 500" in failed[0]


def test_bounds_are_the_records_own_unless_given() -> None:
    record = _record(_requests(), _samples(rss_per_s=0.2))  # 24 MiB: within the default 32
    assert record.problems == []
    assert "RSS grew" in judge(record, SoakBounds(memory_growth_mib=8))[0]
    # records written before the bound covered PSS name it rss_growth_mib
    assert SoakBounds.model_validate({"rss_growth_mib": 8}).memory_growth_mib == 8


def test_a_memory_verdict_names_the_role_whose_processes_grew_most() -> None:
    samples = [
        sample.model_copy(update={"rss_by_role_mib": {"api_server": 200.0, "engine_core": 100.0 + 2.0 * sample.t_s}})
        for sample in _samples(rss_per_s=2.0)
    ]
    record = _record(_requests(), samples)
    assert record.windows[-1].rss_max_by_role_mib == {"api_server": 200.0, "engine_core": 100.0 + 2.0 * 181}
    [problem] = record.problems
    assert problem.startswith("server RSS grew 244.0 MiB") and "most in engine_core processes (+244.0 MiB)" in problem


def test_memory_is_judged_by_pss_where_sampled_so_that_shared_pages_count_once() -> None:
    # RSS rising 244 MiB in pages that the tree's processes share (each counts them), PSS flat: no leak
    shared = [s.model_copy(update={"pss_mib": 150.0, "pss_by_role_mib": {"api_server": 100.0, "engine_core": 50.0}})
              for s in _samples(rss_per_s=2.0)]
    assert _record(_requests(), shared).problems == []
    # PSS rising in the engine cores: reported by PSS and role
    grown = [s.model_copy(update={"pss_mib": 150.0 + 2.0 * s.t_s,
                                  "pss_by_role_mib": {"api_server": 100.0, "engine_core": 50.0 + 2.0 * s.t_s}})
             for s in _samples()]
    record = _record(_requests(), grown)
    [problem] = record.problems
    assert problem.startswith("server PSS grew 244.0 MiB") and "most in engine_core processes (+244.0 MiB)" in problem
    assert problem.endswith("; +120.0 MiB/min in the last window")  # 2 MiB/s: still growing, a leak's signature
    # a fill that levels off in the second minute still breaks the bound, and its rate says it stopped
    fill = [s.model_copy(update={"pss_mib": 150.0 + 2.0 * min(max(s.t_s - 60.0, 0.0), 60.0)}) for s in _samples()]
    [levelled] = _record(_requests(), fill).problems
    assert levelled.startswith("server PSS grew 120.0 MiB") and levelled.endswith("; +0.0 MiB/min in the last window")
    labels = [label for label, _values, _style in memory_series(record)]
    assert labels == ["server RSS (process tree)", "server PSS (shared pages once)", "PSS of api_server processes",
                      "PSS of engine_core processes"]


def test_the_sampler_counts_pages_shared_by_a_fork_once_in_pss(tmp_path: Path) -> None:
    """A parent that touched 64 MiB, then forked: both RSS hold the pages, the tree's PSS holds them once."""
    ready = tmp_path / "ready"
    code = (f"import os, time\nblock = bytearray(64 * 2**20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
            f"if os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\nopen({str(ready)!r}, 'w').close()\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not psutil.Process(parent.pid).children():
            assert time.monotonic() < deadline, "the forked stand-in never started"
            time.sleep(0.02)
        _at, sample = ResourceSampler(parent.pid, interval_s=1).sample_once()
        _at, mapped = ResourceSampler(parent.pid, interval_s=1).sample_once(with_mappings=True)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert sample.pss_by_role_and_mapping_mib is None  # only when asked for: it walks every mapping
    # by mapping kind: the block is anonymous memory (a large bytearray is mmapped), the interpreter's code a file
    assert mapped.pss_by_role_and_mapping_mib is not None and mapped.pss_by_role_mib is not None
    for role, kinds in mapped.pss_by_role_and_mapping_mib.items():
        assert sum(kinds.values()) == pytest.approx(mapped.pss_by_role_mib[role], rel=0.05)
    kinds = [kinds for kinds in mapped.pss_by_role_and_mapping_mib.values()]
    assert sum(k.get("anonymous", 0.0) + k.get("heap", 0.0) for k in kinds) > 60 and all(k.get("file", 0) > 0 for k in kinds)
    assert sample.processes == 2 and sample.rss_mib is not None and sample.pss_mib is not None
    assert sample.rss_mib - sample.pss_mib > 48  # the 64 MiB block: twice in the RSS sum, once in the PSS sum
    assert sample.pss_by_role_mib is not None and sum(sample.pss_by_role_mib.values()) == pytest.approx(sample.pss_mib, abs=0.05)
    assert sample.read_ms is not None and 0 < sample.read_ms < 5000  # what the sample cost, to judge its intrusion


def test_the_memory_panel_has_a_line_per_role_only_when_the_tree_has_several(tmp_path: Path) -> None:
    plain = _record(_requests(), _samples())
    assert [label for label, _values, _style in memory_series(plain)] == ["server RSS (process tree)"]
    split = [s.model_copy(update={"rss_by_role_mib": {"api_server": 200.0, "engine_core": 100.0}}) for s in _samples()]
    lines = memory_series(_record(_requests(), split))
    assert [label for label, _values, _style in lines] == [
        "server RSS (process tree)", "RSS of api_server processes", "RSS of engine_core processes",
    ]
    assert set(lines[2][1]) == {100.0}
    assert plot_soak(_record(_requests(), split), tmp_path / "soak.png").stat().st_size > 0


def test_the_sampler_splits_a_vllm_tree_by_role(tmp_path: Path) -> None:
    """A stand-in tree: an untitled launcher (the API server, as with one API server) and an engine core child with
    vLLM's process title; the sampler reads their RSS by role."""
    launcher = subprocess.Popen(
        ["bash", "-c", "(exec -a VLLM::EngineCore sleep 30) & wait"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while not [c for c in psutil.Process(launcher.pid).children() if c.cmdline()[:1] == ["VLLM::EngineCore"]]:
            assert time.monotonic() < deadline, "the engine-core stand-in never took its title"
            time.sleep(0.02)  # the subshell is forked first, then runs `exec -a`
        _at, sample = ResourceSampler(launcher.pid, interval_s=1).sample_once()
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    assert sample.rss_by_role_mib is not None and set(sample.rss_by_role_mib) == {"api_server", "engine_core"}
    assert sample.rss_mib == pytest.approx(sum(sample.rss_by_role_mib.values()), abs=0.05)
    assert sample.processes == 2


@pytest.mark.parametrize(("options", "named"), [(["--settle-s", "10"], "settle_s"), (["--rate", "0"], "rate_rps")])
def test_bad_soak_options_are_a_clear_error_naming_the_field(options: list[str], named: str, tmp_path: Path) -> None:
    argv = ["--url", "http://127.0.0.1:9", "--rate", "1", "--duration-s", "10", "--out", str(tmp_path / "out"), *options]
    done = subprocess.run([sys.executable, "-m", "autotune.cli", "soak", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and named in done.stderr + done.stdout, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()  # refused before anything was sent


def test_a_progress_line_names_each_roles_memory_so_a_run_cut_off_before_its_record_still_says_what_grew() -> None:
    sample = ResourceSample(
        t_s=120.0, rss_mib=900.0, pss_mib=700.0, open_fds=16, processes=3,
        rss_by_role_mib={"api_server": 500.0, "engine_core": 400.0}, pss_by_role_mib={"api_server": 420.0, "engine_core": 280.0},
    )
    line = progress_line(120.0, sample)
    assert line == ("soak: 120 s in: server RSS 900.0 MiB, PSS 700.0 MiB (api_server 420.0, engine_core 280.0), "
                    "16 open fds, 3 processes")
    mapped = sample.model_copy(update={"pss_by_role_and_mapping_mib": {
        "engine_core": {"anonymous": 30.0, "file": 200.0, "heap": 50.0, "shared_memory": 0.5}}})
    assert progress_line(120.0, mapped) == line + "; engine_core by mapping: file 200.0, heap 50.0, anonymous 30.0"
    without_pss = sample.model_copy(update={"pss_mib": None, "pss_by_role_mib": None})
    assert progress_line(60.0, without_pss) == (
        "soak: 60 s in: server RSS 900.0 MiB (api_server 500.0, engine_core 400.0), 16 open fds, 3 processes")


@pytest.mark.parametrize(("path", "kind"), [
    ("/dev/nvidiactl", "gpu_driver"), ("/dev/nvidia0", "gpu_driver"), ("/dev/nvidia-uvm", "gpu_driver"),
    ("[heap]", "heap"), ("[anon]", "anonymous"), ("", "anonymous"), ("[anon:glibc malloc]", "anonymous"),
    ("/dev/shm/psm_3f2a (deleted)", "shared_memory"), ("/memfd:cuda (deleted)", "shared_memory"),
    ("/usr/lib/libc.so.6", "file"), ("[stack]", "stack"), ("[vdso]", "other"),
])
def test_each_mapping_has_the_kind_its_path_names(path: str, kind: str) -> None:
    assert mapping_kind(path) == kind


def test_a_memory_verdict_names_the_mapping_kind_that_grew_in_the_role_that_grew_most() -> None:
    """Pinned host buffers (mapped from the GPU driver) growing in the GPU workers, read once a minute as the sampler
    reads them; the heap flat: the verdict says where the growth lies."""
    def with_maps(sample: ResourceSample) -> ResourceSample:
        pinned = 100.0 + 2.0 * max(sample.t_s, 0.0)
        update: dict = {"pss_mib": 300.0 + pinned, "pss_by_role_mib": {"api_server": 300.0, "gpu_worker": pinned}}
        if sample.t_s % 60 == 0:
            update["pss_by_role_and_mapping_mib"] = {
                "api_server": {"heap": 300.0}, "gpu_worker": {"gpu_driver": pinned - 20.0, "heap": 20.0}}
        return sample.model_copy(update=update)
    record = _record(_requests(), [with_maps(s) for s in _samples()])
    [problem] = record.problems
    # the role: window max to window max (+244 MiB); its mappings: the last read in each window (t = 60 and 180: +240)
    assert "most in gpu_worker processes (+244.0 MiB) (of which gpu_driver mappings +240.0 MiB)" in problem
    assert "heap mappings" not in problem
