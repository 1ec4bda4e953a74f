"""How one `autotune tune` run goes (`TuneSettings`, the CLI's options) and what it leaves (`TuneOutcome`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from autotune.config import EngineKind
from autotune.tune.confirm import Confirmation
from autotune.tune.screen import ScreenSettings

STUDY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class TuneSettings(BaseModel):
    """How one `autotune tune` run goes (the CLI's options; the space says what is tuned)."""

    model_config = ConfigDict(extra="forbid")

    study: Annotated[str, Field(pattern=STUDY_NAME_PATTERN)] | None = Field(default=None, description="Default: space name")
    engine: EngineKind | None = Field(default=None, description="Default: the space's engine")
    storage: str | None = Field(default=None, description="Optuna RDB URL; default SQLite in the study folder")
    n_trials: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Trials this run; default: the budget's rest")
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    mlflow_uri: str | None = Field(default=None, description="Default: SQLite in the study folder")
    mlflow: bool = True
    experiments_dir: Path = Path("experiments")
    screen: ScreenSettings | None = Field(default=None, description="Simulator screening before each trial (--screen K)")
    server_cpus: list[int] | None = Field(default=None, description="Pin each trial's server (and its children) here")
    client_cpus: list[int] | None = Field(default=None, description="Pin the load generator here (replaces load.client_cpus)")
    confirm: Annotated[int, Field(ge=0, le=10)] = Field(
        default=0, description="Repeats of the best config and the defaults to queue, interleaved (--confirm N)"
    )
    stack_profile_hz: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        default=None, description="Sample the server processes' Python stacks in each measured window (--stack-profile-hz)"
    )
    warm_start: bool = Field(
        default=False, description="Fork each trial's server from a parent that imported its modules once (--warm-start)"
    )
    compile_cache_dir: Path | None = Field(
        default=None,
        description="VLLM_CACHE_ROOT of every vLLM trial server (--compile-cache); default: the environment's, else "
        "vLLM's own (~/.cache/vllm)",
    )


class TuneOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str
    study_dir: Path
    storage: str = Field(description="Password masked")
    engine: EngineKind
    best_path: Path | None
    best_trial: int | None
    trials_csv: Path
    counts: dict[str, int]
    recovered: list[int] = Field(default_factory=list, description="Trials failed because their worker died")
    ran: int = 0
    confirmation: Confirmation | None = Field(default=None, description="Best vs defaults over repeated measurements")
