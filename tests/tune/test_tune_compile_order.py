"""Trial order by compile key: which configs share vLLM's key, and a sampler that keeps the key for runs of trials."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.space import SearchSpace, load_search_space, parse_search_space
from autotune.tune import attrs
from autotune.tune.compile_order import CompileKeyRuns, compile_group, compile_key_params, held_key
from autotune.tune.samplers import make_sampler

from helpers.servers import MODEL_DIR as MODEL

REPO = Path(__file__).resolve().parents[2]

# vLLM's compile keys read from the server logs of experiments/h100-qwen3-vl-4b/2026-11-26c (trial: tuned fields).
RECORDED_KEYS: list[tuple[int, str, dict[str, Any]]] = [
    (0, "963eb1d0e1", {}),
    (5, "963eb1d0e1", {"api_server_count": 4}),
    (6, "83e38b292b", {"engines_per_gpu": 2}),
    (7, "0975319a54", {"extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}}),
    (16, "e2d3419055", {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.8,
                        "quantization": "fp8", "enable_prefix_caching": False, "enable_chunked_prefill": True,
                        "mm_processor_cache_gb": 0.0, "mm_processor_kwargs": {"use_fast": True}, "preprocessing_workers": 2,
                        "api_server_count": 4, "engines_per_gpu": 2, "async_scheduling": True,
                        "extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}}),
    (23, "e2d3419055", {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.8,
                        "quantization": "fp8", "enable_prefix_caching": False, "enable_chunked_prefill": True,
                        "mm_processor_cache_gb": 0.0, "mm_processor_kwargs": {"use_fast": True}, "preprocessing_workers": 2,
                        "api_server_count": 4, "engines_per_gpu": 2, "async_scheduling": True,
                        "extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}}),
    (20, "2c8b997d68", {"max_num_seqs": 512, "max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.85,
                        "kv_cache_dtype": "fp8", "enable_prefix_caching": True, "enable_chunked_prefill": True,
                        "mm_processor_cache_gb": 8.0, "mm_processor_kwargs": {"use_fast": False}, "preprocessing_workers": 1,
                        "api_server_count": 4, "engines_per_gpu": 2, "async_scheduling": True,
                        "extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}}),
    (21, "c5107c80b0", {"max_num_seqs": 256, "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.8,
                        "quantization": "fp8", "enable_prefix_caching": False, "enable_chunked_prefill": False,
                        "mm_processor_cache_gb": 0.0, "mm_processor_kwargs": {"use_fast": True}, "preprocessing_workers": 4,
                        "api_server_count": 4, "engines_per_gpu": 2, "async_scheduling": True,
                        "extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}}),
]


def test_compile_groups_match_the_keys_vllm_used() -> None:
    base = {"model": MODEL, "load_format": "dummy", "max_model_len": 8192}
    groups = {n: compile_group(EngineConfig.model_validate({**base, **fields})) for n, _, fields in RECORDED_KEYS}
    keys = {n: key for n, key, _ in RECORDED_KEYS}
    for a in keys:
        for b in keys:
            assert (groups[a] == groups[b]) == (keys[a] == keys[b]), (a, b)


def _qwen_space(**sampler: Any) -> SearchSpace:
    space = load_search_space(REPO / "search_spaces" / "qwen3-vl-4b.yaml")
    return space.model_copy(update={"sampler": space.sampler.model_copy(update=sampler)})


def test_the_key_parameters_follow_the_engine_fields_or_the_space() -> None:
    space = _qwen_space()
    assert set(compile_key_params(space)) == {
        "max_num_seqs", "enable_chunked_prefill", "max_num_batched_tokens", "max_num_batched_tokens_unchunked",
        "kv_cache_dtype", "quantization", "async_scheduling", "preprocessing_workers", "engines_per_gpu",
        "extra_engine_args.compilation_config.cudagraph_mm_encoder",
    }  # not: gpu_memory_utilization, prefix caching, processor cache, API servers, the fast image processor
    assert compile_key_params(_qwen_space(compile_key_params=["engines_per_gpu"])) == ["engines_per_gpu"]


def test_bad_compile_order_settings_name_the_field(quick_space_data: dict) -> None:
    quick_space_data["sampler"] = {"kind": "tpe", "compile_key_runs": 3, "compile_key_params": ["nope"]}
    with pytest.raises(ConfigError, match=r"sampler.compile_key_params: 'nope' is not a parameter"):
        parse_search_space(quick_space_data, base_dir=REPO / "search_spaces")
    quick_space_data["sampler"] = {"kind": "tpe", "compile_key_runs": 0}
    with pytest.raises(ConfigError, match="compile_key_runs"):
        parse_search_space(quick_space_data, base_dir=REPO / "search_spaces")


def _trial(number: int, params: dict[str, Any], state: TrialState = TrialState.COMPLETE, **user: Any) -> optuna.trial.FrozenTrial:
    trial = create_trial(
        params=params, distributions={k: CategoricalDistribution([1, 2, 3, "x", "y"]) for k in params},
        value=1.0 if state is TrialState.COMPLETE else None, state=state, user_attrs=user,
    )
    trial.number = number
    return trial


def test_a_run_holds_the_key_for_its_length_and_ends_on_a_failure() -> None:
    keys = ["seqs"]
    one = _trial(1, {"seqs": 1, "other": "x"})
    assert held_key([one], keys, run_length=3) == (1, {"seqs": 1})
    two = _trial(2, {"seqs": 1, "other": "y"})
    assert held_key([one, two], keys, run_length=3) == (2, {"seqs": 1})
    three = _trial(3, {"seqs": 1, "other": "x"})
    assert held_key([one, two, three], keys, run_length=3) is None  # the run is full: draw a new key
    assert held_key([one, _trial(2, {"seqs": 1}, TrialState.FAIL)], keys, run_length=3) is None
    rejected = _trial(2, {"seqs": 2}, TrialState.PRUNED, outcome="rejected")  # infeasible: never compiled
    assert held_key([one, rejected], keys, run_length=3) is None
    screened_out = _trial(2, {"seqs": 2}, TrialState.PRUNED, outcome="pruned")  # served, compiled, then pruned
    assert held_key([one, screened_out], keys, run_length=3) == (2, {"seqs": 2})
    queued = _trial(4, {}, config_kind=attrs.VLLM_DEFAULTS)  # queued trials neither hold nor break a run
    assert held_key([one, queued], keys, run_length=3) == (1, {"seqs": 1})


def _run_study(space: SearchSpace, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """Sampled trials of `space` with a made-up objective (no server): only the sampler's choices matter here."""

    def objective(trial: optuna.Trial) -> float:
        engine = space.suggest(trial)
        return float((engine.max_num_seqs or 1) % 7 + (engine.gpu_memory_utilization or 0) + engine.engines_per_gpu)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize", sampler=make_sampler(space))
        study.optimize(objective, n_trials=n_trials)
    return study.get_trials(deepcopy=False)


