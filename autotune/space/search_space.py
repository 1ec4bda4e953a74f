"""The search space: the fixed part of the engine, the tuned parameters, and how trials are measured and judged.

A space holds the fixed part of the engine (`engine_base` plus `fixed` overrides), the tuned
`parameters` (each with an Optuna distribution and optional `when` conditions), the workload, load,
SLO, objective, constraints, budget and trial settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PrivateAttr, model_validator

from autotune.bench.schemas import SLO, LoadSpec
from autotune.base_models import ClosedModel
from autotune.config import EngineConfig, EngineKind
from autotune.space.checks import semantic_issues
from autotune.space.engine_config import engine_config_from_params, resolve_settings
from autotune.space.fidelity import FidelitySettings
from autotune.space.hashing import UNHASHED, digest, located_hash
from autotune.space.objective import MetricConstraint, Objective, default_constraints
from autotune.space.schema import Budget, ModelVariant, ParamSpec, SamplerSettings, TrialSettings

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class SearchSpace(ClosedModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
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
    constraints: list[MetricConstraint] = Field(default_factory=default_constraints)
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
        issues = semantic_issues(self)
        if issues:
            raise ValueError("\n".join(issues))
        return self

    def to_distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter's Optuna distribution (conditional ones included)."""
        return {name: spec.distribution() for name, spec in self.parameters.items()}

    def suggest(self, trial: optuna.Trial) -> EngineConfig:
        """Suggest the active parameters (in declaration order) and build their EngineConfig."""
        resolve_settings(self, lambda name, spec: spec.suggest(trial, name))
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
        return located_hash(self.model_dump(mode="json", exclude=UNHASHED, exclude_defaults=True), self._given_paths)

    def full_content_hash(self) -> str:
        """The rule before `content_hash`: every field, defaults included (it broke on any new field)."""
        return located_hash(self.model_dump(mode="json", exclude=UNHASHED), self._given_paths)

    def legacy_content_hash(self) -> str:
        """The hash studies recorded before `content_hash` became location-independent (resolved paths)."""
        return digest(self.model_dump(mode="json", exclude=UNHASHED))

    def matches_hash(self, stored: str) -> bool:
        """A stored study hash is this space's, under the current rule or an earlier one."""
        return stored in (self.content_hash(), self.full_content_hash(), self.legacy_content_hash())


def grid_choices(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid of sampler kind `grid`: each parameter's choices (bool: false, true)."""
    return {
        name: [False, True] if spec.type == "bool" else list(spec.choices or []) for name, spec in space.parameters.items()
    }
