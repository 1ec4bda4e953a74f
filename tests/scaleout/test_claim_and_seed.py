"""Several workers on one study, in-process: per-trial sampler seeds and the config claim (no servers)."""

from __future__ import annotations

import threading

import optuna
from helpers.tune import quick_space_mapping, space_from
from optuna.trial import TrialState

from autotune.tune.claims import CLAIM_DUPLICATE, CLAIM_SERVING, CONFIG_CLAIM, claim_config
from autotune.tune.samplers import make_sampler


def _study(storage: optuna.storages.BaseStorage, name: str = "s") -> optuna.Study:
    space = space_from(quick_space_mapping())
    return optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(space), load_if_exists=True)


def _draw(study: optuna.Study) -> dict[str, object]:
    space = space_from(quick_space_mapping())
    trial = study.ask()
    space.suggest(trial)
    return dict(trial.params)


def test_two_workers_with_the_same_seed_and_history_draw_different_points() -> None:
    storage = optuna.storages.InMemoryStorage()
    worker_a, worker_b = _study(storage), _study(storage)  # same seed, same (empty) history, as two resumed workers
    assert _draw(worker_a) != _draw(worker_b)


def test_one_worker_is_reproducible() -> None:
    first = [_draw(s) for s in [_study(optuna.storages.InMemoryStorage())] for _ in range(3)]
    again = [_draw(s) for s in [_study(optuna.storages.InMemoryStorage())] for _ in range(3)]
    assert first == again


def test_a_running_twin_that_claimed_keeps_the_config() -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    first, second = study.ask(), study.ask()
    for trial in (first, second):
        trial.set_user_attr("config_hash", "h")
    assert claim_config(first, "h", wait_s=0.5) is None  # the higher twin stays undecided: claimed at the deadline
    assert study.trials[first.number].user_attrs[CONFIG_CLAIM] == CLAIM_SERVING
    assert claim_config(second, "h", wait_s=5) == first.number
    assert study.trials[second.number].user_attrs[CONFIG_CLAIM] == CLAIM_DUPLICATE


def test_a_finished_twin_is_reported_and_other_configs_are_free() -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    done = study.ask()
    done.set_user_attr("config_hash", "h")
    study.tell(done, 1.0)
    other = study.ask()
    other.set_user_attr("config_hash", "other")
    assert claim_config(other, "other", wait_s=1) is None
    late = study.ask()
    late.set_user_attr("config_hash", "h")
    assert claim_config(late, "h", wait_s=1) == done.number


def test_racing_twins_serve_the_config_exactly_once() -> None:
    for _ in range(5):
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
        trials = [study.ask() for _ in range(4)]
        decisions: dict[int, int | None] = {}
        barrier = threading.Barrier(len(trials))

        def claim(trial: optuna.Trial) -> None:
            barrier.wait()
            trial.set_user_attr("config_hash", "same")
            decisions[trial.number] = claim_config(trial, "same", wait_s=10)

        threads = [threading.Thread(target=claim, args=(t,)) for t in trials]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        serving = [n for n, twin in decisions.items() if twin is None]
        assert len(decisions) == 4 and len(serving) == 1
        assert all(study.trials[n].state is TrialState.RUNNING for n in decisions)
