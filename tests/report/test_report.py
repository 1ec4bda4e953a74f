"""`autotune report` on a small simulated study built in-process (fake runner writing result.json files)."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers.tune import FakeRunner, quick_space_mapping, space_from
from typer.testing import CliRunner

from autotune.bench.schemas import BenchResult, LoadSpec, RequestRecord
from autotune.config import EngineConfig, Provenance
from autotune.observe.gpu import GpuSummary
from autotune.report import ReportFormat, gather, write_report
from autotune.report.render import SIMULATED_BANNER
from autotune.tune.session import open_study, reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial_result import TrialOutcome, TrialResult

STUDY = "report-study"


class RecordingRunner(FakeRunner):
    """FakeRunner that also writes a result.json: per-request latencies and a GPU series scaled by max_num_seqs
    (NVML busy at 99% throughout, SM active (GPM) at 5% per sequence)."""

    def run(self, number: int, engine: EngineConfig, provenance: Provenance) -> TrialResult:
        result = super().run(number, engine, provenance)
        if result.state is not TrialOutcome.COMPLETE or result.summary is None:
            return result
        seqs = engine.max_num_seqs or 4
        records = [
            RequestRecord(index=i, send_time_s=i * 0.1, success=True, ttft_ms=10.0 * seqs + i,
                          e2el_ms=100.0 * seqs + i, output_tokens=11, itl_ms=[1.0] * 10)
            for i in range(20)
        ]
        sm_active = float(min(100, 5 * seqs))
        gpu = [{"t_s": i * 0.5, "device": 0.0, "util_pct": 99.0, "sm_active_pct": sm_active, "mem_used_mib": 1000.0} for i in range(5)]
        result.summary = result.summary.model_copy(update={"gpu": GpuSummary(
            devices=["Fake H200"], samples=5, util_mean=99.0, gpm_status="ok", gpm_intervals=4, sm_active_mean=sm_active)})
        bench = BenchResult(url="http://127.0.0.1:1", workload={"name": "vlm-chat"}, load=LoadSpec(mode="concurrency", concurrency=8, num_requests=20),
                            simulated=True, summary=result.summary, requests=records, gpu_timeseries=gpu)
        path = Path(result.trial_dir) / "result.json"
        path.write_text(bench.model_dump_json())
        result.result_path = str(path)
        # as --stack-profile-hz would: the engine core's activities (here: more vision encoder with more seqs)
        encoder = min(0.9, seqs / 40)
        result.stack_metrics = {"stack_engine_core_vision_encoder_share": encoder, "stack_engine_core_gpu_wait_share": 0.1,
                                "stack_engine_core_other_share": round(0.9 - encoder, 4), "stack_api_server_event_loop_busy": 0.05}
        return result


def _space(**changes: Any) -> Any:
    data = quick_space_mapping()
    data.update(changes)
    return space_from(data)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiments")
    space, settings = _space(), TuneSettings(study=STUDY, experiments_dir=root, mlflow=False, n_trials=6)
    session = open_study(space, settings)
    session.study.enqueue_trial({"gpu_memory_utilization": 0.15})  # the fake runner rejects it: one PRUNED trial
    run_tuning(space, settings, runner_factory=RecordingRunner, session=session)
    return root / STUDY


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_html_is_self_contained_with_banner_table_and_figures(study_dir: Path) -> None:
    outcome = write_report(STUDY, experiments_dir=study_dir.parent, formats=[ReportFormat.HTML])
    html = outcome.files[0].read_text()
    assert outcome.simulated and SIMULATED_BANNER in html
    assert "default (trial 0)" in html and "best / default" in html
    pngs = _pngs(html)
    assert len(pngs) >= 4 and all(p.startswith(b"\x89PNG") for p in pngs)  # history, importances, CDFs, GPU
    assert "n/a: one objective" in html  # goodput: no Pareto front
    assert "<img" in html and "src='http" not in html and 'src="http' not in html  # nothing fetched from elsewhere


def test_comparison_ratio_and_curves_come_from_the_trials(study_dir: Path) -> None:
    session = reopen_study(STUDY, experiments_dir=study_dir.parent, mlflow=False)
    data = gather(session)
    assert data.default is not None and data.best is not None and data.default.number == 0
    row = next(r for r in data.comparison if r.metric == "goodput_rps")
    assert row.ratio == pytest.approx(row.best / row.default)
    best_trial = session.study.trials[data.best.number]
    assert row.best == pytest.approx(best_trial.user_attrs["metrics"]["goodput_rps"])
    assert len(data.best.ttft_ms) == 20 and len(data.best.tpot_ms) == 20  # from result.json records
    assert data.best.gpu_timeseries and data.default.gpu_timeseries


def test_a_moved_study_with_compressed_results_still_has_its_curves(study_dir: Path, tmp_path: Path) -> None:
    import gzip

    from autotune.report.data import load_run
    from autotune.tune import attrs

    session = reopen_study(STUDY, experiments_dir=study_dir.parent, mlflow=False)
    trial = next(t for t in session.study.trials if t.state.name == "COMPLETE")
    original = study_dir / "trials" / str(trial.number) / "result.json"
    moved = tmp_path / "archive" / STUDY  # the study copied elsewhere, its recorded result path gone
    target = moved / "trials" / str(trial.number) / "result.json.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(original.read_bytes()))
    trial.user_attrs[attrs.RESULT_PATH] = str(tmp_path / "gone" / "result.json")
    run = load_run(trial, "best", moved)
    assert run.result_path == target and len(run.ttft_ms) == 20 and run.gpu_timeseries


def test_markdown_has_png_files_beside_it_and_lists_pruned_trials(study_dir: Path, tmp_path: Path) -> None:
    outcome = write_report(STUDY, experiments_dir=study_dir.parent, formats=[ReportFormat.MD], output_dir=tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    for name in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    session = reopen_study(STUDY, experiments_dir=study_dir.parent, mlflow=False)
    bad = [t for t in session.study.trials if t.state.name in ("PRUNED", "FAIL")]
    assert bad
    for trial in bad:
        assert f"| {trial.number} | {trial.state.name} | {trial.user_attrs['prune_reason']}" in markdown
    assert SIMULATED_BANNER in markdown and outcome.simulated


def test_the_stack_profile_section_shows_each_profiled_trial(study_dir: Path, tmp_path: Path) -> None:
    session = reopen_study(STUDY, experiments_dir=study_dir.parent, mlflow=False)
    data = gather(session)
    complete = [t for t in session.study.trials if t.state.name == "COMPLETE"]
    assert [r.number for r in data.stack_rows] == [t.number for t in complete]
    for row, trial in zip(data.stack_rows, complete, strict=True):
        assert row.engine_core["vision_encoder"] == trial.user_attrs["metrics"]["stack_engine_core_vision_encoder_share"]
    write_report(STUDY, experiments_dir=study_dir.parent, formats=[ReportFormat.MD], output_dir=tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Where the server's time went (stack profile, reported window)" in markdown
    first = data.stack_rows[0]
    assert f"| {first.number} | {first.kind} |" in markdown and f"{100 * first.engine_core['vision_encoder']:.0f}%" in markdown


def test_the_stack_section_reads_the_kept_folded_stacks_again(study_dir: Path, tmp_path: Path) -> None:
    """A report by a newer autotune classifies the kept samples itself (here: a Worker process's thread, which the
    trial's own metrics did not read), rather than repeating the figures the trial recorded."""
    copy = tmp_path / "experiments"
    shutil.copytree(study_dir.parent, copy)
    session = reopen_study(STUDY, experiments_dir=copy, mlflow=False)
    trial = next(t for t in session.study.trials if t.state.name == "COMPLETE")
    window = copy / STUDY / "trials" / str(trial.number) / "stack-profile" / "phase01-c8"
    window.mkdir(parents=True)
    (window / "Worker.99.folded").write_text(
        "# samples 4 hz 25 pid 99 closed\nMainThread;vllm/v1/worker/gpu_model_runner.py:_model_forward 4\n"
    )
    row = next(r for r in gather(session).stack_rows if r.number == trial.number)
    assert row.engine_core["language_model"] == 1.0
    assert trial.user_attrs["metrics"].get("stack_engine_core_language_model_share") != 1.0


def test_pareto_study_draws_the_front_and_few_trials_skip_importances(tmp_path: Path) -> None:
    space = _space(objective={"kind": "pareto"}, name="pareto-study")
    run_tuning(space, TuneSettings(study="p", experiments_dir=tmp_path, mlflow=False, n_trials=2), runner_factory=RecordingRunner)
    html = write_report("p", experiments_dir=tmp_path).files[0].read_text()
    assert "<h2>Pareto front</h2>\n<img" in html
    assert "complete sampled trial(s), at least 2 needed" in html or "<h2>Parameter importances" in html


def test_cli_report_and_unknown_study(study_dir: Path, tmp_path: Path) -> None:
    from autotune.cli.main import app

    ok = CliRunner().invoke(app, ["report", STUDY, "--experiments-dir", str(study_dir.parent), "--output", str(tmp_path),
                                  "--format", "html", "--format", "md"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    bad = CliRunner().invoke(app, ["report", STUDY, "--format", "pdf"])
    assert bad.exit_code != 0 and "pdf" in bad.output


def test_a_censored_slo_rate_is_shown_as_a_lower_bound() -> None:
    from autotune.config import EngineKind
    from autotune.report.data import ComparisonRow, ReportData
    from autotune.report.render import to_markdown

    row = ComparisonRow(metric="slo_rate_rps", better="higher", default=30.71, best=53.0, default_lower_bound=True)
    data = ReportData(study="s", engine=EngineKind.VLLM, simulated=False, objective="slo_rate", objective_names=["slo_rate_rps"],
                      workload="vlm-chat", n_trials=2, counts={"COMPLETE": 2}, best_how="mean", default=None, best=None,
                      comparison=[row], issues=[])
    assert "| slo_rate_rps | higher | ≥ 30.71 | 53 |" in to_markdown(data, [], {})


def test_the_report_shows_nvml_busy_and_sm_active_labeled(study_dir: Path, tmp_path: Path) -> None:
    from autotune.report.figures import gpu_figure

    session = reopen_study(STUDY, experiments_dir=study_dir.parent, mlflow=False)
    data = gather(session)
    assert data.default is not None and data.default.gpm_status == "ok"
    write_report(STUDY, experiments_dir=study_dir.parent, formats=[ReportFormat.MD], output_dir=tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    sm_active = data.default.metrics["gpu_sm_active_mean"]
    assert (f"GPU activity, vLLM defaults (trial 0): NVML busy 99% (share of time any kernel ran); "
            f"SM active (GPM) {sm_active:.4g}% (share of SMs busy)") in markdown
    assert "| GPU NVML busy % (any kernel running) | higher | 99 | 99 | 1.00x |" in markdown
    assert f"| GPU SM active (GPM) % | higher | {sm_active:.4g} |" in markdown
    assert gpu_figure(data).title.endswith("NVML busy vs SM active (GPM)")


def test_without_gpm_the_report_says_gpm_unavailable_not_zero() -> None:
    from autotune.config import EngineKind
    from autotune.report.data import ComparisonRow, ReportData, TrialRun
    from autotune.report.figures import gpu_figure
    from autotune.report.render import to_markdown

    reason = "unavailable: GPU 0 (NVIDIA A100) does not support GPM (Hopper or newer has it)"
    run = TrialRun(number=0, label="vLLM defaults", metrics={"gpu_util_mean": 99.0, "gpu_gpm_available": 0.0},
                   gpm_status=reason, gpu_timeseries=[{"t_s": 0.0, "device": 0.0, "util_pct": 99.0}])
    rows = [ComparisonRow(metric="gpu_util_mean", better="higher", default=99.0, best=None),
            ComparisonRow(metric="gpu_sm_active_mean", better="higher", default=None, best=None)]
    data = ReportData(study="s", engine=EngineKind.VLLM, simulated=False, objective="slo_rate", objective_names=["slo_rate_rps"],
                      workload="vlm-chat", n_trials=1, counts={"COMPLETE": 1}, best_how="mean", default=run, best=None,
                      comparison=rows, issues=[])
    markdown = to_markdown(data, [], {})
    assert "NVML busy 99% (share of time any kernel ran); GPM unavailable: GPU 0 (NVIDIA A100) does not support GPM" in markdown
    assert "| GPU SM active (GPM) % | higher | GPM unavailable | - | - |" in markdown
    assert "GPM unavailable: GPU 0 (NVIDIA A100)" in gpu_figure(data).title
