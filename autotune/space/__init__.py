"""Search spaces: YAML -> SearchSpace -> Optuna distributions -> trial params -> EngineConfig.

`engine_config_from_params` is the one function that turns parameter values into an EngineConfig; an invalid
combination raises `InvalidTrialConfig` (a trial outcome, not a crash). Parameter names may be dotted to reach into
dict fields of EngineConfig (`mm_processor_kwargs.use_fast`, `env.VLLM_X`, `extra_engine_args.foo`); a parameter may
also set another field with `field:` (two parameters can tune one field under different conditions).

A study remembers `content_hash()` of its space, which ignores where the checkout lives: paths are hashed as written
in the YAML (relative to its folder) or given with --model, not as resolved.

Modules, by responsibility:
- `search_space`: `SearchSpace` and its hashes; `schema`: parameters, conditions, model variants, budget, sampler
  and trial settings; `objective`: the objective, metric constraints and metric names; `fidelity`: the screening
  section;
- `checks`: the semantic checks beyond the schema; `engine_config`: parameter values -> EngineConfig; `paths`:
  dotted engine-field paths; `hashing`: config and space identities;
- `loading`: YAML -> SearchSpace (paths resolved); `secret_env`: secret env values kept out of files.
"""

from autotune.space.engine_config import InvalidTrialConfig, engine_config_from_params
from autotune.space.fidelity import FidelitySettings, PrunerSettings, screening_load
from autotune.space.hashing import config_hash
from autotune.space.loading import load_search_space, parse_search_space
from autotune.space.objective import METRIC_NAMES, MetricConstraint, MetricName, Objective
from autotune.space.paths import get_path, set_path
from autotune.space.schema import ParamSpec, TrialSettings
from autotune.space.search_space import SearchSpace, grid_choices

__all__ = [
    "METRIC_NAMES",
    "FidelitySettings",
    "InvalidTrialConfig",
    "MetricConstraint",
    "MetricName",
    "Objective",
    "ParamSpec",
    "PrunerSettings",
    "SearchSpace",
    "TrialSettings",
    "config_hash",
    "engine_config_from_params",
    "get_path",
    "grid_choices",
    "load_search_space",
    "parse_search_space",
    "screening_load",
    "set_path",
]
