"""Multi-fidelity trials: the `fidelity:` section, the pruners, and screened studies on the simulated engine."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from helpers.tune import QUICK_SPACE, space_from
from optuna.trial import TrialState, create_trial

from autotune.bench.runner import run_benchmark
from autotune.bench.schemas import LoadSpec
from autotune.errors import ConfigError
from autotune.tune import attrs
from autotune.space import PrunerSettings
from autotune.tune.fidelity import SCREENING_STEP
from autotune.tune.pruning import BestFractionPruner, make_pruner
from autotune.tune.report import trials_frame
from autotune.tune.budget import counted_trials
from autotune.tune.session import open_study, reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial import TrialRunner

# A lenient pruner: the bad config below screens at ~0.1 of the good ones; CPU contention moves a good one by 2x.
SCREENING = {"screening_load": {"num_requests": 4}, "pruner": {"kind": "best_fraction", "fraction": 0.25, "min_trials": 1}}


def _fidelity_space(data: dict[str, Any], fidelity: dict[str, Any] | None = SCREENING) -> dict[str, Any]:
    data["engine_base"] = dict(data["engine_base"], model=str((QUICK_SPACE.parent / data["engine_base"]["model"]).resolve()))
    data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [1, 16]}}
    data["load"] = {"mode": "concurrency", "concurrency": 8, "num_requests": 16, "client_processes": 1}
    data["trial"] = dict(data["trial"], warmup_requests=2)
    if fidelity is not None:
        data["fidelity"] = fidelity
    return data


@pytest.mark.parametrize(
    ("fidelity", "message"),
    [
        ({"screening_load": {"duration": 3}}, r"fidelity.screening_load: unknown load field\(s\) duration; allowed: mode,"),
        ({"screening_load": {"mode": "rate", "rate_rps": 5}}, r"fidelity.screening_load.mode: 'rate' differs from load.mode"),
        ({"screening_load": {"num_requests": 0}}, r"fidelity.screening_load: .*num_requests"),
        ({"screening_load": {}}, r"fidelity.screening_load: give the load fields"),
        ({"screening_load": {"num_requests": 4}, "pruner": {"kind": "median"}}, r"fidelity.pruner.kind"),
        ({"screening_load": {"num_requests": 4}, "pruner": {"fraction": 1.5}}, r"fidelity.pruner.fraction"),
        ({"screening_load": {"num_requests": 4}, "prune": {}}, r"fidelity.prune"),
    ],
)
def test_a_bad_fidelity_section_names_its_field(quick_space_data: dict, fidelity: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        space_from(_fidelity_space(quick_space_data, fidelity))


def test_pruning_needs_a_single_objective(quick_space_data: dict) -> None:
    data = _fidelity_space(quick_space_data)
    data["objective"] = "pareto"
    with pytest.raises(ConfigError, match="fidelity: pruning after screening needs a single objective"):
        space_from(data)


def test_the_screening_load_is_the_load_with_its_fields_replaced(quick_space_data: dict) -> None:
    data = _fidelity_space(quick_space_data, {"screening_load": {"num_requests": 4, "seed": 9}})
    from autotune.space import screening_load

    space = space_from(data)
    assert space.fidelity is not None and space.fidelity.pruner == PrunerSettings()  # best_fraction 0.8, 2 trials
    screening = screening_load(space.load, space.fidelity)
    assert screening == space.load.model_copy(update={"num_requests": 4, "seed": 9})
    assert space_from(_fidelity_space(quick_space_data, None)).content_hash() == space.content_hash()  # resumable either way


def _screened(number: int, screening: float, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=state, value=screening if state is TrialState.COMPLETE else None,
                         intermediate_values={SCREENING_STEP: screening})
    trial.number = number
    return trial


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_pruners_compare_with_the_screening_values_measured_in_full(direction: str) -> None:
    study = optuna.create_study(direction=direction)
    maximize = direction == "maximize"
    best, other = (10.0, 6.0) if maximize else (1.0, 3.0)
    pruner = BestFractionPruner(0.5, min_trials=2)
    study.add_trial(_screened(0, best))
    candidate = _screened(9, 4.0 if maximize else 2.5, TrialState.RUNNING)
    assert pruner.threshold(study) is None and not pruner.prune(study, candidate)  # one reference: not yet
    study.add_trial(_screened(1, other))
    study.add_trial(_screened(2, 0.1 if maximize else 99.0, TrialState.PRUNED))  # pruned ones are no reference
    assert pruner.threshold(study) == (5.0 if maximize else 2.0)
    assert pruner.prune(study, candidate)
    assert not pruner.prune(study, _screened(9, 5.5 if maximize else 1.9, TrialState.RUNNING))
    median = make_pruner(PrunerSettings(kind="percentile", percentile=50, min_trials=2))
    assert isinstance(median, optuna.pruners.PercentilePruner)


class CountingBenchmark:
    """The real benchmark, with the load of every call per trial folder recorded (who got the full measurement)."""

    def __init__(self) -> None:
        self.loads: list[LoadSpec] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.loads.append(args[2])
        return await run_benchmark(*args, **kwargs)


@pytest.mark.slow
def test_a_bad_config_is_pruned_after_screening_and_the_study_goes_on(tmp_path: Path, quick_space_data: dict) -> None:
    space = space_from(_fidelity_space(quick_space_data))
    settings = TuneSettings(experiments_dir=tmp_path, mlflow=False)
    session = open_study(space, settings)  # trial 0: vLLM's defaults (1024 sequences: a good config, never pruned)
    for seqs in (1, 16):  # one sequence at a time against 8 streams: a bad config; then a good one
        session.study.enqueue_trial({"max_num_seqs": seqs})
    bench = CountingBenchmark()
    runner = functools.partial(TrialRunner, benchmark=bench)
    run_tuning(space, settings.model_copy(update={"n_trials": 3}), runner_factory=runner, session=session)

    trials = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study.trials
    defaults, bad, good = trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    for trial in (defaults, good):  # screened, then measured in full
        assert SCREENING_STEP in trial.intermediate_values and trial.user_attrs[attrs.SCREENING]["value"] > 0
        assert trial.values[0] == trial.user_attrs[attrs.METRICS]["goodput_rps"]
        folder = Path(trial.user_attrs[attrs.TRIAL_DIR])
        assert json.loads((folder / "result.json").read_text())["summary"]["completed"] == 16
        assert json.loads((folder / "screening.json").read_text())["summary"]["completed"] == 4
    reason = bad.user_attrs[attrs.PRUNE_REASON]
    assert reason.startswith("pruned after screening: goodput_rps") and "0.25 x the best screening value" in reason
    assert bad.user_attrs[attrs.OUTCOME] == "pruned" and bad.intermediate_values[SCREENING_STEP] == bad.user_attrs[attrs.SCREENING]["value"]
    bad_folder = Path(bad.user_attrs[attrs.TRIAL_DIR])
    assert (bad_folder / "screening.json").is_file() and not (bad_folder / "result.json").exists()  # never measured in full
    assert attrs.METRICS not in bad.user_attrs and "screening_s" in bad.user_attrs[attrs.TIMINGS]
    assert [load.num_requests for load in bench.loads] == [2, 4, 16, 2, 4, 2, 4, 16]  # warm-up, screening, full

    # resume: the pruned trial stays PRUNED with its screening value and counts against the budget; the space's two
    # configs are both measured, so the next sampled trial is one of them again (not served)
    resumed = space.model_copy(update={"budget": space.budget.model_copy(update={"n_trials": 4})})
    run_tuning(resumed, settings, runner_factory=runner)
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    assert study.trials[1].state is TrialState.PRUNED and study.trials[1].intermediate_values == bad.intermediate_values
    assert counted_trials(study) == 4 and len(study.trials) == 4 and len(bench.loads) == 8
    table = trials_frame(study)
    assert table.loc[1, "screening_value"] == bad.user_attrs[attrs.SCREENING]["value"] and table.loc[1, "state"] == "PRUNED"


def test_mlflow_gets_a_screened_trials_screening_figures() -> None:
    from autotune.tune.fidelity import screening_record

    screening = screening_record("goodput_rps", 1.5, {"goodput_rps": 1.5, "ttft_ms_p99": 900.0, "completed": 4.0})
    record = attrs.trial_record(
        number=3, state="PRUNED", params={}, study_tags={},
        user_attrs={attrs.SCREENING: screening, attrs.PRUNE_REASON: "pruned after screening: goodput_rps 1.5 is below 2"},
    )
    assert record.metrics == {"screening_value": 1.5, "screening_goodput_rps": 1.5, "screening_ttft_ms_p99": 900.0}
    assert record.tags["screening_metric"] == "goodput_rps" and record.tags["fail_reason"].startswith("pruned after screening")
