"""autotune pack (autotune.report.pack) on a tiny synthetic run folder: what it drops, what it keeps, and that the
summaries' reader (autotune.report.recorded) reads every packed file back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image
from typer.testing import CliRunner

from autotune.bench.result import load_result, save_result
from autotune.bench.schemas import BenchResult, LoadSpec, RequestRecord, Stats, Summary
from autotune.bench.soak import ResourceSample, SoakBounds, SoakRecord, SoakSettings, judge, windows_of
from autotune.bench.vllm_bench import combine
from autotune.cli.main import app
from autotune.errors import AutotuneError
from autotune.report import recorded
from autotune.report.pack import pack_folder, slim_soak_record


def _result() -> BenchResult:
    requests = [
        RequestRecord(index=i, send_time_s=0.1 * i + 1.234e-7, success=True, ttft_ms=100.0 + i, e2el_ms=700.0 + i,
                      itl_ms=[5.0 + i, 6.5, 7.25], input_tokens=270, output_tokens=4)
        for i in range(3)
    ]
    summary = Summary(completed=3, throughput_rps=2.0, itl_ms=Stats(p50=6.5, p99=7.25))
    return BenchResult(url="http://127.0.0.1:1", workload={"name": "vlm-chat"}, load=LoadSpec(mode="concurrency", concurrency=2),
                       summary=summary, sweep=[summary], requests=requests, gpu_timeseries=[{"t_s": 0.0, "util_pct": 50.0}])


ACCESS = '(APIServer pid=1) INFO:     127.0.0.1:{port} - "{method} {path} HTTP/1.1" {status}\n'
SERVER_LOG = ("INFO starting\n" + ACCESS.format(port=4, method="GET", path="/health", status="200 OK")
              + ACCESS.format(port=5, method="POST", path="/v1/chat/completions", status="200 OK")
              + ACCESS.format(port=6, method="POST", path="/v1/chat/completions", status="400 Bad Request")
              + "ERROR ValueError: boom\n")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An Optuna SQLite store of one finished trial (made once: creating the schema takes seconds)."""
    path = tmp_path_factory.mktemp("store") / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}")
    study.enqueue_trial({"max_num_seqs": 128})
    study.optimize(lambda trial: float(trial.suggest_int("max_num_seqs", 64, 256)), n_trials=1)
    return path.read_bytes()


@pytest.fixture()
def run(tmp_path: Path, store: bytes) -> Path:
    """A run folder as the device brings it back: two studies, MLflow copies, HTML report, logs, a stack profile."""
    root = tmp_path / "2026-01-02"
    for name in ("kept", "superseded"):
        trial = root / "study" / name / "trials" / "0"
        trial.mkdir(parents=True)
        save_result(_result(), trial / "result.json.gz")
        (trial / "server.log").write_text(SERVER_LOG)
        (trial / "trial.json").write_text(json.dumps({"number": 0, "state": "complete"}))
        (root / "study" / name / "optuna.db").write_bytes(store)
        (root / "study" / name / "mlflow.db").write_bytes(b"SQLite format 3\x00")
        artifacts = root / "study" / name / "mlartifacts" / "abc" / "artifacts"
        artifacts.mkdir(parents=True)
        (artifacts / "trial.json").write_bytes((trial / "trial.json").read_bytes())
    window = root / "study" / "kept" / "trials" / "0" / "stack-profile" / "phase00-c256"
    window.mkdir(parents=True)
    (window / "EngineCore.7.folded.gz").write_bytes(gzip.compress(b"# header\nMainThread;run 10\n"))
    (root / "study" / "kept" / "trials" / "0" / "stack_profile.json").write_text('{"windows": []}')
    (root / "measurements").mkdir()
    save_result(_result(), root / "measurements" / "bench-c2.json")  # written uncompressed
    (root / "measurements" / "worker-gpu0.log").write_text("worker\n")
    (root / "report").mkdir()
    (root / "report" / "report.html").write_text("<html>")
    (root / "report" / "report.md").write_text("# report\n![](latency_cdf.png)\n")
    Image.new("RGBA", (64, 32), (31, 119, 180, 255)).save(root / "report" / "latency_cdf.png")
    (root / "soak").mkdir()
    (root / "soak" / "soak.json").write_text('{"kind": "autotune-soak"}')
    return root


