"""Search spaces: YAML -> SearchSpace -> Optuna distributions -> trial params -> EngineConfig.

A space holds the fixed part of the engine (`engine_base` plus `fixed` overrides), the tuned
`parameters` (each with an Optuna distribution and optional `when` conditions), the workload, load,
SLO, objective, constraints, budget and trial settings. `engine_config_from_params` is the one
function that turns parameter values into an EngineConfig; an invalid combination raises
`InvalidTrialConfig` (a trial outcome, not a crash).

Parameter names may be dotted to reach into dict fields of EngineConfig
(`mm_processor_kwargs.use_fast`, `env.VLLM_X`, `extra_engine_args.foo`); a parameter may also set
another field with `field:` (two parameters can tune one field under different conditions).

Secrets in the engine env (HF_TOKEN, ...) never reach a file: an env value may be written `${VAR}` and is
expanded only in the server process's environment (from the tuner's own environment, which trial servers
inherit); trial config.yaml, best.yaml, the study storage and MLflow keep the placeholder. A literal value
under a secret-looking key (`engine_base.env.HF_TOKEN: hf_...` or `fixed: {env.HF_TOKEN: ...}`) is turned
into `${HF_TOKEN}` when the space is parsed, and its value kept apart (`SearchSpace.secret_env`, exported to
the tuner's environment by the tune preflight). Tuned parameters should not carry secrets.

A study remembers `content_hash()` of its space, which ignores where the checkout lives: paths are hashed
as written in the YAML (relative to its folder) or given with --model, not as resolved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from autotune.bench.schemas import SLO, LoadSpec
from autotune.config import EngineConfig, EngineKind, Quantization, read_yaml_mapping
from autotune.errors import AutotuneError, ConfigError, format_validation_error
from autotune.tune.fidelity import FidelitySettings, fidelity_issues
from autotune.tune.metrics import MetricName
from autotune.redact import hide_secret_env, is_secret_key, placeholder_name

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

ChoiceValue = bool | int | float | str | None
ParamType = Literal["int", "float", "categorical", "bool"]

# Quantization methods that read a quantized checkpoint (need a model variant); fp8 quantizes online.
CHECKPOINT_QUANTIZATIONS = frozenset({"awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors"})
_NOT_TUNABLE = frozenset({"model", "served_model_name"})
_DICT_FIELDS = frozenset(
    name for name, info in EngineConfig.model_fields.items() if "dict[" in str(info.annotation)
)
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class InvalidTrialConfig(AutotuneError):
    """Parameter values that do not make a valid EngineConfig (the trial is pruned with this reason)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(_Strict):
    """A test on one earlier parameter (or engine field). YAML shorthand: a scalar means `eq`, a list `in`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: ChoiceValue = None
    ne: ChoiceValue = None
    in_: list[ChoiceValue] | None = Field(default=None, alias="in")
    not_in: list[ChoiceValue] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"in": data}
        if not isinstance(data, dict):
            return {"eq": data}
        return data

    @model_validator(mode="after")
    def _needs_an_operator(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("a condition needs one of: eq, ne, in, not_in, gt, ge, lt, le")
        return self

    def holds(self, value: Any) -> bool:
        checks: dict[str, Callable[[], bool]] = {
            "eq": lambda: _same(value, self.eq),
            "ne": lambda: not _same(value, self.ne),
            "in_": lambda: any(_same(value, item) for item in self.in_ or []),
            "not_in": lambda: not any(_same(value, item) for item in self.not_in or []),
            "gt": lambda: _is_number(value) and value > self.gt,  # type: ignore[operator]
            "ge": lambda: _is_number(value) and value >= self.ge,  # type: ignore[operator]
            "lt": lambda: _is_number(value) and value < self.lt,  # type: ignore[operator]
            "le": lambda: _is_number(value) and value <= self.le,  # type: ignore[operator]
        }
        return all(checks[name]() for name in self.model_fields_set)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a condition on a bool must not match the integer 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ParamSpec(_Strict):
    """One tuned parameter: an Optuna distribution, the engine field it sets, and when it is active."""

    type: ParamType
    field: str | None = Field(default=None, description="EngineConfig field (dotted) it sets; default: its name")
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    choices: list[ChoiceValue] | None = None
    when: dict[str, Condition] = Field(default_factory=dict, description="All must hold for it to be tuned")
    otherwise: ChoiceValue = Field(
        default=None, description="Value set when `when` does not hold; if absent the base value stays"
    )
    description: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> ParamSpec:
        numeric = self.type in ("int", "float")
        if numeric:
            if self.low is None or self.high is None:
                raise ValueError(f"type {self.type} needs low and high")
            if self.choices is not None:
                raise ValueError(f"type {self.type} takes low/high, not choices")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0 (got {self.low})")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"step must be > 0 (got {self.step})")
        else:
            extra = [name for name in ("low", "high", "step") if getattr(self, name) is not None]
            if self.log:
                extra.append("log")
            if extra:
                raise ValueError(f"type {self.type} does not take {', '.join(extra)}")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"type int needs a whole {name} (got {value})")
            if self.log and self.step not in (None, 1):
                raise ValueError("type int with log: true needs step 1")
        if self.type == "float" and self.log and self.step is not None:
            raise ValueError("type float takes either log: true or step, not both")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("type categorical needs a non-empty choices list")
            if len({json.dumps(item) for item in self.choices}) != len(self.choices):
                raise ValueError(f"choices must be unique (got {self.choices})")
        if self.type == "bool" and self.choices is not None:
            raise ValueError("type bool takes no choices (it is true or false)")
        if "otherwise" in self.model_fields_set and not self.when:
            raise ValueError("otherwise is only meaningful with when")
        return self

    def target(self, name: str) -> str:
        return self.field or name

    def candidate_values(self) -> list[Any]:
        """The values worth validating against EngineConfig (ends of a range, every choice)."""
        if self.type == "bool":
            return [False, True]
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        assert self.low is not None or self.type in ("categorical", "bool")
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))  # type: ignore[arg-type]
        if self.type == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)  # type: ignore[arg-type]
        if self.type == "bool":
            return CategoricalDistribution([False, True])
        return CategoricalDistribution(list(self.choices or []))

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)  # type: ignore[arg-type]
        if self.type == "float":
            return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)  # type: ignore[arg-type]
        if self.type == "bool":
            return trial.suggest_categorical(name, [False, True])
        return trial.suggest_categorical(name, list(self.choices or []))


class ModelVariant(_Strict):
    """A checkpoint for a quantization choice: a folder whose config.json carries quantization_config."""

    model: str
    tokenizer: str | None = Field(default=None, description="Tokenizer folder when the variant holds none")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class Objective(_Strict):
    """goodput: maximize goodput_rps under the SLO; slo_rate: maximize the highest request rate sustained
    within the SLO's p99s (needs load mode slo_rate); throughput: maximize throughput_rps;
    pareto: maximize throughput_rps and minimize a p99 latency (two objectives)."""

    kind: Literal["goodput", "slo_rate", "throughput", "pareto"] = "goodput"
    latency_metric: Literal["e2el_ms_p99", "ttft_ms_p99"] = Field(
        default="e2el_ms_p99", description="The latency minimized by 'pareto'"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    def metric_names(self) -> list[str]:
        if self.kind == "goodput":
            return ["goodput_rps"]
        if self.kind == "slo_rate":
            return ["slo_rate_rps"]
        if self.kind == "throughput":
            return ["throughput_rps"]
        return ["throughput_rps", self.latency_metric]

    def directions(self) -> list[Literal["maximize", "minimize"]]:
        return ["maximize"] if self.kind != "pareto" else ["maximize", "minimize"]


class MetricConstraint(_Strict):
    """A trial is feasible when `min <= metric <= max` (TPE/NSGA-II constraints: value <= 0 is feasible)."""

    metric: MetricName
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _needs_a_bound(self) -> MetricConstraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs max or min")
        return self

    @property
    def key(self) -> str:
        return self.metric

    def violation(self, figures: Mapping[str, float | None]) -> float:
        """<= 0 when met; a positive amount otherwise (1.0 when the metric was not measured)."""
        value = figures.get(self.metric)
        if value is None:
            return 1.0
        excess = [float(value) - self.max] if self.max is not None else []
        if self.min is not None:
            excess.append(self.min - float(value))
        return max(excess)


def _default_constraints() -> list[MetricConstraint]:
    return [
        MetricConstraint(metric="error_rate", max=0.01),
        MetricConstraint(metric="client_saturated", max=0.0),
    ]


class Budget(_Strict):
    n_trials: Annotated[int, Field(ge=1)] = 20
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class SamplerSettings(_Strict):
    """tpe (default), nsga2 (pareto), random, or grid: every combination of the (categorical/bool) parameters once."""

    kind: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    seed: int | None = 0
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    compile_key_runs: Annotated[int, Field(ge=1, le=20)] = Field(
        default=1,
        description="Consecutive sampled trials that keep the compile-key parameters of the one before (1: off); "
        "a trial whose compile key vLLM has compiled loads it from its cache instead (autotune.tune.compile_order)",
    )
    compile_key_params: list[str] | None = Field(
        default=None, description="The parameters that change vLLM's compile key; default: those whose engine field does"
    )


class TrialSettings(_Strict):
    startup_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    warmup_requests: Annotated[int, Field(ge=0)] = 8
    measure_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=900.0, description="A benchmark still running after this is a failed trial (server stalled)"
    )
    stop_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    gpu_memory_gib: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="For the feasibility check; None: the GPU's total from NVML (skip without one)"
    )
    activation_reserve_gib: Annotated[float, Field(ge=0)] = 4.0
    gpu_release_timeout_s: Annotated[float, Field(ge=0)] = 60.0
    gpu_release_tolerance_mib: Annotated[float, Field(ge=0)] = 512.0


class SearchSpace(_Strict):
    name: Annotated[str, Field(pattern=_NAME_PATTERN)]
    description: str | None = None
    engine: EngineKind = EngineKind.VLLM
    engine_base: EngineConfig
    model_variants: dict[str, ModelVariant] = Field(
        default_factory=dict, description="quantization value -> checkpoint folder"
    )
    parameters: dict[str, ParamSpec] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict, description="Dotted engine field -> value, every trial")
    workload: str = "vlm-chat"
    load: LoadSpec
    slo: SLO = Field(default_factory=SLO)
    objective: Objective = Field(default_factory=Objective)
    constraints: list[MetricConstraint] = Field(default_factory=_default_constraints)
    budget: Budget = Field(default_factory=Budget)
    sampler: SamplerSettings = Field(default_factory=SamplerSettings)
    trial: TrialSettings = Field(default_factory=TrialSettings)
    fidelity: FidelitySettings | None = Field(
        default=None, description="Screen each trial with a short measurement first; prune it there unless it can win"
    )

    _secret_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _given_paths: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def secret_env(self) -> dict[str, str]:
        """Secret env values written literally in the YAML (now `${KEY}` placeholders in the space)."""
        return dict(self._secret_env)

    @model_validator(mode="after")
    def _check_semantics(self) -> SearchSpace:
        issues = _semantic_issues(self)
        if issues:
            raise ValueError("\n".join(issues))
        return self

    def to_distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter's Optuna distribution (conditional ones included)."""
        return {name: spec.distribution() for name, spec in self.parameters.items()}

    def suggest(self, trial: optuna.Trial) -> EngineConfig:
        """Suggest the active parameters (in declaration order) and build their EngineConfig."""
        _resolve_settings(self, lambda name, spec: spec.suggest(trial, name))
        return engine_config_from_params(self, trial.params)

    def defaults_config(self) -> EngineConfig:
        """engine_base + fixed: vLLM's defaults for everything tuned (trial 0)."""
        return engine_config_from_params(self, {}, tuned=False)

    def content_hash(self) -> str:
        """Identity of what a study measures (budget and sampler excluded): resumes must match it.

        Only what differs from the schema's defaults is hashed, so a later version of autotune that adds a field
        (with a default) still resumes the studies of an earlier one. Paths count as written in the YAML (or given
        with --model), so a study resumes from another checkout.
        """
        return self._hash_of(self.model_dump(mode="json", exclude=_UNHASHED, exclude_defaults=True))

    def full_content_hash(self) -> str:
        """The hash studies recorded until 2026-11-26: every field, defaults included (broke on any new field)."""
        return self._hash_of(self.model_dump(mode="json", exclude=_UNHASHED))

    def legacy_content_hash(self) -> str:
        """The hash studies recorded before `content_hash` became location-independent (resolved paths)."""
        return _sha(self.model_dump(mode="json", exclude=_UNHASHED))

    def _hash_of(self, data: dict[str, Any]) -> str:
        for location, given in self._given_paths.items():
            set_path(data, location, given)
        return _sha(data)

    def matches_hash(self, stored: str) -> bool:
        """A stored study hash is this space's, under the current rule or an earlier one."""
        return stored in (self.content_hash(), self.full_content_hash(), self.legacy_content_hash())


