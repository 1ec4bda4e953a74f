"""`tune --screen K`: K sampled configs predicted by the simulator, only the best predicted one becomes a trial."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState

from autotune.bench.schemas import Stats, Summary
from autotune.config import EngineConfig, EngineKind, Provenance
from autotune.errors import ConfigError
from autotune.space import config_hash, parse_search_space
from autotune.tune import screen
from autotune.tune.screen import ScreenSettings, screening_savings
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial_result import TrialOutcome, TrialResult, TrialTimings
from serving.engines.profile import SimulatorProfile

QUICK_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "simulated-quick.yaml"


class MaxSeqsRunner:
    """A TrialRunner stand-in (no server): 'measured' goodput grows with max_num_seqs."""

    served: list[EngineConfig] = []

    def __init__(self, *, study_dir: Path, engine_kind: EngineKind, **_: Any) -> None:
        self.study_dir, self.engine_kind, self.observer = study_dir, engine_kind, None
        MaxSeqsRunner.served = []

    def run(self, number: int, engine: EngineConfig, provenance: Provenance) -> TrialResult:
        MaxSeqsRunner.served.append(engine)
        rate = 1.0 + (engine.max_num_seqs or 16)
        return TrialResult(
            number=number, state=TrialOutcome.COMPLETE, engine=self.engine_kind, simulated=True,
            config_hash=config_hash(engine), trial_dir=str(self.study_dir), timings=TrialTimings(total_s=0.01),
            summary=Summary(completed=16, duration_s=16 / rate, throughput_rps=rate, goodput_rps=rate, ttft_ms=Stats(p50=10.0)),
        )


def _space():  # type: ignore[no-untyped-def]
    data = copy.deepcopy(yaml.safe_load(QUICK_SPACE.read_text()))
    data["parameters"] = {
        "max_num_seqs": {"type": "categorical", "choices": [1, 2, 4, 16]},
        "preprocessing_workers": {"type": "categorical", "choices": [1, 2]},
    }
    data["fixed"] = {"mm_processor_cache_gb": 0}
    return parse_search_space(data, base_dir=QUICK_SPACE.parent)


def test_screen_enqueues_the_best_predicted_candidate(tmp_path: Path) -> None:
    space = _space()
    settings = TuneSettings(
        experiments_dir=tmp_path, mlflow=False, n_trials=3,
        screen=ScreenSettings(candidates=4, allow_uncalibrated=True),
    )
    run_tuning(space, settings, runner_factory=MaxSeqsRunner)
    trials = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study.trials
    assert len(trials) == 3  # candidates never become trials
    assert screen.SCREENED_FROM not in trials[0].user_attrs  # trial 0, vLLM's defaults, is not screened
    scorer = screen.ConfigScorer(space, _workload(space), SimulatorProfile.load())
    for trial in trials[1:]:
        attrs = trial.user_attrs
        assert trial.state is TrialState.COMPLETE and attrs[screen.SCREENED_FROM] == 4
        assert attrs[screen.PREDICTION_PROFILE] == "h100-qwen3-vl-4b"
        others = [c[screen.PREDICTED_OBJECTIVE] for c in attrs[screen.SCREEN_SKIPPED] if c[screen.PREDICTED_OBJECTIVE] is not None]
        assert all(attrs[screen.PREDICTED_OBJECTIVE] >= value for value in others)
        # the served config is the one predicted: predicting it again gives the recorded figures
        served = EngineConfig.model_validate(attrs["engine_config"])
        again = scorer.predict(served)
        assert attrs[screen.PREDICTED_THROUGHPUT] == pytest.approx(again.throughput_rps)
        assert attrs[screen.PREDICTED_OBJECTIVE] == pytest.approx(scorer.score(again))
    assert any(t.user_attrs[screen.SCREEN_SKIPPED] for t in trials[1:])  # some candidates were not served
    assert MaxSeqsRunner.served[1:] == [EngineConfig.model_validate(t.user_attrs["engine_config"]) for t in trials[1:]]


def test_screen_refuses_an_uncalibrated_profile_before_any_trial(tmp_path: Path) -> None:
    MaxSeqsRunner.served = []
    settings = TuneSettings(experiments_dir=tmp_path, mlflow=False, n_trials=1, screen=ScreenSettings(candidates=3))
    with pytest.raises(ConfigError, match="calibrated is false.*--screen-uncalibrated"):
        run_tuning(_space(), settings, runner_factory=MaxSeqsRunner)
    assert MaxSeqsRunner.served == [] and not (tmp_path / "simulated-quick").exists()


def test_savings_over_a_finished_study(tmp_path: Path) -> None:
    space = _space()
    session_settings = TuneSettings(experiments_dir=tmp_path, mlflow=False, n_trials=4)
    run_tuning(space, session_settings, runner_factory=MaxSeqsRunner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    savings = screening_savings(study, space, SimulatorProfile.load(), within_pct=5.0)
    measured = {t.number: t.values[0] for t in study.trials if t.state is TrialState.COMPLETE and "duplicate_of" not in t.user_attrs}
    assert savings.measured_trials == len(measured) and savings.best_value == max(measured.values())
    assert savings.trials_avoided == savings.trials_to_reach_measured_order - savings.trials_to_reach_predicted_order
    first_good = min(n for n, v in measured.items() if v >= savings.best_value * 0.95)
    assert savings.trials_to_reach_measured_order == sorted(measured).index(first_good) + 1
    assert savings.profile_calibrated is False and "retrospective" in savings.note


def _workload(space):  # type: ignore[no-untyped-def]
    from autotune.bench.workload import resolve_workload

    return resolve_workload(space.workload)
