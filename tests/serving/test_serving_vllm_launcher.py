"""`build_vllm_argv` and the vLLM environment: what `autotune serve --engine vllm` hands to vLLM."""

from __future__ import annotations

import json
import os
from pathlib import Path

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from serving.engines.vllm_launcher import MIDDLEWARE_PATH, build_vllm_argv, vllm_environment, write_config_json


def tuned(**serving: object) -> TunedConfig:
    return TunedConfig(
        engine_config=EngineConfig(
            model="/models/qwen3-vl-4b-instruct",
            max_num_seqs=256,
            kv_cache_dtype="fp8",
            enable_prefix_caching=False,
            preprocessing_workers=2,
            mm_processor_cache_gb=0,
            env={"VLLM_USE_FLASHINFER_SAMPLER": "1", "EXTRA": "x"},
        ),
        serving=ServingSettings(**serving),  # type: ignore[arg-type]
    )


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_argv_runs_vllm_serve_with_the_engine_args_and_our_middleware() -> None:
    config = tuned(host="0.0.0.0", port=8123)
    argv = build_vllm_argv(config, config.serving)
    assert argv[:3] == ["vllm", "serve", "/models/qwen3-vl-4b-instruct"]
    assert argv[3 : 3 + len(config.engine_config.to_vllm_cli_args())] == config.engine_config.to_vllm_cli_args()
    assert flag_value(argv, "--host") == "0.0.0.0" and flag_value(argv, "--port") == "8123"
    assert flag_value(argv, "--middleware") == MIDDLEWARE_PATH
    assert flag_value(argv, "--max-num-seqs") == "256" and flag_value(argv, "--kv-cache-dtype") == "fp8"
    assert flag_value(argv, "--renderer-num-workers") == "2"
    assert "--no-enable-prefix-caching" in argv
    assert "--api-key" not in argv and "--allowed-media-domains" not in argv


def test_argv_carries_the_host_allow_list_but_never_the_key() -> None:
    config = tuned(api_key="sekret", allowed_image_hosts=["images.example.com", "cdn.example.org"])
    argv = build_vllm_argv(config, config.serving)
    assert "--api-key" not in argv and "sekret" not in argv  # readable by anyone in the process list
    assert vllm_environment(config, "/tmp/c.json")["VLLM_API_KEY"] == "sekret"
    start = argv.index("--allowed-media-domains") + 1
    assert argv[start : start + 2] == ["images.example.com", "cdn.example.org"]


def test_middleware_is_importable_by_path_without_vllm() -> None:
    module_path, name = MIDDLEWARE_PATH.rsplit(".", 1)
    module = __import__(module_path, fromlist=[name])
    assert isinstance(getattr(module, name), type)


def test_environment_defaults_yield_to_the_config_env() -> None:
    config = tuned(api_key="sekret", image_fetch_timeout_s=2.5)
    env = vllm_environment(config, "/tmp/config.json")
    assert env["VLLM_USE_FLASHINFER_SAMPLER"] == "1"  # the config's env wins
    assert env["EXTRA"] == "x"
    assert env["AUTOTUNE_CONFIG_JSON"] == "/tmp/config.json"
    assert env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    assert env["VLLM_IMAGE_FETCH_TIMEOUT"] == "3"
    assert env["AUTOTUNE_API_KEY"] == "sekret"
    assert vllm_environment(tuned(), "/x")["VLLM_USE_FLASHINFER_SAMPLER"] == "1"
    no_env = TunedConfig(engine_config=EngineConfig(model="/m"))
    assert vllm_environment(no_env, "/x")["VLLM_USE_FLASHINFER_SAMPLER"] == "0"


def test_config_json_masks_the_key_and_is_private() -> None:
    path = Path(write_config_json(tuned(api_key="sekret")))
    try:
        text = path.read_text()
        assert "sekret" not in text
        document = json.loads(text)
        assert document["engine"] == "vllm" and document["simulated"] is False
        assert os.stat(path).st_mode & 0o077 == 0
    finally:
        path.unlink()


def test_media_limits_with_a_profiling_size_reach_vllm_as_its_json_and_count_as_items() -> None:
    engine = EngineConfig(model="/m", limit_mm_per_prompt={"image": {"count": 2, "width": 448, "height": 448}, "video": 0})
    limits = json.loads(flag_value(engine.to_vllm_cli_args(), "--limit-mm-per-prompt"))
    # vLLM 0.24's MultiModalConfig.limit_per_prompt format (checked against its parser): count + dummy item size
    assert limits == {"image": {"count": 2, "width": 448, "height": 448}, "video": 0}
    assert engine.mm_item_limit("image") == 2 and engine.mm_item_limit("video") == 0 and engine.mm_item_limit("audio") is None
    plain = EngineConfig(model="/m", limit_mm_per_prompt={"image": 1})
    assert json.loads(flag_value(plain.to_vllm_cli_args(), "--limit-mm-per-prompt")) == {"image": 1}
