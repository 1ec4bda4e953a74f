"""The per-trial seeded samplers and the study's pruner, built from the space's `sampler` and `fidelity` sections.

`make_sampler` is the one way a study (and the screener's scratch copy of it) gets its sampler.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.space import SearchSpace, grid_choices
from autotune.tune.compile_order import CompileKeyRuns, compile_key_params
from autotune.tune.pruning import make_pruner

SEED_STRIDE = 1_000_003  # a prime: (seed, trial number) pairs map to distinct RNG seeds


def trial_seed(seed: int, number: int) -> int:
    """The sampler's RNG seed for one trial: a pure function of the configured seed and the trial number."""
    return (seed * SEED_STRIDE + number) % 2**32


class _PerTrialSeed:
    """Mixin: reseed the sampler's RNGs from (configured seed, trial number) before each trial.

    Trial numbers are handed out by the storage, so two workers never draw with the same seed even when
    they start at once with the same history (a fixed per-process seed made them sample the same point),
    and a single worker stays reproducible: the same seed gives the same trials, first run or resumed.
    Uses Optuna's RNG attributes (`_rng`, `_random_sampler`), the ones its own `reseed_rng()` resets.
    """

    _base_seed: int

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = trial_seed(self._base_seed, trial.number)
        for sampler in (self, getattr(self, "_random_sampler", None)):
            rng = getattr(sampler, "_rng", None)
            if rng is not None:
                rng.rng.seed(seed)
        super().before_trial(study, trial)  # type: ignore[misc]


class _GridWithQueue(optuna.samplers.GridSampler):
    """Optuna's grid stops the study once every grid point is taken; queued trials (repeats, guided trials) still run."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        super().after_trial(study, trial, state, values)


class _SeededTPE(_PerTrialSeed, optuna.samplers.TPESampler):
    pass


class _SeededNSGAII(_PerTrialSeed, optuna.samplers.NSGAIISampler):
    pass


class _SeededRandom(_PerTrialSeed, optuna.samplers.RandomSampler):
    pass


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's sampler; with `sampler.compile_key_runs` > 1, wrapped so that consecutive sampled trials keep their
    compile-key parameters (autotune.tune.compile_order)."""
    sampler = _base_sampler(space)
    if space.sampler.compile_key_runs > 1 and space.sampler.kind != "grid":
        key_params = compile_key_params(space)
        if key_params:
            return CompileKeyRuns(sampler, key_params, space.sampler.compile_key_runs)
    return sampler


def _base_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler. With `sampler.seed` set, each trial's draws are seeded by (seed, trial number):
    reproducible for one worker, distinct across workers sharing the study. Without a seed, every
    process draws from fresh entropy."""
    seed = space.sampler.seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if space.sampler.kind == "grid":
            sampler: optuna.samplers.BaseSampler = _GridWithQueue(grid_choices(space), seed=seed)
            return sampler  # the grid's order is its own (seeded); not re-seeded per trial
        if space.sampler.kind == "random":
            sampler = optuna.samplers.RandomSampler() if seed is None else _SeededRandom(seed=seed)
        elif space.sampler.kind == "nsga2":
            population = max(4, space.sampler.n_startup_trials)
            sampler = (
                optuna.samplers.NSGAIISampler(population_size=population)
                if seed is None
                else _SeededNSGAII(seed=seed, population_size=population)
            )
        else:
            options: dict[str, Any] = {
                "n_startup_trials": space.sampler.n_startup_trials,
                "multivariate": True,
                "group": True,  # conditional parameters: model each co-occurring group
                "constant_liar": True,  # several workers do not pile onto one point
            }
            sampler = optuna.samplers.TPESampler(**options) if seed is None else _SeededTPE(seed=seed, **options)
    if seed is not None:
        sampler._base_seed = seed  # type: ignore[attr-defined]
    return sampler


def study_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    """The space's pruner for screened trials (`fidelity`); without screening nothing is ever pruned by it."""
    if space.fidelity is None:
        return optuna.pruners.NopPruner()
    return make_pruner(space.fidelity.pruner)
