"""A trial order that reuses vLLM's compile cache: consecutive sampled trials share their compile-key parameters.

vLLM compiles the model once per compile key (`VllmConfig.compute_hash`) and keeps the result in its cache
(`$VLLM_CACHE_ROOT/torch_compile_cache/<key>/`): a start whose key was compiled before loads it in 5-7 s instead of
compiling for 25-70 s. Which engine fields change the key was measured on the GPU host with
scripts/gpu/compile_keys.py (experiments/h100-qwen3-vl-4b/README.md, "Measurements the code relies on": the token budget
and chunked prefill, async scheduling, the KV dtype, the quantization, the preprocessing workers, the CUDA-graph sizes
from max_num_seqs) and read from the cache folders of the recorded trials' server logs (engines_per_gpu and the
encoder's CUDA graphs each gave their own key; api_server_count, gpu_memory_utilization, prefix caching, the processor
cache and the fast image processor did not). `COMPILE_KEY_FIELDS` lists them with the fields that change the model
itself.

`CompileKeyRuns` wraps the study's sampler: after a sampled trial that was served, up to `run_length - 1` further
sampled trials keep its compile-key parameters (Optuna fixes them, as its PartialFixedSampler does) and the sampler
chooses only the others; then a trial draws every parameter again, which may start a new key. A run ends early when
its last trial failed or was rejected (its key may not be compiled, or may be what failed). Queued trials (vLLM's
defaults, profile-guided ones, repeats) keep their own parameters. A held trial records `compile_key_from` (the trial
whose key it keeps); every trial records `compile_group`, the hash of its compile-key fields, beside vLLM's own key
read from its log (`start_phases.compile_keys`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from autotune.config import EngineConfig
from autotune.space import SearchSpace, get_path
from autotune.tune import attrs
from autotune.tune.trial_result import TrialOutcome

COMPILE_KEY_FIELDS = (
    "model",
    "dtype",
    "quantization",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "enable_chunked_prefill",
    "async_scheduling",
    "kv_cache_dtype",
    "preprocessing_workers",
    "tensor_parallel_size",
    "data_parallel_size",
    "engines_per_gpu",
    "extra_engine_args.compilation_config",
)
"""EngineConfig fields (dotted) that change vLLM 0.24's compile key."""


def _touches(target: str, field: str) -> bool:
    return target == field or target.startswith(field + ".") or field.startswith(target + ".")


def compile_key_params(space: SearchSpace) -> list[str]:
    """The space's parameters that change the compile key: `sampler.compile_key_params`, else those whose engine
    field is one of COMPILE_KEY_FIELDS (or inside one)."""
    if space.sampler.compile_key_params is not None:
        return list(space.sampler.compile_key_params)
    return [
        name
        for name, spec in space.parameters.items()
        if any(_touches(spec.target(name), field) for field in COMPILE_KEY_FIELDS)
    ]


def compile_group(engine: EngineConfig) -> str:
    """A short hash of an engine config's compile-key fields: configs with the same one share vLLM's key (as far as
    COMPILE_KEY_FIELDS knows; max_num_seqs 256 and 512 share vLLM's CUDA-graph sizes but not this hash)."""
    data = engine.model_dump(mode="json")
    values = {field: get_path(data, field) for field in COMPILE_KEY_FIELDS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _served(trial: FrozenTrial) -> bool:
    """Its server started with its config: measured, or pruned after screening (not rejected before serving)."""
    if trial.state is TrialState.COMPLETE:
        return trial.user_attrs.get(attrs.DUPLICATE_OF) is None
    return trial.state is TrialState.PRUNED and trial.user_attrs.get(attrs.OUTCOME) == TrialOutcome.PRUNED.value


def held_key(trials: Sequence[FrozenTrial], key_params: Sequence[str], run_length: int) -> tuple[int, dict[str, Any]] | None:
    """(trial number, compile-key parameter values) the next sampled trial keeps, or None when it draws them freely.

    `trials`: the study's finished trials before it. Only sampled trials count: the run is the streak of them, at the
    end, with the same compile-key values; it is kept while shorter than `run_length` and its last trial was served.
    """
    sampled = sorted(
        (t for t in trials if t.user_attrs.get(attrs.CONFIG_KIND, attrs.SAMPLED) == attrs.SAMPLED and t.params),
        key=lambda t: t.number,
    )
    if not sampled or not _served(sampled[-1]):
        return None
    last = sampled[-1]
    key = {name: last.params[name] for name in key_params if name in last.params}
    if not key:
        return None
    streak = 0
    for trial in reversed(sampled):
        if {name: trial.params[name] for name in key_params if name in trial.params} != key:
            break
        streak += 1
    return (last.number, key) if streak < run_length else None


class CompileKeyRuns(BaseSampler):
    """The base sampler, with the compile-key parameters of the previous sampled trial kept for runs of trials."""

    def __init__(self, base: BaseSampler, key_params: Sequence[str], run_length: int) -> None:
        self._base = base
        self._key_params = list(key_params)
        self._run_length = run_length
        self._held: dict[int, dict[str, Any]] = {}

    @property
    def base(self) -> BaseSampler:
        return self._base

    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        self._held.pop(trial.number, None)
        if trial.system_attrs.get("fixed_params"):  # a queued trial: its parameters are given
            return
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        held = held_key([t for t in finished if t.number < trial.number], self._key_params, self._run_length)
        if held is None:
            return
        source, values = held
        self._held[trial.number] = values
        study._storage.set_trial_user_attr(trial._trial_id, attrs.COMPILE_KEY_FROM, source)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self._base.infer_relative_search_space(study, trial)
        for name in self._held.get(trial.number, {}):
            space.pop(name, None)
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        held = self._held.get(trial.number, {})
        if param_name in held and param_distribution._contains(param_distribution.to_internal_repr(held[param_name])):
            return held[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._held.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)
