"""autotune.model_files: the shipped skeleton's packed tokenizer is unpacked once into the cache, and what reads a
model folder (vLLM's arguments, the simulated engine's token counter) reads that copy."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from helpers.servers import MODEL_DIR

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from autotune.model_files import packed_files, usable_model_dir
from serving.engines.vllm_launcher import build_vllm_argv
from serving.tokens import HFTokenCounter, make_token_counter

SKELETON_FILES = {
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
    "video_preprocessor_config.json", "tokenizer.json.xz",
}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(root))
    return root


def test_the_shipped_skeleton_unpacks_once_into_the_cache_and_stays_packed_in_the_checkout(cache: Path) -> None:
    skeleton = Path(MODEL_DIR)
    assert {p.name for p in skeleton.iterdir()} == SKELETON_FILES
    folder = Path(usable_model_dir(MODEL_DIR))
    assert folder.parent == cache / "models" and folder.name.startswith("qwen3-vl-4b-instruct-")
    assert {p.name for p in folder.iterdir()} == SKELETON_FILES - {"tokenizer.json.xz"} | {"tokenizer.json"}
    for name in SKELETON_FILES - {"tokenizer.json.xz"}:
        assert (folder / name).read_bytes() == (skeleton / name).read_bytes()
    with lzma.open(skeleton / "tokenizer.json.xz") as packed:
        assert (folder / "tokenizer.json").read_bytes() == packed.read()
    assert not (skeleton / "tokenizer.json").exists()  # the checkout is not written to
    built = (folder / "tokenizer.json").stat().st_mtime_ns
    assert usable_model_dir(MODEL_DIR) == str(folder) and (folder / "tokenizer.json").stat().st_mtime_ns == built
    assert [p.name for p in cache.joinpath("models").iterdir()] == [folder.name]  # no temporary folder left


def test_the_token_counter_reads_the_real_tokenizer(cache: Path) -> None:
    pytest.importorskip("tokenizers")
    counter = make_token_counter(MODEL_DIR)
    assert isinstance(counter, HFTokenCounter)
    assert counter.count("<|image_pad|>") == 1  # a Qwen3-VL special token, not ~4 characters a token


def test_folders_without_packed_files_and_hub_ids_are_used_as_they_are(tmp_path: Path, cache: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    (plain / "tokenizer.json").write_text("{}")
    (plain / "tokenizer.json.xz").write_bytes(lzma.compress(b"older"))  # NAME present: NAME.xz is not needed
    assert packed_files(plain) == []
    assert usable_model_dir(str(plain)) == str(plain)
    assert usable_model_dir("Qwen/Qwen3-VL-4B-Instruct") == "Qwen/Qwen3-VL-4B-Instruct"
    assert not cache.exists()


def test_an_edited_folder_gets_a_new_copy(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "tokenizer.json.xz").write_bytes(lzma.compress(b'{"v": 1}'))
    first = Path(usable_model_dir(model))
    (model / "config.json").write_text('{"a": 2}')
    second = Path(usable_model_dir(model))
    assert first != second
    assert (second / "config.json").read_text() == '{"a": 2}' and (second / "tokenizer.json").read_text() == '{"v": 1}'


def test_vllm_reads_the_unpacked_model_and_tokenizer_under_the_configured_name(cache: Path) -> None:
    engine = EngineConfig(model=MODEL_DIR, extra_engine_args={"tokenizer": MODEL_DIR})
    argv = build_vllm_argv(TunedConfig(engine_config=engine), ServingSettings())
    unpacked = usable_model_dir(MODEL_DIR)
    assert argv[2] == unpacked and argv[argv.index("--tokenizer") + 1] == unpacked
    assert argv[argv.index("--served-model-name") + 1] == "qwen3-vl-4b-instruct"  # the folder's name, not the cache's
    assert engine.model == MODEL_DIR  # the config (and so best.yaml, /autotune/config) keeps the project's path
