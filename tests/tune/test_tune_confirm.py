"""`--confirm N`: the best config and the defaults measured again, interleaved, and told apart from noise (or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.tune import FakeRunner, space_from

from autotune.config import EngineConfig, Provenance
from autotune.tune import attrs
from autotune.tune.best import select_best
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial_result import TrialResult


def _space(quick_space_data: dict) -> Any:
    data = dict(quick_space_data)
    data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [4, 8]}}
    data["sampler"] = {"kind": "grid", "seed": 0}
    return space_from(data)


class NoisyRunner(FakeRunner):
    """The fake runner with run-to-run noise: each measurement of a config adds the next offset of NOISE."""

    noise: list[float] = []

    def run(self, number: int, engine: EngineConfig, provenance: Provenance) -> TrialResult:
        result = super().run(number, engine, provenance)
        if result.summary is not None:
            shift = NoisyRunner.noise.pop(0) if NoisyRunner.noise else 0.0
            s = result.summary
            result.summary = s.model_copy(update={"throughput_rps": s.throughput_rps + shift, "goodput_rps": s.goodput_rps + shift})
        return result


def _study(tmp_path: Path, space: Any) -> Any:
    return reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study


def test_confirm_queues_interleaved_repeats_and_reports_a_real_difference(tmp_path: Path, quick_space_data: dict) -> None:
    space = _space(quick_space_data)
    # trial 0 defaults (max_num_seqs 4 by the fake's default), then max_num_seqs 8 and 4 from the grid
    NoisyRunner.noise = [0.0, 0.0, 0.0]
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=3, mlflow=False), runner_factory=NoisyRunner)
    study = _study(tmp_path, space)
    best, _ = select_best(study, space)
    assert best is not None and best.params == {"max_num_seqs": 8}
    NoisyRunner.noise = [0.1, -0.1, 0.05, -0.05]  # small noise: the best stays above the defaults in every run
    outcome = run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=4, confirm=2, mlflow=False),
                         runner_factory=NoisyRunner)
    study = _study(tmp_path, space)
    repeats = [t for t in study.trials if t.user_attrs.get(attrs.CONFIG_KIND) == attrs.REPEAT]
    assert [t.user_attrs[attrs.REPEAT_OF] for t in repeats] == [best.number, 0, 0, best.number]  # B D D B
    assert all(t.user_attrs.get(attrs.DUPLICATE_OF) is None for t in repeats)  # served again, not reused
    assert repeats[0].params == best.params and repeats[1].params == {}
    served = FakeRunner.calls
    assert [c.max_num_seqs for c in served] == [8, None, None, 8]  # what each repeat served: the original's config
    c = outcome.confirmation
    assert c is not None and c.apart and c.best.trials == [best.number, repeats[0].number, repeats[3].number]
    assert c.defaults.values[0] == 2.7 and len(c.defaults.values) == 3  # goodput: 0.9 x the fake's 3.0 req/s
    assert (tmp_path / space.name / "confirmation.json").is_file()
    # a resumed run with the same --confirm queues nothing more
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=0, confirm=2, mlflow=False), runner_factory=NoisyRunner)
    assert sum(t.user_attrs.get(attrs.CONFIG_KIND) == attrs.REPEAT for t in _study(tmp_path, space).trials) == 4


def test_noise_larger_than_the_difference_is_said_and_the_best_is_chosen_on_means(tmp_path: Path, quick_space_data: dict) -> None:
    space = _space(quick_space_data)
    NoisyRunner.noise = [0.0, 0.0, 0.0]
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=3, mlflow=False), runner_factory=NoisyRunner)
    # goodput: defaults 2.7, best 3.6 first; repeats B D D B: best 3.6 -1.5, defaults 2.7 +1.2, +0.5, best 3.6 +0.2
    NoisyRunner.noise = [-1.5, 1.2, 0.5, 0.2]
    outcome = run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=4, confirm=2, mlflow=False),
                         runner_factory=NoisyRunner)
    c = outcome.confirmation
    assert c is not None and not c.apart and "not told apart" in c.verdict
    study = _study(tmp_path, space)
    best, how = select_best(study, space)
    # means: best (3.6 + 2.1 + 3.8) / 3 = 3.17 < defaults (2.7 + 3.9 + 3.2) / 3 = 3.27: the defaults win on the mean
    assert best is not None and best.number == 0 and "mean" in how
    assert c.best.mean < c.defaults.mean and c.best.trial != 0  # the comparison still names the sampled challenger


def test_the_report_and_the_trials_table_show_the_repeats(tmp_path: Path, quick_space_data: dict) -> None:
    from autotune.report.build import ReportFormat, write_report
    from autotune.tune.report import trials_frame

    space = _space(quick_space_data)
    NoisyRunner.noise = [0.0, 0.0, 0.0]
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=3, mlflow=False), runner_factory=NoisyRunner)
    NoisyRunner.noise = [0.1, -0.1, 0.05, -0.05]
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=4, confirm=2, mlflow=False), runner_factory=NoisyRunner)
    outcome = write_report(space.name, experiments_dir=tmp_path, formats=[ReportFormat.MD, ReportFormat.HTML])
    markdown = next(p for p in outcome.files if p.name == "report.md").read_text()
    assert "## Repeated measurements (goodput_rps)" in markdown and "best above defaults in every measurement" in markdown
    assert "| vLLM defaults | 0, " in markdown
    assert "Repeated measurements" in next(p for p in outcome.files if p.name == "report.html").read_text()
    frame = trials_frame(_study(tmp_path, space))
    assert frame["repeat_of"].notna().sum() == 4
