"""Where vLLM 0.24 imports (the GPU host): `autotune export --to vllm` output parsed by vLLM's own `vllm serve` parser.

The command line of serve.sh and `vllm serve --config vllm-config.yaml` must give vLLM the same arguments, and the
list of options shipped for the CPU check (autotune/deploy/vllm_serve_flags/) must be the parser's own.
Marked `gpu` (skipped without an NVIDIA GPU, and without vLLM); it starts no server.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autotune import GPU_INSTALL_HINT
from autotune.config import EngineConfig, ServingSettings, TunedConfig
from autotune.deploy.vllm_export import CONFIG_FILE, export_vllm, known_flags, write_vllm_export

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def parser():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(f"vLLM is not installed ({GPU_INSTALL_HINT})")
    from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))


def _tuned() -> TunedConfig:
    engine = EngineConfig(
        model="/models/qwen3-vl-4b", served_model_name="qwen3-vl-4b", load_format="dummy", max_model_len=8192,
        max_num_seqs=256, enable_prefix_caching=False, enable_chunked_prefill=True, max_num_batched_tokens=4096,
        gpu_memory_utilization=0.9, kv_cache_dtype="fp8", quantization="fp8", async_scheduling=True,
        preprocessing_workers=2, mm_processor_cache_gb=0, api_server_count=4, mm_processor_kwargs={"use_fast": True},
        limit_mm_per_prompt={"image": {"count": 1, "width": 448, "height": 448}, "video": 0},
        extra_engine_args={"compilation_config": {"cudagraph_mm_encoder": True}}, engines_per_gpu=2,
    )
    return TunedConfig(engine_config=engine, serving=ServingSettings(allowed_image_hosts=["example.com", "cdn.example.com"]))


def test_command_line_and_config_file_parse_to_the_same_vllm_arguments(parser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tuned = _tuned()
    exported = export_vllm(tuned)
    write_vllm_export(exported, tuned, tmp_path, source="best.yaml")
    from_flags = vars(parser.parse_args([exported.model, *exported.flags]))
    from_file = vars(parser.parse_args(["--config", str(tmp_path / CONFIG_FILE)]))
    for args in (from_flags, from_file):
        args.pop("config", None)
        args["model"] = args.pop("model_tag", None) or args.get("model")
    assert from_flags == from_file
    assert from_flags["enable_prefix_caching"] is False and from_flags["renderer_num_workers"] == 2
    assert from_flags["allowed_media_domains"] == ["example.com", "cdn.example.com"]


def test_the_shipped_option_list_is_the_parsers(parser) -> None:  # type: ignore[no-untyped-def]
    options = {option for action in parser._actions for option in action.option_strings if option.startswith("--")}
    assert options - {"--help"} == set(known_flags())  # argparse's own --help is no vLLM setting