def engine_config_from_params(space: SearchSpace, params: Mapping[str, Any], *, tuned: bool = True) -> EngineConfig:
    """The one translation of parameter values into an EngineConfig (validated).

    `tuned=False` gives the defaults config (no parameter applied). Raises InvalidTrialConfig.
    """

    def pick(name: str, spec: ParamSpec) -> Any:
        if name not in params:
            raise InvalidTrialConfig(f"parameter {name} is active (its conditions hold) but has no value")
        return params[name]

    settings = _resolve_settings(space, pick if tuned else None)
    try:
        return EngineConfig.model_validate(settings)
    except ValidationError as exc:
        raise InvalidTrialConfig("invalid combination: " + format_validation_error(exc).replace("\n", "; ")) from None


def config_hash(engine: EngineConfig) -> str:
    """Canonical identity of an engine config (same settings -> same hash)."""
    return _sha(engine.model_dump(mode="json"))


_UNHASHED = {"budget", "description", "sampler", "fidelity"}  # how trials are chosen and cut short, not what they measure


def _sha(data: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resolve_settings(space: SearchSpace, pick: Callable[[str, ParamSpec], Any] | None) -> dict[str, Any]:
    settings = space.engine_base.model_dump(mode="python")
    for path, value in space.fixed.items():
        set_path(settings, path, value)
    if pick is not None:
        for name, spec in space.parameters.items():
            if _conditions_hold(space, spec, settings):
                set_path(settings, spec.target(name), pick(name, spec))
            elif "otherwise" in spec.model_fields_set:
                set_path(settings, spec.target(name), spec.otherwise)
    variant = space.model_variants.get(str(settings.get("quantization")))
    if variant is not None:
        settings["model"] = variant.model
        if variant.tokenizer is not None:
            settings.setdefault("extra_engine_args", {})["tokenizer"] = variant.tokenizer
    return settings


def _conditions_hold(space: SearchSpace, spec: ParamSpec, settings: Mapping[str, Any]) -> bool:
    for subject, condition in spec.when.items():
        other = space.parameters.get(subject)
        path = other.target(subject) if other is not None else subject
        if not condition.holds(get_path(settings, path)):
            return False
    return True


def get_path(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def set_path(settings: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted field; inside a dict field, None removes the key (an unset env var, vLLM's default)."""
    parts = path.split(".")
    if len(parts) == 1:
        settings[path] = value
        return
    node = settings
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _path_problem(path: str) -> str | None:
    parts = path.split(".")
    top = parts[0]
    tunable = sorted(set(EngineConfig.model_fields) - _NOT_TUNABLE)
    if top not in EngineConfig.model_fields or top in _NOT_TUNABLE:
        return f"unknown engine field {top!r}; allowed: {', '.join(tunable)}"
    if len(parts) > 1 and top not in _DICT_FIELDS:
        return f"{top!r} is not a mapping; dotted names reach only into {', '.join(sorted(_DICT_FIELDS))}"
    if any(not part for part in parts):
        return f"empty name segment in {path!r}"
    return None


def _field_errors(base: dict[str, Any], path: str, value: Any) -> list[str]:
    """Errors EngineConfig reports for this one field set to `value` (cross-field checks are left to trials)."""
    settings = json.loads(json.dumps(base, default=str))
    set_path(settings, path, value)
    try:
        EngineConfig.model_validate(settings)
    except ValidationError as exc:
        top = path.split(".")[0]
        return [item["msg"] for item in exc.errors(include_url=False) if tuple(item.get("loc", ()))[:1] == (top,)]
    return []


def _semantic_issues(space: SearchSpace) -> list[str]:
    issues: list[str] = []
    base = space.engine_base.model_dump(mode="json")
    for path, value in space.fixed.items():
        problem = _path_problem(path)
        if problem:
            issues.append(f"fixed.{path}: {problem}")
            continue
        issues += [f"fixed.{path}: {msg} (got {value!r})" for msg in _field_errors(base, path, value)]
        set_path(base, path, value)
    targets: dict[str, str] = {}
    declared: list[str] = []
    for name, spec in space.parameters.items():
        where = f"parameters.{name}"
        if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
            issues.append(f"{where}: a parameter name may hold letters, digits, '_', '-' and '.' only")
        target = spec.target(name)
        problem = _path_problem(target)
        if problem:
            issues.append(f"{where}{'.field' if spec.field else ''}: {problem}")
            continue
        if target in space.fixed:
            issues.append(f"{where}: {target} is also in fixed; tune it or fix it, not both")
        for subject in spec.when:
            if subject in space.parameters and subject not in declared:
                issues.append(f"{where}.when.{subject}: declare {subject} before {name} (conditions look back)")
            elif subject not in space.parameters and _path_problem(subject):
                known = ", ".join(declared) or "none"
                issues.append(f"{where}.when.{subject}: not a parameter declared before it ({known}) nor an engine field")
        values = spec.candidate_values()
        if "otherwise" in spec.model_fields_set:
            values.append(spec.otherwise)
        for index, value in enumerate(values):
            label = _value_label(spec, index, len(values))
            if target == "quantization" and value in CHECKPOINT_QUANTIZATIONS and value not in space.model_variants:
                issues.append(
                    f"{where}.{label}: quantization {value!r} reads a quantized checkpoint: add model_variants.{value} "
                    "(a folder whose config.json carries quantization_config); fp8 quantizes the base model online"
                )
            issues += [f"{where}.{label}: {msg} (got {value!r})" for msg in _field_errors(base, target, value)]
        targets.setdefault(target, name)
        declared.append(name)
    allowed_quant = get_args(Quantization)
    for key in space.model_variants:
        if key not in allowed_quant:
            issues.append(f"model_variants.{key}: not a quantization method; allowed: {', '.join(allowed_quant)}")
    if space.objective.kind in ("goodput", "slo_rate") and all(
        getattr(space.slo, name) is None for name in ("ttft_ms", "tpot_ms", "e2el_ms")
    ):
        issues.append(f"objective: {space.objective.kind} needs an slo with at least one of ttft_ms, tpot_ms, e2el_ms")
    if space.sampler.kind == "grid":
        for name, spec in space.parameters.items():
            if spec.type not in ("categorical", "bool"):
                issues.append(f"parameters.{name}: sampler grid needs categorical or bool parameters (got type {spec.type})")
    if (space.objective.kind == "slo_rate") != (space.load.mode == "slo_rate"):
        issues.append(
            f"objective: {space.objective.kind} with load.mode {space.load.mode}: the slo_rate objective and the "
            "slo_rate load mode go together (the mode measures slo_rate_rps)"
        )
    try:
        engine_config_from_params(space, {}, tuned=False)
    except InvalidTrialConfig as exc:
        issues.append(f"engine_base + fixed (vLLM defaults, trial 0): {exc}")
    if space.fidelity is not None:
        issues += fidelity_issues(space.fidelity, space.load, space.objective.directions())
    for name in space.sampler.compile_key_params or []:
        if name not in space.parameters:
            issues.append(f"sampler.compile_key_params: {name!r} is not a parameter; parameters: {', '.join(space.parameters)}")
    if space.sampler.compile_key_runs > 1 and space.sampler.kind == "grid":
        issues.append("sampler.compile_key_runs: the grid sampler keeps its own order; use tpe, random or nsga2")
    return issues


def grid_choices(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid of sampler kind `grid`: each parameter's choices (bool: false, true)."""
    return {
        name: [False, True] if spec.type == "bool" else list(spec.choices or []) for name, spec in space.parameters.items()
    }


def _value_label(spec: ParamSpec, index: int, count: int) -> str:
    if "otherwise" in spec.model_fields_set and index == count - 1:
        return "otherwise"
    if spec.type in ("int", "float"):
        return "low" if index == 0 else "high"
    if spec.type == "bool":
        return "type"
    return f"choices[{index}]"


def _resolve_path(value: str, base_dir: Path) -> str:
    """A relative path that exists next to the YAML (or starts with ./ ../) is made absolute; hub ids stay."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = base_dir / path
    if candidate.exists() or value.startswith(("./", "../")):
        return str(candidate.resolve())
    return value


def _resolve_paths(
    data: dict[str, Any], base_dir: Path, model: str | None, given: dict[str, str] | None = None
) -> dict[str, Any]:
    """Paths made usable from here; `given` gets {dotted location: the path as written} for the hash."""
    given = {} if given is None else given
    data = dict(data)
    base = data.get("engine_base")
    old_model: str | None = None
    if isinstance(base, dict) and isinstance(base.get("model"), str):
        base = dict(base)
        old_model = _resolve_path(base["model"], base_dir)
        given["engine_base.model"] = model or base["model"]
        base["model"] = _resolve_path(model, Path.cwd()) if model else old_model
        data["engine_base"] = base
    variants = data.get("model_variants")
    if isinstance(variants, dict):
        resolved: dict[str, Any] = {}
        for key, variant in variants.items():
            entry = {"model": variant} if isinstance(variant, str) else variant
            if isinstance(entry, dict):
                entry = dict(entry)
                for field in ("model", "tokenizer"):
                    if isinstance(entry.get(field), str):
                        given[f"model_variants.{key}.{field}"] = entry[field]
                        entry[field] = _resolve_path(entry[field], base_dir)
                if model and old_model and entry.get("tokenizer") == old_model:
                    entry["tokenizer"] = base["model"]  # the same model staged elsewhere (--model)
                    given[f"model_variants.{key}.tokenizer"] = model
            resolved[key] = entry
        data["model_variants"] = resolved
    workload = data.get("workload")
    if isinstance(workload, str) and workload.endswith((".yaml", ".yml", ".json", ".jsonl")):
        given["workload"] = workload
        data["workload"] = str((base_dir / Path(workload).expanduser()).resolve())  # a file, next to the YAML
    return data


def _hide_secrets(data: dict[str, Any]) -> dict[str, str]:
    """Literal secret env values (engine_base.env, fixed env.*) become `${KEY}`; returns {KEY: value}."""
    secrets: dict[str, str] = {}
    base = data.get("engine_base")
    if isinstance(base, dict) and isinstance(base.get("env"), dict):
        env, found = hide_secret_env({str(k): v for k, v in base["env"].items()})
        data["engine_base"] = {**base, "env": env}
        secrets.update(found)
    fixed = data.get("fixed")
    if isinstance(fixed, dict):
        cleaned = dict(fixed)
        for path, value in fixed.items():
            parts = str(path).split(".")
            if len(parts) == 2 and parts[0] == "env" and is_secret_key(parts[1]) and isinstance(value, str):
                if value and placeholder_name(value) is None:
                    cleaned[path] = "${" + parts[1] + "}"
                    secrets[parts[1]] = value
        data["fixed"] = cleaned
    return secrets


def parse_search_space(
    data: Mapping[str, Any], *, source: str | Path | None = None, base_dir: Path | None = None, model: str | None = None
) -> SearchSpace:
    """Validate a mapping into a SearchSpace; paths resolve against `base_dir`; every error is a ConfigError.

    Literal secret env values become `${KEY}` placeholders (their values: `space.secret_env`).
    """
    given: dict[str, str] = {}
    resolved = _resolve_paths(dict(data), base_dir or Path.cwd(), model, given)
    secrets = _hide_secrets(resolved)
    try:
        space = SearchSpace.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_render_errors(exc, source)) from None
    space._given_paths = given
    space._secret_env = secrets
    return space


def load_search_space(path: str | Path, *, model: str | None = None) -> SearchSpace:
    """Read a search-space YAML; `model` replaces engine_base.model (relative to the current folder)."""
    source = Path(path)
    return parse_search_space(read_yaml_mapping(source), source=source, base_dir=source.resolve().parent, model=model)


def _render_errors(exc: ValidationError, source: str | Path | None) -> str:
    """Pydantic's lines for structural errors; the semantic checks' own lines (they name their field)."""
    errors = exc.errors(include_url=False)
    if not all(not item.get("loc") and item.get("type") == "value_error" for item in errors):
        return format_validation_error(exc, source)
    prefix = f"{source}: " if source else ""
    lines: list[str] = []
    for item in errors:
        lines += [prefix + line for line in str(item.get("msg", "")).removeprefix("Value error, ").splitlines()]
    return "\n".join(lines)
