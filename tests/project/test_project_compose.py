"""docker-compose.yml runs as written: Compose accepts it, and every path a worker uses resolves, through the
worker's mounts, to a file of this checkout that the container sees; each worker's one GPU is index 0 inside.

Compose normalizes the file (`docker compose config`, or Debian's `docker-compose config`, which
`scripts/ci-services.sh` installs); no daemon is needed and nothing is pulled or built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from autotune.space import load_search_space

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-0", "worker-1")
_OURS = ("MODEL", "MODELS_DIR", "STUDY", "TRIALS_PER_WORKER", "OPTUNA_DB_PASSWORD", "MLFLOW_DB_PASSWORD")


def _compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if os.environ.get("CI"):  # CI installs it (scripts/ci-services.sh): a skip there would hide the test
        pytest.fail("neither `docker compose` nor `docker-compose` found (scripts/ci-services.sh installs docker-compose)")
    pytest.skip("neither `docker compose` nor `docker-compose` here (run scripts/ci-services.sh)")


def compose_config(**env: str) -> dict[str, Any]:
    """The file as Compose normalizes it, with these variables set (and ours unset otherwise)."""
    clean = {k: v for k, v in os.environ.items() if k not in _OURS}
    ran = subprocess.run(
        [*_compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    config = yaml.safe_load(ran.stdout)
    assert isinstance(config, dict)
    return config


def mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host folder, container folder) of each bind mount (short `src:dst[:mode]` or long form)."""
    found: list[tuple[Path, PurePosixPath]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type", "bind") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith(("/", ".")):
            found.append((Path(source), PurePosixPath(target)))
    return found


def host_path(service: dict[str, Any], inside: str) -> Path:
    """Where a path that the worker's container uses (relative to its working_dir) lies on the host."""
    path = PurePosixPath(service["working_dir"]) / inside
    for source, target in sorted(mounts(service), key=lambda m: -len(m[1].parts)):
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{inside} ({path}) is in no mount of the container: {mounts(service)}")


def inside_a_mount(service: dict[str, Any], host: Path) -> bool:
    return any(host.resolve() == source.resolve() or source.resolve() in host.resolve().parents for source, _ in mounts(service))


def worker_paths(service: dict[str, Any]) -> tuple[Path, Path | None]:
    """The host files behind the worker's search space and its `--model` (None: the space's own model)."""
    command = service["command"]
    assert service["entrypoint"] == ["autotune", "tune"]
    model = next((arg.removeprefix("--model=") for arg in command if arg.startswith("--model=")), None)
    return host_path(service, command[0]), None if model is None else host_path(service, model)


def test_compose_accepts_the_file_and_each_worker_pins_one_gpu_seen_as_index_0() -> None:
    config = compose_config()
    services = config["services"]
    assert set(WORKERS) <= services.keys() and {"optuna-db", "mlflow-db", "mlflow"} <= services.keys()
    reserved: list[str] = []
    for name in WORKERS:
        service = services[name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and len(device["device_ids"]) == 1
        reserved += device["device_ids"]
        # the container sees its one reserved GPU only, as index 0 (CUDA and NVML number from there)
        assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0", name
        assert (Path(service["build"]["context"]) / "Dockerfile").is_file()
    assert sorted(reserved) == ["0", "1"]


def test_every_path_a_worker_uses_is_a_file_its_container_sees() -> None:
    services = compose_config()["services"]
    for name in WORKERS:
        service = services[name]
        space_file, model = worker_paths(service)
        assert space_file.is_file(), (name, space_file)
        space = load_search_space(space_file, model=None if model is None else str(model))
        assert (Path(space.engine_base.model) / "config.json").is_file(), (name, space.engine_base.model)
        assert Path(space.engine_base.model).resolve() == (ROOT / "search_spaces" / "models" / "qwen3-vl-4b-instruct").resolve()
        used = [Path(space.engine_base.model)]
        for variant in space.model_variants.values():
            used += [Path(variant.model), *([Path(variant.tokenizer)] if variant.tokenizer else [])]
        for path in used:
            assert path.is_dir() and inside_a_mount(service, path), (name, path)
        assert (ROOT / "experiments").resolve() in [s.resolve() for s, t in mounts(service) if str(t).endswith("/experiments")]


def test_another_model_folder_is_reached_through_the_models_mount(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "search_spaces" / "models" / "qwen3-vl-4b-instruct", models / "mine")
    services = compose_config(MODELS_DIR=str(models), MODEL="/models/mine")["services"]
    for name in WORKERS:
        _, model = worker_paths(services[name])
        assert model is not None and model == models / "mine" and (model / "config.json").is_file()
