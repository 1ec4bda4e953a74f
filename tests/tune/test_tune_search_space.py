"""Search spaces: validation errors name the parameter and what is allowed; conditions; distributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.space import (
    InvalidTrialConfig,
    config_hash,
    engine_config_from_params,
    load_search_space,
    parse_search_space,
)

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"


def _space(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "unit",
        "engine_base": {"model": "some/model", "max_model_len": 4096},
        "parameters": {
            "max_num_seqs": {"type": "int", "low": 8, "high": 64, "log": True},
            "enable_chunked_prefill": {"type": "bool"},
            "max_num_batched_tokens": {
                "type": "int", "low": 1024, "high": 8192, "step": 1024,
                "when": {"enable_chunked_prefill": True},
            },
            "mnbt_unchunked": {
                "field": "max_num_batched_tokens", "type": "int", "low": 4096, "high": 16384, "step": 4096,
                "when": {"enable_chunked_prefill": False},
            },
            "preprocessing_workers": {"type": "categorical", "choices": [1, 2, 4]},
            "mm_processor_cache_gb": {
                "type": "categorical", "choices": [0, 4], "when": {"preprocessing_workers": 1}, "otherwise": 0,
            },
            "mm_processor_kwargs.use_fast": {"type": "bool"},
            "env.VLLM_FOO": {"type": "categorical", "choices": [None, "1"]},
        },
        "load": {"mode": "concurrency", "concurrency": 4, "num_requests": 8},
        "slo": {"ttft_ms": 1000},
    }
    data.update(overrides)
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_search_space(data, source="space.yaml")
    return str(info.value)


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_load_and_give_valid_defaults(path: Path) -> None:
    space = load_search_space(path)
    defaults = space.defaults_config()  # trial 0: vLLM's own default for every tuned field
    untouched = EngineConfig(model="x")
    for name, spec in space.parameters.items():
        top = spec.target(name).split(".")[0]
        if top not in space.engine_base.model_fields_set and top not in space.fixed:
            assert getattr(defaults, top) == getattr(untouched, top), name
    assert set(space.to_distributions()) == set(space.parameters)


def test_qwen_space_paths_resolve_next_to_the_yaml_and_model_override_follows() -> None:
    space = load_search_space(SPACES / "qwen3-vl-4b.yaml")
    base = Path(space.engine_base.model)
    assert base.is_absolute() and (base / "config.json").is_file()
    for variant in space.model_variants.values():
        assert '"quantization_config"' in (Path(variant.model) / "config.json").read_text()
        assert variant.tokenizer == str(base)
    moved = load_search_space(SPACES / "qwen3-vl-4b.yaml", model="/root/models/qwen3-vl-4b-instruct")
    assert moved.engine_base.model == "/root/models/qwen3-vl-4b-instruct"
    assert {v.tokenizer for v in moved.model_variants.values()} == {"/root/models/qwen3-vl-4b-instruct"}


def test_awq_choice_uses_its_variant_and_the_base_tokenizer() -> None:
    space = load_search_space(SPACES / "qwen3-vl-4b.yaml")
    params = {name: _first_value(spec) for name, spec in space.parameters.items()}
    params.update(quantization="awq", enable_chunked_prefill=True, preprocessing_workers=1)
    engine = engine_config_from_params(space, params)
    assert engine.model == space.model_variants["awq"].model
    args = engine.to_vllm_cli_args()
    assert args[args.index("--tokenizer") + 1] == space.engine_base.model
    assert args[args.index("--quantization") + 1] == "awq"


def _first_value(spec: Any) -> Any:
    return spec.candidate_values()[0]


def test_bad_choice_names_parameter_and_allowed_values() -> None:
    data = _space()
    data["parameters"]["kv_cache_dtype"] = {"type": "categorical", "choices": ["auto", "fp9"]}
    message = _error(data)
    assert "space.yaml: parameters.kv_cache_dtype.choices[1]" in message
    assert "'fp8'" in message and "'auto'" in message and "'fp9'" in message


def test_unknown_field_lists_tunable_fields() -> None:
    data = _space()
    data["parameters"]["max_num_seq"] = {"type": "int", "low": 1, "high": 2}
    message = _error(data)
    assert "parameters.max_num_seq: unknown engine field 'max_num_seq'" in message
    assert "max_num_seqs" in message


def test_dotted_name_only_into_mappings() -> None:
    data = _space()
    data["parameters"]["max_num_seqs.x"] = {"type": "bool"}
    assert "dotted names reach only into" in _error(data)


def test_range_outside_engine_limits_names_the_end() -> None:
    data = _space()
    data["parameters"]["gpu_memory_utilization"] = {"type": "float", "low": 0.5, "high": 1.5}
    message = _error(data)
    assert "parameters.gpu_memory_utilization.high" in message and "0.99" in message


def test_shape_errors_name_the_parameter() -> None:
    data = _space()
    data["parameters"]["max_num_seqs"] = {"type": "int", "low": 64, "high": 8}
    message = _error(data)
    assert "parameters.max_num_seqs" in message and "low (64) must be <= high (8)" in message
    data["parameters"]["max_num_seqs"] = {"type": "categorical"}
    assert "needs a non-empty choices list" in _error(data)
    data["parameters"]["max_num_seqs"] = {"type": "integer", "low": 1, "high": 2}
    message = _error(data)
    assert "parameters.max_num_seqs.type" in message and "'categorical'" in message


def test_quantized_checkpoint_choice_needs_a_variant() -> None:
    data = _space()
    data["parameters"]["quantization"] = {"type": "categorical", "choices": [None, "fp8", "awq"]}
    message = _error(data)
    assert "parameters.quantization.choices[2]" in message and "model_variants.awq" in message


def test_condition_must_look_back_at_a_declared_parameter() -> None:
    data = _space()
    params = data["parameters"]
    data["parameters"] = {"mm_processor_cache_gb": params.pop("mm_processor_cache_gb"), **params}
    assert "declare preprocessing_workers before mm_processor_cache_gb" in _error(data)
    data = _space()
    data["parameters"]["max_num_seqs"]["when"] = {"nonsense": 1}
    assert "parameters.max_num_seqs.when.nonsense" in _error(data)


def test_goodput_objective_needs_an_slo() -> None:
    assert "goodput needs an slo" in _error(_space(slo={}))
    parse_search_space(_space(slo={}, objective="throughput"))


def test_slo_rate_objective_needs_the_slo_rate_load_mode_and_an_slo() -> None:
    slo_rate_load = {"mode": "slo_rate", "concurrency": 64, "num_requests": None, "duration_s": 10}
    assert "the slo_rate objective and the slo_rate load mode go together" in _error(_space(objective="slo_rate"))
    assert "slo_rate needs an slo" in _error(_space(objective="slo_rate", load=slo_rate_load, slo={}))
    space = parse_search_space(_space(objective="slo_rate", load=slo_rate_load))
    assert space.objective.metric_names() == ["slo_rate_rps"] and space.objective.directions() == ["maximize"]


def test_slo_rate_window_options_pass_through_the_space_and_older_files_still_load() -> None:
    steady = {"mode": "slo_rate", "concurrency": 64, "slo_rate_window_s": 120, "slo_rate_bracket": [30, 90],
              "slo_rate_tolerance": 0.05, "slo_rate_min_steady_s": 60, "slo_rate_min_completions": 1000}
    load = parse_search_space(_space(objective="slo_rate", load=steady)).load
    assert (load.slo_rate_window_s, load.slo_rate_bracket, load.slo_rate_min_completions) == (120, (30, 90), 1000)
    older = {"mode": "slo_rate", "concurrency": 256, "num_requests": None, "duration_s": 8, "slo_rate_refine_steps": 1}
    assert parse_search_space(_space(objective="slo_rate", load=older)).load.slo_rate_refine_steps == 1  # caps bisection
    assert "slo_rate_bracket" in _error(_space(objective="slo_rate", load={**steady, "slo_rate_bracket": [90, 30]}))


def test_conditions_choose_the_active_parameters() -> None:
    space = parse_search_space(_space())
    chunked = engine_config_from_params(
        space,
        {"max_num_seqs": 8, "enable_chunked_prefill": True, "max_num_batched_tokens": 2048,
         "preprocessing_workers": 1, "mm_processor_cache_gb": 4, "mm_processor_kwargs.use_fast": True,
         "env.VLLM_FOO": "1"},
    )
    assert chunked.max_num_batched_tokens == 2048 and chunked.mm_processor_cache_gb == 4
    assert chunked.mm_processor_kwargs == {"use_fast": True} and chunked.env == {"VLLM_FOO": "1"}
    unchunked = engine_config_from_params(
        space,
        {"max_num_seqs": 8, "enable_chunked_prefill": False, "max_num_batched_tokens": 2048, "mnbt_unchunked": 8192,
         "preprocessing_workers": 4, "mm_processor_cache_gb": 4, "mm_processor_kwargs.use_fast": False,
         "env.VLLM_FOO": None},
    )
    # the inactive parameters' values are ignored; `otherwise` applies when the condition fails
    assert unchunked.max_num_batched_tokens == 8192
    assert unchunked.mm_processor_cache_gb == 0 and unchunked.preprocessing_workers == 4
    assert unchunked.env == {}


def test_invalid_combination_is_a_trial_outcome_not_a_crash() -> None:
    data = _space()
    del data["parameters"]["mnbt_unchunked"]
    data["parameters"]["max_num_batched_tokens"].pop("when")
    space = parse_search_space(data)
    with pytest.raises(InvalidTrialConfig, match="max_num_batched_tokens must be >= max_model_len"):
        engine_config_from_params(
            space,
            {"max_num_seqs": 8, "enable_chunked_prefill": False, "max_num_batched_tokens": 1024,
             "preprocessing_workers": 1, "mm_processor_cache_gb": 0, "mm_processor_kwargs.use_fast": True,
             "env.VLLM_FOO": None},
        )


def test_suggest_samples_only_active_parameters_with_their_distributions() -> None:
    space = parse_search_space(_space())
    distributions = space.to_distributions()
    assert isinstance(distributions["max_num_seqs"], optuna.distributions.IntDistribution)
    assert distributions["max_num_seqs"].log
    assert distributions["mm_processor_kwargs.use_fast"] == optuna.distributions.CategoricalDistribution([False, True])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_chunked: set[bool] = set()
    for _ in range(16):
        trial = study.ask()
        engine = space.suggest(trial)
        chunked = trial.params["enable_chunked_prefill"]
        seen_chunked.add(chunked)
        assert ("max_num_batched_tokens" in trial.params) is chunked
        assert ("mnbt_unchunked" in trial.params) is (not chunked)
        assert ("mm_processor_cache_gb" in trial.params) is (trial.params["preprocessing_workers"] == 1)
        assert engine == engine_config_from_params(space, trial.params)
        for name, value in trial.params.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value))
        study.tell(trial, 1.0)
    assert seen_chunked == {True, False}


def test_config_hash_is_canonical() -> None:
    space = parse_search_space(_space())
    params = {"max_num_seqs": 8, "enable_chunked_prefill": True, "max_num_batched_tokens": 2048,
              "preprocessing_workers": 2, "mm_processor_kwargs.use_fast": True, "env.VLLM_FOO": None}
    first = engine_config_from_params(space, params)
    reordered = engine_config_from_params(space, dict(reversed(list(params.items()))))
    assert config_hash(first) == config_hash(reordered)
    assert config_hash(first) != config_hash(engine_config_from_params(space, {**params, "max_num_seqs": 9}))
    assert config_hash(space.defaults_config()) != config_hash(first)


def test_two_gpu_space_tunes_tensor_parallelism() -> None:
    space = load_search_space(SPACES / "qwen3-vl-4b-2gpu.yaml")
    assert space.to_distributions()["tensor_parallel_size"] == optuna.distributions.CategoricalDistribution([2, 1])
    assert "--tensor-parallel-size" in space.defaults_config().to_vllm_cli_args()  # trial 0: the 2-GPU layout
    params = {name: _first_value(spec) for name, spec in space.parameters.items()}
    params.update(tensor_parallel_size=2, quantization=None, enable_chunked_prefill=True, preprocessing_workers=1)
    args = engine_config_from_params(space, params).to_vllm_cli_args()
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    params["tensor_parallel_size"] = 1
    assert "--tensor-parallel-size" not in engine_config_from_params(space, params).to_vllm_cli_args()


def test_encoder_graphs_space_passes_vllms_compilation_config() -> None:
    """The follow-up grid: vision-encoder CUDA graphs reach vLLM as --compilation-config, the defaults untouched."""
    space = load_search_space(SPACES / "qwen3-vl-4b-encoder-graphs.yaml")
    assert "--compilation-config" not in space.defaults_config().to_vllm_cli_args()  # trial 0: vLLM's defaults
    key = "extra_engine_args.compilation_config.cudagraph_mm_encoder"
    args = engine_config_from_params(space, {key: True, "api_server_count": 6}).to_vllm_cli_args()
    assert json.loads(args[args.index("--compilation-config") + 1]) == {"cudagraph_mm_encoder": True}
    assert args[args.index("--api-server-count") + 1] == "6"
    grid = space.to_distributions()
    assert grid[key] == optuna.distributions.CategoricalDistribution([False, True])
    assert space.budget.n_trials == 4 and space.sampler.kind == "grid"