def test_a_run_folder_packs_to_what_the_reader_reads_back(run: Path) -> None:
    pack_folder(run, {"superseded"})
    kept, superseded = run / "study" / "kept", run / "study" / "superseded"
    # MLflow copies and the HTML twin of the Markdown report are gone; the Markdown stays
    assert not list(run.rglob("mlflow.db")) and not list(run.rglob("mlartifacts"))
    assert not (run / "report" / "report.html").exists() and (run / "report" / "report.md").is_file()
    # one store kept compressed (readable as SQLite again), the other exported as Optuna's trials table
    assert (kept / "optuna.db.xz").is_file() and not (kept / "optuna.db").exists()
    assert recorded.read_bytes(kept / "optuna.db").startswith(b"SQLite format 3\x00")
    assert not recorded.exists(superseded / "optuna.db")
    export = recorded.read_text(superseded / "optuna-trials.csv").splitlines()
    assert "datetime_start" in export[0].split(",") and "params_max_num_seqs" in export[0] and len(export) == 2
    # results lose only their per-token gaps and their send times' digits below 1 us; every result is stored gzip'd
    for path in (kept / "trials" / "0" / "result.json.gz", run / "measurements" / "bench-c2.json.gz"):
        packed, original = load_result(path), _result()
        assert [r.itl_ms for r in packed.requests] == [[], [], []]
        assert packed.summary == original.summary and packed.sweep == original.sweep
        assert [r.model_dump(exclude={"itl_ms", "send_time_s"}) for r in packed.requests] == [
            r.model_dump(exclude={"itl_ms", "send_time_s"}) for r in original.requests
        ]
        assert [r.send_time_s for r in packed.requests] == [round(0.1 * i, 6) for i in range(3)]  # to 1 us
    assert not (run / "measurements" / "bench-c2.json").exists()
    # logs and stack profiles are compressed but read as written
    assert (kept / "trials" / "0" / "server.log.gz").is_file()
    # a log without its successful-response access lines, counted; every other line kept
    assert recorded.read_text(kept / "trials" / "0" / "server.log") == (
        "INFO starting\n" + ACCESS.format(port=6, method="POST", path="/v1/chat/completions", status="400 Bad Request")
        + "ERROR ValueError: boom\n[autotune pack: 2 access line(s) of 200 responses left out]\n")
    assert recorded.read_text(run / "measurements" / "worker-gpu0.log") == "worker\n"
    assert recorded.read_bytes(kept / "trials" / "0" / "stack_profile.json") == b'{"windows": []}'
    assert (kept / "trials" / "0" / "stack-profile.tar.xz").is_file()
    with recorded.folder(kept / "trials" / "0" / "stack-profile") as profile:
        assert (profile / "phase00-c256" / "EngineCore.7.folded").read_bytes() == b"# header\nMainThread;run 10\n"


def test_plots_become_palette_images_and_a_soak_series_is_gzipped(run: Path) -> None:
    pack_folder(run, set())
    with Image.open(run / "report" / "latency_cdf.png") as plot:
        assert plot.mode == "P" and plot.size == (64, 32)
        assert plot.convert("RGB").getpixel((0, 0)) == (31, 119, 180)
    assert not (run / "soak" / "soak.json").exists()
    assert recorded.read_text(run / "soak" / "soak.json") == '{"kind": "autotune-soak"}'


def test_packing_twice_changes_nothing(run: Path) -> None:
    pack_folder(run, {"superseded"})
    first = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    pack_folder(run, {"superseded"})
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == first


def test_an_artifact_without_a_copy_in_its_study_stops_the_packing(run: Path) -> None:
    lost = run / "study" / "kept" / "mlartifacts" / "abc" / "artifacts" / "only-here.txt"
    lost.write_text("logged to MLflow only")
    with pytest.raises(AutotuneError, match="only-here.txt: no copy of this MLflow artifact"):
        pack_folder(run, set())
    assert lost.is_file()