def _shared_share(trials: list[optuna.trial.FrozenTrial], keys: list[str]) -> float:
    key_of: Callable[[optuna.trial.FrozenTrial], dict[str, Any]] = lambda t: {k: t.params[k] for k in keys if k in t.params}
    pairs = list(zip(trials, trials[1:], strict=False))
    return sum(key_of(a) == key_of(b) for a, b in pairs) / len(pairs)


def test_consecutive_trials_share_compile_keys_more_often_than_with_the_plain_sampler() -> None:
    plain_space, runs_space = _qwen_space(compile_key_runs=1), _qwen_space(compile_key_runs=3)
    assert isinstance(make_sampler(runs_space), CompileKeyRuns) and not isinstance(make_sampler(plain_space), CompileKeyRuns)
    keys = compile_key_params(runs_space)
    plain, runs = _run_study(plain_space, 24), _run_study(runs_space, 24)
    assert _shared_share(plain, keys) <= 0.2  # ten key parameters drawn freely: consecutive trials rarely share them
    assert _shared_share(runs, keys) >= 0.6  # runs of three: two of every three steps keep the key
    held = [t for t in runs if attrs.COMPILE_KEY_FROM in t.user_attrs]
    assert held and all(t.user_attrs[attrs.COMPILE_KEY_FROM] == t.number - 1 for t in held)
    others = [k for k in runs_space.parameters if k not in keys]
    varied = [t for t in held if {k: t.params.get(k) for k in others} != {k: runs[t.number - 1].params.get(k) for k in others}]
    assert len(varied) >= len(held) // 2  # the sampler still explores the parameters outside the key
