"""`autotune serve` validates its config at start-up and says clearly what is wrong."""

from __future__ import annotations

import subprocess
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from autotune import DISTRIBUTION, GPU_INSTALL_HINT
from autotune.config import EngineConfig, EngineKind, TunedConfig, load_tuned_config
from autotune.errors import ConfigError, EngineUnavailableError
from helpers.servers import MODEL_DIR, running_server_process
from serving.engines.vllm_launcher import VllmBackend, vllm_available
from serving.launch import ServeOptions, resolve_tuned_config


def serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", "serve", *args], capture_output=True, text=True, timeout=60
    )


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_invalid_kv_cache_dtype_names_the_field_and_allowed_values(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "bad.yaml", {"engine": "simulated", "engine_config": {"model": MODEL_DIR, "kv_cache_dtype": "fp4"}}
    )
    result = serve_cli("--config", str(config), "--port", "0")
    assert result.returncode == 2
    assert "engine_config.kv_cache_dtype" in result.stderr
    assert "'auto'" in result.stderr and "'fp8'" in result.stderr and "fp4" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


def test_a_config_naming_a_model_folder_missing_here_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = TunedConfig(engine_config=EngineConfig(model="/root/models/qwen3-vl-4b-instruct")).write(tmp_path / "a.yaml")
    here = TunedConfig(engine_config=EngineConfig(model=MODEL_DIR)).write(tmp_path / "b.yaml")
    hub = TunedConfig(engine_config=EngineConfig(model="Qwen/Qwen3-VL-4B-Instruct")).write(tmp_path / "c.yaml")
    with caplog.at_level("WARNING", logger="autotune.config"):
        for path in (elsewhere, elsewhere, here, hub):
            load_tuned_config(path)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{elsewhere}: engine_config.model /root/models/qwen3-vl-4b-instruct does not exist on this machine" in warning
    assert "edit engine_config.model" in warning


def test_serving_a_config_whose_model_is_missing_says_which_file_and_path(tmp_path: Path) -> None:
    """The simulated engine serves without the folder (its profile holds the model's shape): the warning is all
    that tells the user that this best.yaml came from another machine."""
    path = TunedConfig(engine_config=EngineConfig(model="/gpu-host/models/m")).write(tmp_path / "best.yaml")
    with running_server_process(["--config", str(path), "--engine", "simulated"]) as server:
        log = server.log_tail(lines=200)
    assert log.count("does not exist on this machine") == 1 and f"{path}: engine_config.model /gpu-host/models/m" in log


def test_vllm_engine_without_vllm_is_a_clear_error() -> None:
    if vllm_available():
        pytest.skip("vLLM is installed here")
    result = serve_cli("--model", MODEL_DIR, "--port", "0")
    assert result.returncode == 2
    assert GPU_INSTALL_HINT in result.stderr and "--engine simulated" in result.stderr


def test_the_distribution_has_a_name_of_its_own_and_every_install_hint_uses_it() -> None:
    """"autotune" on the package index is an unrelated project: a hint must not send anyone there."""
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "vllm-autotune"
    assert project["scripts"] == {"autotune": "autotune.cli.main:main"}  # the command keeps its name
    assert "pip install -e '.[gpu]'" in GPU_INSTALL_HINT and DISTRIBUTION in GPU_INSTALL_HINT
    wrong = re.compile(r"(?<![\w-])autotune\[")  # `autotune[gpu]`, `autotune[deploy]`...: another project's extras
    sources = [root / "README.md", root / "Dockerfile", *[
        path for folder in ("autotune", "serving", "tests", "docs", "scripts", "deploy") for path in (root / folder).rglob("*")
        if path.suffix in (".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".sbatch") and path != Path(__file__)
    ]]
    assert [str(p) for p in sources if wrong.search(p.read_text(errors="replace"))] == []


def test_preprocessing_workers_need_the_cache_off(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "bad.yaml",
        {"engine": "simulated", "engine_config": {"model": MODEL_DIR, "preprocessing_workers": 4}},
    )
    with pytest.raises(ConfigError, match="mm_processor_cache_gb"):
        resolve_tuned_config(ServeOptions(config_path=config))
    fixed = write_yaml(
        tmp_path / "ok.yaml",
        {
            "engine": "simulated",
            "engine_config": {"model": MODEL_DIR, "preprocessing_workers": 4, "mm_processor_cache_gb": 0},
        },
    )
    assert resolve_tuned_config(ServeOptions(config_path=fixed)).engine_config.preprocessing_workers == 4


def test_needs_exactly_one_of_config_and_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_tuned_config(ServeOptions())
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_tuned_config(ServeOptions(config_path=tmp_path / "x.yaml", model=MODEL_DIR))


def test_model_alone_serves_vllm_defaults_and_overrides_apply() -> None:
    tuned = resolve_tuned_config(
        ServeOptions(model=MODEL_DIR, engine=EngineKind.SIMULATED, host="0.0.0.0", port=0, api_key="k")
    )
    assert tuned.engine_config.tuned_fields() == {}
    assert tuned.engine == EngineKind.SIMULATED
    assert tuned.provenance.study is None  # provenance says where the config came from, not what serves it
    assert (tuned.serving.host, tuned.serving.port) == ("0.0.0.0", 0)
    assert tuned.serving.api_key is not None and tuned.serving.api_key.get_secret_value() == "k"


def test_bad_override_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"serving\.port"):
        resolve_tuned_config(ServeOptions(model=MODEL_DIR, port=70000))


def test_masked_key_in_a_file_must_be_given_again(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "tuned.yaml",
        {"engine": "simulated", "engine_config": {"model": MODEL_DIR}, "serving": {"api_key": "**********"}},
    )
    with pytest.raises(ConfigError, match="AUTOTUNE_API_KEY"):
        resolve_tuned_config(ServeOptions(config_path=config))
    tuned = resolve_tuned_config(ServeOptions(config_path=config, api_key="real"))
    assert tuned.serving.api_key is not None and tuned.serving.api_key.get_secret_value() == "real"


def test_vllm_backend_checks_for_vllm_before_anything_else() -> None:
    if vllm_available():
        pytest.skip("vLLM is installed here")
    tuned = resolve_tuned_config(ServeOptions(model=MODEL_DIR))
    with pytest.raises(EngineUnavailableError, match="--engine simulated"):
        VllmBackend().run(tuned)