def test_the_pack_command_prints_each_folder_before_and_after(run: Path) -> None:
    shown = CliRunner().invoke(app, ["pack", str(run), "--export-store", "superseded"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"{run}: ") and " files -> " in shown.output
    assert (run / "study" / "kept" / "optuna.db.xz").is_file()


def _vllm_bench_file(path: Path) -> dict:
    rng = np.random.default_rng(3)
    requests = 200
    data = {
        "duration": 10.0, "completed": requests, "failed": 0, "request_rate": 20.0,
        "ttfts": rng.uniform(0.05, 0.9, requests).tolist(),
        "itls": [rng.uniform(0.02, 0.06, 31).tolist() for _ in range(requests)],
        "start_times": np.cumsum(rng.exponential(0.05, requests)).tolist(),
        "errors": [""] * requests, "generated_texts": ["some generated text " * 20] * requests,
    }
    path.write_text(json.dumps(data))
    return data


def test_a_vllm_bench_result_packs_without_texts_and_keeps_its_verdict(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    written = run / "best" / "vllm-bench-p0.json"
    original = _vllm_bench_file(written)
    (run / "best" / "vllm-bench-combined.json").write_text('{"meets_slo": true}')  # a verdict: left as it is
    slo = {"ttft_ms": 2000.0, "tpot_ms": 50.0}
    verdict = combine([written], slo)
    pack_folder(run, set())
    packed = run / "best" / "vllm-bench-p0.json.gz"
    assert not written.exists() and packed.is_file()
    data = json.loads(gzip.decompress(packed.read_bytes()))
    assert "generated_texts" not in data and data["ttfts"] == [round(t, 5) for t in original["ttfts"]]
    again = combine([packed], slo)
    for name in ("ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99"):
        assert getattr(again, name) == pytest.approx(getattr(verdict, name), abs=0.01)
    assert (run / "best" / "vllm-bench-combined.json").read_text() == '{"meets_slo": true}'
    before = packed.read_bytes()
    pack_folder(run, set())
    assert packed.read_bytes() == before  # idempotent


def _soak_record() -> SoakRecord:
    settings = SoakSettings(rate_rps=2.0, duration_s=180.0, window_s=60.0, bounds=SoakBounds(memory_growth_mib=32))
    requests = [RequestRecord(index=i, send_time_s=i / 2 + 0.0123, success=i % 50 != 7, ttft_ms=20.0 + (i % 13) * 0.37,
                              e2el_ms=500.0 + (i % 17) * 1.11) for i in range(360)]
    samples = [ResourceSample(t_s=float(t), rss_mib=100.0 + (0.4 * t if t > 120 else 0.0)) for t in range(180)]
    record = SoakRecord(
        url="http://127.0.0.1:1", settings=settings, simulated=True, sent=360, failed=sum(not r.success for r in requests),
        windows=windows_of(requests, samples, duration_s=180.0, window_s=60.0), samples=samples,
        requests=[(round(r.send_time_s, 3), round(r.ttft_ms or 0, 1), round(r.e2el_ms or 0, 1), r.success) for r in requests],
    )
    record.problems = judge(record)
    return record


def test_a_soak_record_packs_with_coarser_request_times_and_the_same_windows_and_verdict(tmp_path: Path) -> None:
    record = _soak_record()
    assert record.problems  # failures and a late memory rise: a verdict with something to keep
    (tmp_path / "soak").mkdir()
    (tmp_path / "soak" / "soak.json").write_text(record.model_dump_json(indent=1))
    pack_folder(tmp_path, set())
    packed = SoakRecord.model_validate_json(recorded.read_text(tmp_path / "soak" / "soak.json"))
    assert (packed.windows, packed.problems, packed.sent, packed.failed) == (record.windows, record.problems, 360, 8)
    assert packed.packed is not None and len(packed.requests) == 360
    assert packed.requests[1] == (0.51, 20.0, 501.0, True)  # from (0.512, 20.4, 501.1): 10 ms and 1 ms
    once = (tmp_path / "soak" / "soak.json.gz").read_bytes()
    pack_folder(tmp_path, set())
    assert (tmp_path / "soak" / "soak.json.gz").read_bytes() == once
    assert slim_soak_record(json.loads(recorded.read_text(tmp_path / "soak" / "soak.json"))) is None
