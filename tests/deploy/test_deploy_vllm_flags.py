"""autotune vllm-flags (autotune.deploy.vllm_flags_source): the options of `vllm serve` read from vLLM's source, as the shipped list was made."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from autotune.config import EngineKind
from autotune.deploy.vllm_export import FLAGS_RESOURCE, known_flags
from autotune.deploy.vllm_flags_source import flags_listing
from autotune.space import InvalidTrialConfig, load_search_space

ARG_UTILS = '''
import argparse
from dataclasses import dataclass

@dataclass
class EngineArgs:
    model: str = "m"
    enable_prefix_caching: bool | None = None
    max_num_seqs: int | None = None
    trust_remote_code: bool = False
    hf_token: bool | str | None = None

    @staticmethod
    def add_cli_args(parser):
        group = parser.add_argument_group("x")
        group.add_argument("--model", **model_kwargs["model"])
        group.add_argument("--enable-prefix-caching", **{**cache_kwargs["enable_prefix_caching"], "default": None})
        group.add_argument("--max-num-seqs", **scheduler_kwargs["max_num_seqs"])
        group.add_argument("--trust-remote-code", **model_kwargs["trust_remote_code"])
        group.add_argument("--hf-token", **model_kwargs["hf_token"])
        group.add_argument("--enable-lora", action=argparse.BooleanOptionalAction)
        return parser
'''
CLI_ARGS = '''
from dataclasses import dataclass

class BaseFrontendArgs:
    chat_template: str | None = None
    enable_auto_tool_choice: bool = False

@dataclass
class FrontendArgs(BaseFrontendArgs):
    host: str | None = None
    port: int = 8000

def make_arg_parser(parser):
    parser.add_argument("--api-server-count", "-asc", type=int)
    parser.add_argument("--headless", action="store_true")
    return parser
'''


def test_the_generator_reads_explicit_options_dataclass_fields_and_boolean_forms(tmp_path: Path) -> None:
    package = tmp_path / "vllm"
    (package / "engine").mkdir(parents=True)
    (package / "entrypoints" / "openai").mkdir(parents=True)
    (package / "engine" / "arg_utils.py").write_text(ARG_UTILS)
    (package / "entrypoints" / "openai" / "cli_args.py").write_text(CLI_ARGS)
    (package / "_version.py").write_text('__version__ = "9.9.9"\n')
    listing = flags_listing(tmp_path)
    assert "vLLM 9.9.9" in listing.splitlines()[0]
    flags = [line for line in listing.splitlines() if line.startswith("--")]
    assert flags == sorted([
        "--model", "--enable-prefix-caching", "--no-enable-prefix-caching", "--max-num-seqs", "--trust-remote-code",
        "--no-trust-remote-code", "--hf-token", "--enable-lora", "--no-enable-lora", "--chat-template",
        "--enable-auto-tool-choice", "--no-enable-auto-tool-choice", "--host", "--port", "--api-server-count", "--headless",
    ])  # --hf-token (bool | str | None) takes an optional value: no --no- form; --headless is store_true


def test_the_shipped_list_has_the_options_autotune_passes() -> None:
    flags = known_flags()
    assert len(flags) > 300
    for flag in ("--renderer-num-workers", "--kv-cache-memory-bytes", "--no-enable-prefix-caching", "--no-enable-chunked-prefill",
                 "--no-async-scheduling", "--middleware", "--allowed-media-domains", "--api-server-count", "--config"):
        assert flag in flags


@pytest.mark.skipif(not os.environ.get("VLLM_WHEEL"), reason="set VLLM_WHEEL to a vllm-0.24.0 wheel or source folder")
def test_the_shipped_list_is_what_the_generator_reads_from_vllm_0_24() -> None:
    generated = {line for line in flags_listing(Path(os.environ["VLLM_WHEEL"])).splitlines() if line.startswith("--")}
    assert generated == set(known_flags()), FLAGS_RESOURCE



SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("space_file", SPACES, ids=[p.stem for p in SPACES])
def test_every_lever_of_a_shipped_vllm_space_is_a_vllm_0_24_option(space_file: Path) -> None:
    space = load_search_space(space_file)
    if space.engine is not EngineKind.VLLM:
        pytest.skip("not a vLLM space")
    flags = known_flags()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [space.defaults_config()]
    for _ in range(40):  # random draws: every choice of a small space, most of a large one
        trial = study.ask()
        try:
            configs.append(space.suggest(trial))
        except InvalidTrialConfig:
            pass
        study.tell(trial, 0.0)
    seen: set[str] = set()
    for config in configs:
        argv = config.to_vllm_cli_args(kv_cache_memory_bytes=2**30 if config.engines_per_gpu > 1 else None)
        seen.update(arg.split("=", 1)[0] for arg in argv if arg.startswith("--"))
    assert seen - flags == set(), f"{space_file.name}: options vLLM 0.24 does not have"
    if space.name == "qwen3-vl-4b-cpu-levers":
        assert {"--stream-interval", "--api-server-count", "--renderer-num-workers", "--async-scheduling"} <= seen
