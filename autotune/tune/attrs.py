"""Names of the Optuna user attributes a trial carries, and the records built from them.

Trials are the source of truth (the Optuna storage): MLflow runs, tables, CSV and best.yaml are all
built from these attributes, so a study resumed elsewhere, or synced to MLflow later, sees the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotune.tracking import TrialRecord, flatten
from autotune.tune.start_phases import StartPhases

CONFIG_KIND = "config_kind"  # "vllm-defaults" (trial 0) | "sampled" | "profile-guided" | "repeat"
VLLM_DEFAULTS = "vllm-defaults"
SAMPLED = "sampled"
GUIDED = "profile-guided"  # the defaults with one change that their CPU profile called for (autotune.tune.guide)
GUIDED_OVERRIDES = "guided_overrides"
GUIDED_WHY = "guided_why"
REPEAT = "repeat"  # another measurement of an earlier trial's config (autotune tune --confirm, autotune.tune.confirm)
REPEAT_OF = "repeat_of"
CONFIG_HASH = "config_hash"
ENGINE_CONFIG = "engine_config"  # EngineConfig as JSON-able dict
ENGINE = "engine"
SIMULATED = "simulated"
OUTCOME = "outcome"  # TrialOutcome: complete | failed | rejected
FAIL_REASON = "fail_reason"
PRUNE_REASON = "prune_reason"
METRICS = "metrics"  # flat summary figures
GPM_STATUS = "gpm_status"  # the reported window's GpuSummary.gpm_status: "ok", or why SM figures are absent
TRIAL_DIR = "trial_dir"
RESULT_PATH = "result_path"
TIMINGS = "timings"
CPU_PINNING = "cpu_pinning"  # {"server": [cores] | None, "client": [cores] | None}
DUPLICATE_OF = "duplicate_of"
WORKER_HOST = "worker_host"
WORKER_PID = "worker_pid"
WORKER_STARTED_AT = "worker_started_at"
SERVER_PID = "server_pid"
SERVER_PGID = "server_pgid"
SERVER_URL = "server_url"
MLFLOW_SYNCED = "mlflow_synced"
MLFLOW_RUN_ID = "mlflow_run_id"
START_PHASES = "start_phases"  # StartPhases (autotune.tune.start_phases) as a dict: the start's phases from its log
COMPILE_CACHE = "compile_cache"  # hit | miss | partial | disabled: whether vLLM's compile cache served the start
COMPILE_CACHE_ROOT = "compile_cache_root"  # the VLLM_CACHE_ROOT the trial's server was given
WARM_START = "warm_start"  # True: forked from the warm parent; False: started cold in a --warm-start study
COLD_START_REASON = "cold_start_reason"  # why such a trial started cold
COMPILE_GROUP = "compile_group"  # hash of the trial's compile-key fields (autotune.tune.compile_order)
COMPILE_KEY_FROM = "compile_key_from"  # the trial whose compile-key parameters this sampled trial keeps
SCREENING = "screening"  # {"metric", "value", "figures"}: the short screening measurement (autotune.tune.fidelity)

WORKER_DIED = "worker died"
GPU_BUSY = "GPU busy before start"
INTERRUPTED = "interrupted"
STUDY_STOPPED = "study stopped"  # the storage or the experiments folder failed (autotune.tune.stops)
NOT_THE_CONFIGS_FAULT = (WORKER_DIED, GPU_BUSY, INTERRUPTED, STUDY_STOPPED)
"""Fail reasons that say nothing about the config: such a trial's config is served again, not reused as failed."""


def interrupted_reason(exc: KeyboardInterrupt) -> str:
    """"interrupted (SIGTERM)" for `sigterm_as_interrupt`'s interrupt, "interrupted (Ctrl-C)" for a plain one."""
    return f"{INTERRUPTED} ({str(exc) or 'Ctrl-C'})"


def environmental_failure(reason: str | None) -> bool:
    """Whether a FAIL reason is the environment's (dead worker, busy GPU, Ctrl-C, a study stop), not the config's own."""
    return str(reason or "").startswith(NOT_THE_CONFIGS_FAULT)

