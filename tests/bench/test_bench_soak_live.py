"""The soak's windows told while it runs (autotune.bench.soak_live): when each is told, and that it tells what the
record later says of the same window."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from autotune.bench import soak_live
from autotune.bench.progress import DoneRequest
from autotune.bench.schemas import RequestRecord
from autotune.bench.soak import SoakSettings, run_soak, windows_of
from autotune.bench.soak_live import LiveWindows, parse_window_line


def _done(send_s: float, success: bool = True) -> DoneRequest:
    return DoneRequest(send_s, success, 20.0 + send_s if success else None, 500.0 + 3 * send_s if success else 9.0)


def test_a_window_is_told_once_a_request_sent_close_after_s_past_its_end_has_finished_and_matches_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(soak_live, "CLOSE_AFTER_S", 20.0)
    told: list[str] = []
    live = LiveWindows(duration_s=100.0, window_s=30.0, settle_s=10.0, report=told.append)  # 0-10, 10-40, 40-70, 70-100
    sends = [s / 2 for s in range(200)]  # 2 req/s for 100 s, finishing out of order
    finished = sorted(sends, key=lambda s: s + (3.0 if int(s) % 7 == 0 else 0.5))
    failed_at = {12.0, 55.5}
    latest = 0.0
    for send in finished:
        before = len(told)
        live.advance(_done(send, success=send not in failed_at))
        crossed = [end for end in (30.0, 60.0, 90.0) if latest < end <= send]  # window ends + 20 s
        assert len(told) == before + len(crossed)  # told exactly when a request sent 20 s past its end finished
        latest = max(latest, send)
    live.advance(None)  # a request cut off at the end: counted as failed in the totals, in no window
    assert len(told) == 3  # never the last window: the record has it
    records = [RequestRecord(index=i, send_time_s=s, success=s not in failed_at, ttft_ms=_done(s).ttft_ms,
                             e2el_ms=_done(s, s not in failed_at).e2el_ms) for i, s in enumerate(sends)]
    expected = windows_of(records, [], duration_s=100.0, window_s=30.0, settle_s=10.0)
    for line, window in zip(told, expected, strict=False):
        parsed = parse_window_line(line)
        assert parsed is not None
        assert (parsed.start_s, parsed.end_s, parsed.settling, parsed.sent, parsed.failed, parsed.ttft_p99_ms, parsed.e2el_p99_ms) == (
            window.start_s, window.end_s, window.settling, window.sent, window.failed, window.ttft_p99_ms, window.e2el_p99_ms)
    assert told[0].startswith("soak: window 0-10 s (settling): 20 sent, 0 failed, p99 TTFT ")
    assert told[1].startswith("soak: window 10-40 s: 60 sent, 1 failed, ")
    live.phase("again, with more client processes", None)
    assert (live.done, live.told, live.cut_off) == ([], 0, 0)


def test_a_line_that_is_not_a_window_is_not_read_as_one() -> None:
    assert parse_window_line("soak: 61 s in: server RSS 10.0 MiB, 16 open fds") is None
    window = parse_window_line("soak: window 300-506 s: 12278 sent, 0 failed, p99 TTFT None ms, p99 E2E None ms; 1 done so far, 0 failed")
    assert window is not None and window.ttft_p99_ms is None and window.sent == 12278


def test_a_soak_through_client_processes_tells_each_window_but_the_last_as_the_record_has_it(
    start_fake_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(soak_live, "CLOSE_AFTER_S", 0.6)
    url = start_fake_server("--ttft-ms", "15", "--itl-ms", "1", "--tokens", "4", "--fail-every", "9", "--fail-status", "500")
    told: list[str] = []
    settings = SoakSettings(rate_rps=20.0, duration_s=8.0, window_s=2.0, settle_s=2.0, warmup_requests=2, client_processes=2,
                            sample_interval_s=0.5)
    record = run_soak(url, settings, report=told.append)
    windows = [window for line in told if (window := parse_window_line(line)) is not None]
    assert len(windows) == len(record.windows) - 1 == 3
    for live_window, window in zip(windows, record.windows, strict=False):
        assert (live_window.sent, live_window.failed, live_window.ttft_p99_ms, live_window.e2el_p99_ms) == (
            window.sent, window.failed, window.ttft_p99_ms, window.e2el_p99_ms)
    assert sum(window.failed for window in windows) > 0  # the fake server's every 9th request failed, and was told
