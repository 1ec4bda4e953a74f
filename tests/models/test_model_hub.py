"""Hugging Face hub ids as models (`autotune.hub`), with no network: a local folder, an id resolved from a
pre-populated hub cache (HF_HUB_OFFLINE), and the one message when the hub cannot be reached."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers.servers import MODEL_DIR, running_server
from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects
from PIL import Image

from autotune.config import EngineConfig
from autotune.hub import CONFIG_FILES, HubModelError, looks_like_hub_id, model_files_dir
from autotune.memory_model import ModelInfo
from autotune.space import TrialSettings
from autotune.tune.feasibility import check_feasibility
from serving.tokens import VisionGrid, image_tokens

REPO_ID = "Qwen/Qwen3-VL-4B-Instruct"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ROOT = Path(__file__).resolve().parents[2]
# A cached preprocessor config that differs from the skeleton's (patch 14 instead of 16): a server that
# counts image tokens with it proves it read the cache, not a default or the local skeleton.
CACHED_PATCH_SIZE = 14


def _fake_hub_cache(root: Path) -> Path:
    """A Hugging Face cache as `huggingface_hub` lays it out, holding the model's config files (no weights)."""
    repo = root / f"models--{REPO_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copyfile(Path(MODEL_DIR) / "config.json", snapshot / "config.json")
    processor = json.loads((Path(MODEL_DIR) / "preprocessor_config.json").read_text())
    processor["patch_size"] = CACHED_PATCH_SIZE
    (snapshot / "preprocessor_config.json").write_text(json.dumps(processor))
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    snapshot = _fake_hub_cache(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_hub_env(tmp_path: Path) -> dict[str, str]:
    """An empty cache and a hub endpoint on a loopback port nobody listens on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_CACHE=str(tmp_path / "empty-cache"), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


def test_hub_ids_are_told_from_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert looks_like_hub_id(REPO_ID)
    assert looks_like_hub_id("org/model-v1.5_x")
    for path in ("./Qwen/x", "../models/x", "/models/x", "~/x", "a/b/c", "qwen3-vl", "a/../b"):
        assert not looks_like_hub_id(path), path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "local").mkdir(parents=True)
    assert not looks_like_hub_id("models/local")  # an existing folder is a folder, even shaped like an id


def test_a_local_folder_is_read_in_place() -> None:
    assert model_files_dir(MODEL_DIR) == Path(MODEL_DIR)
    assert ModelInfo.from_model_dir(MODEL_DIR).num_layers == 36


def test_only_config_files_are_fetched_never_weights() -> None:
    repo_files = [
        "config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json",
        "model-00001-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "model.pt",
        "onnx/model.onnx", "README.md", ".gitattributes",
    ]
    fetched = set(filter_repo_objects(repo_files, allow_patterns=list(CONFIG_FILES)))
    assert fetched == {"config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json"}


def test_an_id_resolves_from_the_hub_cache_offline_and_the_memory_model_reads_it(offline_cache: Path) -> None:
    assert model_files_dir(REPO_ID) == offline_cache
    assert ModelInfo.from_model_dir(REPO_ID) == ModelInfo.from_model_dir(MODEL_DIR)
    assert VisionGrid.from_model_dir(REPO_ID).patch_size == CACHED_PATCH_SIZE
    # The tuner's memory pre-check judges a hub id from the cached config.json (no estimate without it).
    reason, estimate = check_feasibility(
        EngineConfig(model=REPO_ID, gpu_memory_utilization=0.9, max_model_len=8192), TrialSettings(), 80.0
    )
    assert reason is None and estimate is not None and estimate.weights_gib > 5


def test_offline_without_a_cached_copy_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubModelError) as caught:
        model_files_dir(REPO_ID)
    message = str(caught.value)
    assert REPO_ID in message and "HF_HUB_OFFLINE is set" in message and "local model folder" in message


def _png_data_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_simulated_engine_serves_a_hub_id_from_the_cache(offline_cache: Path) -> None:
    """`autotune serve --model ORG/NAME` offline: the engine counts image tokens with the cached processor config."""
    env = {"HF_HUB_CACHE": os.environ["HF_HUB_CACHE"], "HF_HUB_OFFLINE": "1"}
    with running_server(["--model", REPO_ID, "--engine", "simulated"], env=env) as url:
        models = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
        assert [m["root"] for m in models] == [REPO_ID]
        name = models[0]["id"]

        def prompt_tokens(content: list[dict[str, object]]) -> int:
            body = {"model": name, "messages": [{"role": "user", "content": content}], "max_tokens": 2}
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            assert reply.status_code == 200, reply.text
            return int(reply.json()["usage"]["prompt_tokens"])

        text_only = prompt_tokens([{"type": "text", "text": "What is this?"}])
        with_image = prompt_tokens(
            [{"type": "image_url", "image_url": {"url": _png_data_url(640, 480)}}, {"type": "text", "text": "What is this?"}]
        )
    cached_grid = VisionGrid.from_model_dir(offline_cache)
    assert cached_grid.patch_size == CACHED_PATCH_SIZE
    expected = image_tokens(480, 640, cached_grid)
    assert expected != image_tokens(480, 640, VisionGrid.from_model_dir(MODEL_DIR))  # the test can tell them apart
    assert with_image - text_only == expected + 2  # + <|vision_start|> and <|vision_end|>


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_an_unreachable_hub_is_one_clear_message_for_serve_and_tune(tmp_path: Path) -> None:
    env = _unreachable_hub_env(tmp_path)
    served = _cli(["serve", "--model", REPO_ID, "--engine", "simulated", "--port", "0"], env, tmp_path)
    assert served.returncode == 2, served.stderr
    assert "Traceback" not in served.stderr
    assert served.stderr.count("error:") == 1
    flat = " ".join(served.stderr.split())
    assert f"model '{REPO_ID}' is not a local folder" in flat and "could not be reached" in flat
    assert "Give a local model folder" in flat and "never weights" in flat

    space = REPO_ROOT / "search_spaces" / "simulated-quick.yaml"
    experiments = tmp_path / "experiments"
    tuned = _cli(["tune", str(space), "--model", REPO_ID, "--experiments-dir", str(experiments), "--no-mlflow"], env, tmp_path)
    assert tuned.returncode == 2, tuned.stderr
    assert "could not be reached" in " ".join(tuned.stderr.split()) and "Traceback" not in tuned.stderr
    assert not experiments.exists()  # refused before the study was created