# Study-level user attributes.
STUDY_SPACE = "search_space"
STUDY_SPACE_HASH = "search_space_hash"
STUDY_ENGINE = "engine"
STUDY_OBJECTIVE = "objective"

_TRIAL_FILES = ("result.json", "screening.json", "server.log", "config.yaml", "trial.json", "stack_profile.json")


def trial_record(
    *,
    number: int,
    state: str,
    params: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    study_tags: Mapping[str, str],
) -> TrialRecord:
    """The MLflow view of a finished trial (from its attributes and its folder)."""
    engine_config = user_attrs.get(ENGINE_CONFIG) or {}
    logged_params: dict[str, Any] = {f"engine.{key}": value for key, value in flatten(engine_config).items()}
    logged_params.update({f"param.{key}": value for key, value in params.items()})
    logged_params[CONFIG_KIND] = user_attrs.get(CONFIG_KIND, SAMPLED)
    metrics = {key: float(value) for key, value in (user_attrs.get(METRICS) or {}).items() if _finite(value)}
    for key, value in (user_attrs.get(TIMINGS) or {}).items():
        if _finite(value):
            metrics[f"trial_{key}"] = float(value)
    phases = user_attrs.get(START_PHASES)
    if phases:
        metrics.update(StartPhases.model_validate(phases).metrics())
    screening = user_attrs.get(SCREENING) or {}
    if _finite(screening.get("value")):
        metrics["screening_value"] = float(screening["value"])
    for key, value in (screening.get("figures") or {}).items():
        if _finite(value):
            metrics[f"screening_{key}"] = float(value)
    simulated = bool(user_attrs.get(SIMULATED, study_tags.get("simulated") == "true"))
    tags = {
        **study_tags,
        "engine": str(user_attrs.get(ENGINE, study_tags.get("engine", ""))),
        "simulated": "true" if simulated else "false",
        "outcome": str(user_attrs.get(OUTCOME, "")),
        "config_hash": str(user_attrs.get(CONFIG_HASH, "")),
        CONFIG_KIND: str(user_attrs.get(CONFIG_KIND, SAMPLED)),
    }
    for role, cores in (user_attrs.get(CPU_PINNING) or {}).items():
        tags[f"cpus_{role}"] = _cpu_list_text(cores) if cores else "not pinned"
    reason = user_attrs.get(FAIL_REASON) or user_attrs.get(PRUNE_REASON)
    if reason:
        tags["fail_reason"] = str(reason)[:4000]
    if user_attrs.get(DUPLICATE_OF) is not None:
        tags["duplicate_of"] = str(user_attrs[DUPLICATE_OF])
    if user_attrs.get(REPEAT_OF) is not None:
        tags[REPEAT_OF] = str(user_attrs[REPEAT_OF])
    if user_attrs.get(GPM_STATUS):
        tags[GPM_STATUS] = str(user_attrs[GPM_STATUS])[:4000]
    if user_attrs.get(GUIDED_WHY):
        tags[GUIDED_WHY] = str(user_attrs[GUIDED_WHY])[:4000]
    if phases and phases.get("compile_keys"):
        tags["compile_keys"] = ", ".join(phases["compile_keys"])
    for key in (COMPILE_CACHE, COMPILE_CACHE_ROOT, COMPILE_GROUP, COMPILE_KEY_FROM, WARM_START, COLD_START_REASON):
        if user_attrs.get(key) is not None:
            tags[key] = str(user_attrs[key])[:4000]
    if screening.get("metric"):
        tags["screening_metric"] = str(screening["metric"])
    folder = user_attrs.get(TRIAL_DIR)
    artifacts = [Path(folder) / name for name in _TRIAL_FILES] if folder else []
    return TrialRecord(number=number, state=state, params=logged_params, metrics=metrics, tags=tags, artifacts=artifacts)


def _cpu_list_text(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the taskset -c syntax)."""
    runs: list[str] = []
    ordered = sorted(set(cores))
    start = prev = ordered[0]
    for core in [*ordered[1:], None]:
        if core is not None and core == prev + 1:
            prev = core
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if core is not None:
            start = prev = core
    return ",".join(runs)


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
