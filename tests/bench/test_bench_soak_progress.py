"""A cut-off soak's memory series rebuilt from its progress lines (autotune.bench.soak_progress, `autotune soak-progress`)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from autotune.bench.soak import ResourceSample, progress_line
from autotune.bench.soak_progress import growth_since, parse_progress_line, progress_table, read_progress
from autotune.cli.main import app


def _sample(t_s: float, worker_heap: float, api: float = 7000.0) -> ResourceSample:
    worker = worker_heap + 1300.0 + 205.0
    return ResourceSample(
        t_s=t_s, rss_mib=round(api + worker + 1000.0, 2), pss_mib=round(api + worker + 900.0, 2), open_fds=941, processes=11,
        gpu_memory_used_mib=64314.4,
        rss_by_role_mib={"api_server": api, "gpu_worker": worker, "engine_core": 1000.0},
        pss_by_role_mib={"api_server": api, "gpu_worker": worker, "engine_core": 900.0},
        pss_by_role_and_mapping_mib={
            "gpu_worker": {"heap": worker_heap, "anonymous": 1300.0, "file": 205.0, "shared_memory": 0.5},
            "api_server": {"anonymous": api - 3000.0, "heap": 2900.0, "file": 100.0},
        },
    )


def _log(samples: list[ResourceSample]) -> str:
    lines = ["$ soak at 59.60 req/s for 1329 s", "WARNING something else entirely"]
    lines += [progress_line(sample.t_s, sample) for sample in samples]
    return "\n".join(lines) + "\n"


def test_a_progress_line_reads_back_as_the_sample_it_printed_less_what_the_line_leaves_out() -> None:
    sample = _sample(302.0, 7770.49)
    parsed = parse_progress_line(progress_line(302.0, sample))
    assert parsed is not None
    assert (parsed.t_s, parsed.rss_mib, parsed.pss_mib, parsed.open_fds, parsed.processes, parsed.gpu_memory_used_mib) == (
        302.0, sample.rss_mib, sample.pss_mib, 941, 11, 64314.4)
    assert parsed.pss_by_role_mib == sample.pss_by_role_mib and parsed.rss_by_role_mib is None  # the line shows PSS by role
    assert parsed.pss_by_role_and_mapping_mib == {  # each role's three largest kinds only
        "gpu_worker": {"heap": 7770.49, "anonymous": 1300.0, "file": 205.0},
        "api_server": {"anonymous": 4000.0, "heap": 2900.0, "file": 100.0},
    }
    rss_only = sample.model_copy(update={"pss_mib": None, "pss_by_role_mib": None, "pss_by_role_and_mapping_mib": None,
                                         "gpu_memory_used_mib": None})
    parsed_rss = parse_progress_line(progress_line(60.0, rss_only))
    assert parsed_rss is not None and parsed_rss.pss_mib is None and parsed_rss.gpu_memory_used_mib is None
    assert parsed_rss.rss_by_role_mib == sample.rss_by_role_mib
    assert parse_progress_line("soak exit 0 after 1329 s") is None
    assert parse_progress_line("soak: 61 s in: no server process sampled") == ResourceSample(t_s=61.0)


def test_the_table_and_the_growth_name_the_role_and_mapping_kind_that_grew_after_settling() -> None:
    samples = read_progress(_log([_sample(1, 2753.0), _sample(181, 7667.0), _sample(302, 7770.0, api=7050.0),
                                  _sample(842, 8069.0, api=7090.0), _sample(902, 8087.0), _sample(962, 8097.0, api=7100.0)]))
    assert [sample.t_s for sample in samples] == [1, 181, 302, 842, 902, 962]
    table = progress_table(samples).splitlines()
    assert table[0] == ("| s in | PSS total | api_server | engine_core | gpu_worker | gpu_worker heap | gpu_worker anonymous "
                        "| gpu_worker file | open fds | GPU memory |")
    assert table[2].startswith("| 1 | 12,158 | 7,000 | 900 | 4,258 | 2,753 | 1,300 | 205 | 941 | 64,314 |")
    assert len(table) == 2 + 6
    growth = growth_since(samples, 300)
    assert growth.startswith("from 302 to 962 s: PSS +377 MiB (gpu_worker +327, api_server +50, engine_core +0)")
    assert "of which gpu_worker heap mappings +327 MiB" in growth and growth.endswith("the last 120 s +38 MiB")
    assert growth_since(samples, 950) == ""  # one sample after it: nothing to compare


def test_soak_progress_writes_the_table_and_plot_and_refuses_a_log_without_progress_lines(tmp_path: Path) -> None:
    log = tmp_path / "soak.log"
    windows = ["soak: window 0-300 s (settling): 17880 sent, 0 failed, p99 TTFT 230.0 ms, p99 E2E 3800.5 ms; 18000 done so far, 0 failed",
               "soak: window 300-506 s: 12278 sent, 0 failed, p99 TTFT 210.0 ms, p99 E2E 3777.0 ms; 31000 done so far, 0 failed",
               "soak: window 506-712 s: 12278 sent, 2 failed, p99 TTFT 420.0 ms, p99 E2E 3720.0 ms; 43000 done so far, 2 failed"]
    log.write_text(_log([_sample(1, 2753.0), _sample(302, 7770.0), _sample(962, 8097.0)]) + "\n".join(windows) + "\n")
    done = CliRunner().invoke(app, ["soak-progress", str(log), "--out", str(tmp_path / "out"), "--settle-s", "300"])
    assert done.exit_code == 0, done.output
    written = (tmp_path / "out" / "progress.md").read_text()
    assert written.startswith("| s in | PSS total |")
    assert "| 300-506 | 12,278 | 0 | 210.0 | 3,777.0 |" in written and "| 0-300 (settling) | 17,880 |" in written
    assert written.rstrip().endswith(  # the first judged window against the last told; 1.5 x 210 + 100 = 415 < 420
        "windows 300-506 s to 506-712 s: 2 failed of 42,436 in the windows told; p99 TTFT 210.0 -> 420.0 ms (bound 415 ms: "
        "broken); p99 E2E 3,777.0 -> 3,720.0 ms (bound 5,766 ms: held)")
    assert (tmp_path / "out" / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "from 302 to 962 s: PSS +327 MiB" in done.output
    empty = tmp_path / "empty.log"
    empty.write_text("soak exit cut by the lease\n")
    refused = CliRunner().invoke(app, ["soak-progress", str(empty), "--out", str(tmp_path / "none")])
    assert refused.exit_code != 0 and "has no soak progress line" in str(refused.exception)  # main() prints it
    assert not (tmp_path / "none").exists()
