"""Checks before the first trial: the study folder is writable, the disk has room, the engine can run,
every `${VAR}` of the engine env is set, and what every trial reads (workload, dataset, model folders) is there
(`check_trial_inputs`, before the study is created)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from autotune import GPU_INSTALL_HINT
from autotune.bench.dataset import load_dataset
from autotune.bench.text import load_token_counter
from autotune.bench.trace import check_trace_workload
from autotune.bench.workload import resolve_workload
from autotune.config import EngineKind
from autotune.errors import ConfigError, EngineUnavailableError
from autotune.hub import HubModelError, looks_like_hub_id, model_files_dir, require_model_files
from autotune.space import SearchSpace
from autotune.redact import missing_env_placeholders
from autotune.tune.screen import load_screen_profile
from autotune.tune.settings import TuneSettings

MIN_FREE_GIB = 1.0


def check_study_dir(study_dir: Path, *, min_free_gib: float = MIN_FREE_GIB) -> None:
    """Create the folder and prove it writable; refuse when the disk is nearly full."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=study_dir, prefix=".write-check-", delete=True) as handle:
            handle.write(b"ok")
            handle.flush()
    except OSError as exc:
        raise ConfigError(f"experiments folder {study_dir} is not writable: {exc.strerror or exc}") from None
    free_gib = shutil.disk_usage(study_dir).free / 1024**3
    if free_gib < min_free_gib:
        raise ConfigError(
            f"experiments folder {study_dir}: only {free_gib:.2f} GiB free on its disk "
            f"(need at least {min_free_gib:g} GiB for trial logs and results)"
        )


def check_engine(engine: EngineKind) -> None:
    if engine is EngineKind.VLLM and importlib.util.find_spec("vllm") is None:
        raise EngineUnavailableError(
            f"engine vllm: vLLM is not installed here (on a GPU host: {GPU_INSTALL_HINT}), "
            "or tune the simulated engine with --engine simulated"
        )


def min_free_gib() -> float:
    """Override with AUTOTUNE_MIN_FREE_GIB (tests, small disks)."""
    try:
        return float(os.environ.get("AUTOTUNE_MIN_FREE_GIB", MIN_FREE_GIB))
    except ValueError:
        raise ConfigError("AUTOTUNE_MIN_FREE_GIB: expected a number of GiB") from None


def prepare_engine_env(space: SearchSpace, environ: MutableMapping[str, str] | None = None) -> None:
    """Put the space's literal secrets into the tuner's environment (trial servers inherit it, files keep
    `${KEY}`), then require every `${VAR}` of the defaults config's env to be set."""
    target = os.environ if environ is None else environ
    target.update(space.secret_env)
    missing = missing_env_placeholders(space.defaults_config().env, target)
    if missing:
        raise ConfigError(
            "engine env: " + ", ".join(missing) + " not set in the environment of `autotune tune` "
            "(trial servers take `${VAR}` values from it)"
        )


def check_trial_inputs(space: SearchSpace, settings: TuneSettings) -> None:
    """What every trial reads, checked before the study is created: the workload (a dataset's every line), the
    model folders, the screening profile. Raises one ConfigError with a line per problem."""
    problems = [*workload_problems(space), *model_problems(space)]
    if settings.screen is not None:
        try:
            load_screen_profile(settings.screen)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))


def workload_problems(space: SearchSpace) -> list[str]:
    try:
        workload = resolve_workload(space.workload)
        if workload.dataset is not None:
            load_dataset(workload.dataset.path)  # a missing file or a bad line: here, not in every trial
        if workload.synthetic is not None and workload.synthetic.tokenizer is not None:
            load_token_counter(workload.synthetic.tokenizer)
        check_trace_workload(space.load, workload)
    except ConfigError as exc:
        return [f"workload: {exc}"]
    return []


def model_problems(space: SearchSpace) -> list[str]:
    """Each model and tokenizer the space names: a local path must exist; a Hugging Face id (`org/name`) must have
    its config files cached or fetchable (`autotune.hub`). A folder without config.json is not refused here (vLLM
    reads other formats too): the memory pre-check then says, once, that it cannot judge the trials."""
    base = space.engine_base
    named = [("engine_base.model", base.model)]
    tokenizer = base.extra_engine_args.get("tokenizer")
    if isinstance(tokenizer, str):
        named.append(("engine_base.extra_engine_args.tokenizer", tokenizer))
    for key, variant in space.model_variants.items():
        named.append((f"model_variants.{key}.model", variant.model))
        if variant.tokenizer is not None:
            named.append((f"model_variants.{key}.tokenizer", variant.tokenizer))
    return [f"{field}: {value}: {problem}" for field, value in named if (problem := _model_problem(value))]


def _model_problem(value: str) -> str | None:
    if looks_like_hub_id(value):
        try:
            model_files_dir(value)  # its config files cached, or fetched now (memoized for the trials)
        except HubModelError as exc:
            return str(exc)
        return None
    return None if Path(value).expanduser().exists() else "no such file or folder"


def require_space_models(space: SearchSpace) -> None:
    """`require_model_files` for a search space: its model and each quantization variant (and its tokenizer)."""
    models = [space.engine_base.model]
    for variant in space.model_variants.values():
        models += [variant.model, *([variant.tokenizer] if variant.tokenizer else [])]
    require_model_files(models)
