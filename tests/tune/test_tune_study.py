"""The study logic with a fake trial runner: trial 0, outcomes, constraints, dedup, resume budget, best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers.tune import FakeRunner, space_from
from optuna.trial import TrialState

from autotune.config import EngineKind, load_tuned_config
from autotune.errors import ConfigError
from autotune.tune import attrs
from autotune.tune.budget import counted_trials
from autotune.tune.session import open_study, reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning


def _settings(tmp_path: Path, **extra: Any) -> TuneSettings:
    return TuneSettings(experiments_dir=tmp_path, mlflow=False, **extra)


def _small_space(data: dict[str, Any]) -> dict[str, Any]:
    data["parameters"] = {
        "max_num_seqs": {"type": "categorical", "choices": [2, 8, 16]},
        "gpu_memory_utilization": {"type": "categorical", "choices": [0.15, 0.9]},
        "env.FAKE_FAIL": {"type": "categorical", "choices": [None, "boom"]},
    }
    return data


def test_trial_zero_is_vllm_defaults_and_outcomes_map_to_optuna_states(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_small_space(quick_space_data))
    session = open_study(space, _settings(tmp_path))
    session.study.enqueue_trial({"max_num_seqs": 8, "gpu_memory_utilization": 0.15, "env.FAKE_FAIL": None})
    session.study.enqueue_trial({"max_num_seqs": 8, "gpu_memory_utilization": 0.9, "env.FAKE_FAIL": "boom"})
    outcome = run_tuning(space, _settings(tmp_path, n_trials=4), runner_factory=FakeRunner)
    trials = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study.trials
    defaults = trials[0]
    assert defaults.user_attrs[attrs.CONFIG_KIND] == attrs.VLLM_DEFAULTS and defaults.params == {}
    assert defaults.state is TrialState.COMPLETE
    assert FakeRunner.calls[0] == space.defaults_config()
    # trial 0 is the first enqueued: the defaults come before the test's own
    rejected, failed = trials[1], trials[2]
    assert rejected.state is TrialState.PRUNED and "infeasible" in rejected.user_attrs[attrs.PRUNE_REASON]
    assert failed.state is TrialState.FAIL and "crashed at start: boom" in failed.user_attrs[attrs.FAIL_REASON]
    assert trials[3].state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # the study went on
    assert outcome.ran == 4 and outcome.best_path is not None
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert all(set(t.constraints) == {"error_rate", "client_saturated"} for t in complete)
    assert all(t.values[0] == pytest.approx(t.user_attrs[attrs.METRICS]["goodput_rps"]) for t in complete)


def test_a_measured_config_is_not_served_again(tmp_path: Path, quick_space_data: dict) -> None:
    data = _small_space(quick_space_data)
    data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8]}}
    space = space_from(data)
    run_tuning(space, _settings(tmp_path, n_trials=6), runner_factory=FakeRunner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    hashes = {t.user_attrs[attrs.CONFIG_HASH] for t in study.trials}
    assert len(FakeRunner.calls) == len(hashes) <= 3  # defaults + two choices, each served once
    duplicates = [t for t in study.trials if attrs.DUPLICATE_OF in t.user_attrs]
    assert duplicates, "six trials over three configs must repeat one"
    for trial in duplicates:
        original = study.trials[trial.user_attrs[attrs.DUPLICATE_OF]]
        assert trial.values == original.values and trial.user_attrs[attrs.CONFIG_HASH] == original.user_attrs[attrs.CONFIG_HASH]


def test_budget_counts_the_study_and_resume_runs_the_rest(tmp_path: Path, quick_space_data: dict) -> None:
    data = _small_space(quick_space_data)
    data["budget"] = {"n_trials": 5}
    space = space_from(data)
    run_tuning(space, _settings(tmp_path, n_trials=2), runner_factory=FakeRunner)
    outcome = run_tuning(space, _settings(tmp_path), runner_factory=FakeRunner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    assert outcome.ran == 3 and counted_trials(study) == 5
    assert sum(t.user_attrs.get(attrs.CONFIG_KIND) == attrs.VLLM_DEFAULTS for t in study.trials) == 1
    assert run_tuning(space, _settings(tmp_path), runner_factory=FakeRunner).ran == 0


def test_resume_with_another_space_is_refused(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_small_space(quick_space_data))
    run_tuning(space, _settings(tmp_path, n_trials=1), runner_factory=FakeRunner)
    changed = _small_space(quick_space_data)
    changed["slo"] = {"ttft_ms": 5}
    with pytest.raises(ConfigError, match="different search space"):
        open_study(space_from(changed), _settings(tmp_path))
    with pytest.raises(ConfigError, match="measures the simulated engine"):
        open_study(space, _settings(tmp_path, engine=EngineKind.VLLM))


def test_best_yaml_carries_provenance_and_baseline(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_small_space(quick_space_data))
    outcome = run_tuning(space, _settings(tmp_path, n_trials=6), runner_factory=FakeRunner)
    tuned = load_tuned_config(outcome.best_path)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    feasible = [t for t in study.trials if t.state is TrialState.COMPLETE]
    winner = max(feasible, key=lambda t: t.values[0])
    assert tuned.provenance.trial_number == winner.number
    assert tuned.engine is EngineKind.SIMULATED and tuned.provenance.simulated
    assert tuned.provenance.baseline_metrics == study.trials[0].user_attrs[attrs.METRICS]
    assert tuned.provenance.objectives[0].name == "goodput_rps"
    assert tuned.provenance.objectives[0].value == pytest.approx(winner.values[0])
    assert tuned.engine_config.model_dump(mode="json") == winner.user_attrs[attrs.ENGINE_CONFIG]
    assert outcome.trials_csv.is_file()


def test_pareto_best_is_the_fastest_front_trial_meeting_the_slo(tmp_path: Path, quick_space_data: dict) -> None:
    data = _small_space(quick_space_data)
    data["objective"] = {"kind": "pareto", "latency_metric": "ttft_ms_p99"}
    data["slo"] = {"ttft_ms": 190}  # the fake's ttft p99 = 100 + 10 x max_num_seqs: 2 and 8 meet it, 16 does not
    data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8, 16]}}
    space = space_from(data)
    session = open_study(space, _settings(tmp_path))
    for seqs in (2, 8, 16):
        session.study.enqueue_trial({"max_num_seqs": seqs})
    outcome = run_tuning(space, _settings(tmp_path, n_trials=4), runner_factory=FakeRunner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    assert len(study.directions) == 2
    tuned = load_tuned_config(outcome.best_path)
    assert tuned.engine_config.max_num_seqs == 8  # 16 is faster but misses the SLO
    assert [o.name for o in tuned.provenance.objectives] == ["throughput_rps", "ttft_ms_p99"]


def test_unknown_study_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no .*optuna.db"):
        reopen_study("nope", experiments_dir=tmp_path, mlflow=False)


def test_storage_url_password_is_masked_in_errors(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_small_space(quick_space_data))
    url = "postgresql+psycopg2://optuna:hunter2@127.0.0.1:1/optuna"
    with pytest.raises(ConfigError) as info:
        open_study(space, _settings(tmp_path, storage=url))
    assert "hunter2" not in str(info.value) and "optuna:***@" in str(info.value)


def test_optuna_sees_the_space_distributions(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_small_space(quick_space_data))
    run_tuning(space, _settings(tmp_path, n_trials=3), runner_factory=FakeRunner)
    study = optuna.load_study(study_name=space.name, storage=f"sqlite:///{tmp_path / space.name / 'optuna.db'}")
    expected = space.to_distributions()
    for trial in study.trials:
        for name, distribution in trial.distributions.items():
            assert distribution == expected[name]


def test_grid_sampler_serves_every_combination_once_then_stops(tmp_path: Path, quick_space_data: dict) -> None:
    data = _small_space(quick_space_data)
    data["parameters"] = {
        "max_num_seqs": {"type": "categorical", "choices": [2, 8]},
        "enable_prefix_caching": {"type": "bool"},
    }
    data["sampler"] = {"kind": "grid", "seed": 0}
    space = space_from(data)
    run_tuning(space, _settings(tmp_path, n_trials=12), runner_factory=FakeRunner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    sampled = {(t.params["max_num_seqs"], t.params["enable_prefix_caching"]) for t in study.trials if t.params}
    assert sampled == {(2, False), (2, True), (8, False), (8, True)}
    assert len(study.trials) < 12  # the grid ran out: the study stopped by itself
    assert len(FakeRunner.calls) == 5  # the defaults and the four combinations, each served once


def test_grid_sampler_refuses_a_numeric_range(quick_space_data: dict) -> None:
    data = _small_space(quick_space_data)
    data["parameters"] = {"max_num_seqs": {"type": "int", "low": 2, "high": 8}}
    data["sampler"] = {"kind": "grid"}
    with pytest.raises(ConfigError, match="parameters.max_num_seqs: sampler grid needs categorical or bool parameters"):
        space_from(data)


def test_a_defaults_trial_failed_on_a_busy_gpu_is_queued_again_and_its_config_served_again() -> None:
    from autotune.tune.budget import counted_trials
    from autotune.tune.session import ensure_defaults_trial

    study = optuna.create_study(direction="maximize")
    ensure_defaults_trial(study)
    trial = study.ask()
    trial.set_user_attr(attrs.FAIL_REASON, f"{attrs.GPU_BUSY}: only 7% of a GPU's memory is free")
    study.tell(trial, state=TrialState.FAIL)
    assert counted_trials(study) == 0  # the environment's failure does not use the budget
    assert ensure_defaults_trial(study) is True  # the defaults are measured after all
    crashed = study.ask()
    crashed.set_user_attr(attrs.FAIL_REASON, "server crashed at start: ValueError: bad config")
    study.tell(crashed, state=TrialState.FAIL)
    assert counted_trials(study) == 1 and ensure_defaults_trial(study) is False
