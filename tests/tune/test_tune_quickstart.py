"""The one-line start: `autotune tune --model --workload --slo` builds a space for the model and the GPU, writes it
beside the study and runs it; what it cannot size is refused with one message naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from autotune.bench.schemas import SLO
from autotune.config import EngineConfig, EngineKind
from autotune.errors import ConfigError
from autotune.memory_model import ModelInfo, estimate_memory
from autotune.observe.gpu import GpuFacts
from autotune.space import load_search_space, parse_search_space
from autotune.tune.quickstart import ACTIVATION_RESERVE_GIB, UTILIZATIONS, build_space, quickstart

# Qwen3-VL-4B-Instruct's config.json, the parts the memory model and the space builder read
QWEN3_VL_4B: dict[str, Any] = {
    "model_type": "qwen3_vl",
    "tie_word_embeddings": True,
    "text_config": {
        "head_dim": 128, "hidden_size": 2560, "intermediate_size": 9728, "max_position_embeddings": 262144,
        "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "vocab_size": 151936,
    },
    "vision_config": {
        "deepstack_visual_indexes": [5, 11, 17], "depth": 24, "hidden_size": 1024, "in_channels": 3,
        "intermediate_size": 4096, "out_hidden_size": 2560, "patch_size": 16, "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}
TEXT_MODEL: dict[str, Any] = {
    "model_type": "qwen3", "head_dim": 128, "hidden_size": 2048, "intermediate_size": 6144, "max_position_embeddings": 4096,
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "vocab_size": 151936,
}
H100 = GpuFacts(name="H100", memory_gib=79.19, compute_capability=(9, 0))
SLO_2S = SLO(ttft_ms=2000, tpot_ms=50)


def _model(tmp_path: Path, config: dict[str, Any], name: str = "qwen3-vl-4b") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _build(tmp_path: Path, config: dict[str, Any] = QWEN3_VL_4B, gpu: GpuFacts = H100, workload: str = "vlm-chat",
           engine: EngineKind = EngineKind.VLLM) -> dict[str, Any]:
    model = _model(tmp_path, config)
    return build_space(model=str(model), workload=workload, slo=SLO_2S, engine=engine, study="s", gpu=gpu)


def test_reference_levers_on_an_h100_and_the_space_loads(tmp_path: Path) -> None:
    data = _build(tmp_path)
    space = parse_search_space(data)
    assert set(space.parameters) == set(load_search_space(Path(__file__).resolve().parents[2] / "search_spaces" / "qwen3-vl-4b.yaml").parameters)
    assert data["engine_base"]["limit_mm_per_prompt"] == {"image": {"count": 1, "width": 448, "height": 448}, "video": 0}
    assert space.objective.kind == "slo_rate" and space.load.mode == "slo_rate" and space.slo == SLO_2S
    assert space.parameters["engines_per_gpu"].choices == [1, 2, 3]
    reference = yaml.safe_load((Path(__file__).resolve().parents[2] / "search_spaces" / "qwen3-vl-4b.yaml").read_text())
    assert data["load"] == reference["load"] and data["objective"] == reference["objective"]
    for name in ("warmup_requests", "measure_timeout_s", "activation_reserve_gib"):
        assert data["trial"][name] == reference["trial"][name], name
    for name, spec in data["parameters"].items():  # the reference's choices where the GPU allows them all
        assert spec == reference["parameters"][name], name


def test_a_small_gpu_keeps_only_the_memory_shares_that_leave_a_kv_cache(tmp_path: Path) -> None:
    gpu = GpuFacts(name="A4000", memory_gib=16.0, compute_capability=(8, 6))
    data = _build(tmp_path, gpu=gpu)
    kept = data["parameters"]["gpu_memory_utilization"]["choices"]
    dropped = [u for u in UTILIZATIONS if u not in kept]
    assert kept and dropped  # 16 GiB: ~8 GiB of weights leave a KV cache at the higher shares only
    info = ModelInfo.from_model_dir(tmp_path / "qwen3-vl-4b")

    def kv_tokens(utilization: float) -> int:
        engine = EngineConfig(model="m", max_model_len=8192, gpu_memory_utilization=utilization)
        return estimate_memory(engine, info, gpu.memory_gib, ACTIVATION_RESERVE_GIB).kv_capacity_tokens

    assert min(kv_tokens(u) for u in kept) >= 8192 > max(kv_tokens(u) for u in dropped)
    assert "engines_per_gpu" not in data["parameters"]  # two engines' weights do not fit
    # sm_86 has no fp8: neither fp8 weights nor an fp8 KV cache is offered
    assert "quantization" not in data["parameters"] and "kv_cache_dtype" not in data["parameters"]


def test_a_text_model_gets_no_vision_levers(tmp_path: Path) -> None:
    data = _build(tmp_path, config=TEXT_MODEL, workload="text-chat")
    vision = {"preprocessing_workers", "mm_processor_cache_gb", "mm_processor_kwargs.use_fast",
              "extra_engine_args.compilation_config.cudagraph_mm_encoder"}
    assert not vision & set(data["parameters"]) and "limit_mm_per_prompt" not in data["engine_base"]
    assert data["engine_base"]["max_model_len"] == 4096  # the model's own context is below 8192
    parse_search_space(data)


def test_a_trace_workload_is_replayed_and_sizes_the_image_limit(tmp_path: Path) -> None:
    data = _build(tmp_path, workload="vlm-trace-sample")
    assert data["load"]["mode"] == "replay" and data["objective"] == "goodput"
    assert data["engine_base"]["limit_mm_per_prompt"] == {"image": {"count": 2, "width": 1280, "height": 720}, "video": 0}
    parse_search_space(data)


@pytest.mark.parametrize(
    ("config", "gpu", "message"),
    [
        ({**QWEN3_VL_4B, "text_config": {k: v for k, v in QWEN3_VL_4B["text_config"].items() if k != "hidden_size"}},
         H100, "cannot size it: " ),
        (QWEN3_VL_4B, GpuFacts(name="T4", memory_gib=8.0), "GiB of 16-bit weights, a 4 GiB reserve and one 8192-token sequence do not fit T4 (8.0 GiB)"),
    ],
)
def test_a_model_it_cannot_size_or_fit_is_refused_naming_why(tmp_path: Path, config: dict[str, Any], gpu: GpuFacts, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _build(tmp_path, config=config, gpu=gpu)
    assert message in str(refused.value)
    if "cannot size" in message:
        assert "text_config.hidden_size: missing" in str(refused.value)


def test_a_folder_without_config_json_and_an_unreachable_hub_id_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config.json: no such file \(the one-line start sizes the model from its config.json\)"):
        build_space(model=str(tmp_path / "empty"), workload="vlm-chat", slo=SLO_2S, engine=EngineKind.VLLM, study="s", gpu=H100)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network: the hub cannot be asked
    with pytest.raises(ConfigError, match="'someorg/somemodel': not a local folder, and its config.json could not be fetched"):
        build_space(model="someorg/somemodel", workload="vlm-chat", slo=SLO_2S, engine=EngineKind.VLLM, study="s", gpu=H100)


def test_no_slo_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path, QWEN3_VL_4B)
    with pytest.raises(ConfigError, match="needs at least one --slo"):
        build_space(model=str(model), workload="vlm-chat", slo=SLO(), engine=EngineKind.VLLM, study="s", gpu=H100)


def _tune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", "tune", *args], capture_output=True, text=True, timeout=240, check=False,
        cwd=cwd, env=env,
    )


def test_one_line_start_on_the_simulated_engine_writes_its_space_and_runs(tmp_path: Path) -> None:
    model = _model(tmp_path, QWEN3_VL_4B)
    line = ["--model", str(model), "--workload", "vlm-chat", "--slo", "ttft_ms=2000", "--slo", "tpot_ms=50",
            "--engine", "simulated", "--experiments-dir", "exp", "--no-mlflow"]
    done = _tune(*line, "--n-trials", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    study = tmp_path / "exp" / "qwen3-vl-4b-vlm-chat"
    space_file = study / "space.yaml"
    assert f"search space {space_file.relative_to(tmp_path)}" in " ".join(done.stdout.split())
    space = load_search_space(space_file)
    assert space.engine is EngineKind.SIMULATED and space.name == "qwen3-vl-4b-vlm-chat"
    assert (study / "best.yaml").is_file() and "SIMULATED" in done.stdout
    assert len(yaml.safe_load((study / "best.yaml").read_text())["engine_config"]) > 1
    # the same line again finds the same space (the study resumes); an edited space is not overwritten
    again = quickstart(str(model), "vlm-chat", ["ttft_ms=2000", "tpot_ms=50"], EngineKind.SIMULATED, None, tmp_path / "exp")
    assert again == (tmp_path / "exp" / "qwen3-vl-4b-vlm-chat" / "space.yaml", "qwen3-vl-4b-vlm-chat")
    space_file.write_text(space_file.read_text().replace("n_trials: 10", "n_trials: 12"))
    with pytest.raises(ConfigError, match="exists and differs from the space these options build .*: run `autotune tune "):
        quickstart(str(model), "vlm-chat", ["ttft_ms=2000", "tpot_ms=50"], EngineKind.SIMULATED, None, tmp_path / "exp")


def test_one_line_options_with_a_space_file_or_without_a_model_are_refused(tmp_path: Path) -> None:
    with_file = _tune("search_spaces/simulated-quick.yaml", "--workload", "vlm-chat", cwd=Path(__file__).resolve().parents[2])
    assert with_file.returncode == 2 and "--workload and --slo build a space when no SPACE.yaml is given" in with_file.stderr
    no_model = _tune("--workload", "vlm-chat", "--slo", "ttft_ms=100", "--engine", "simulated", cwd=tmp_path)
    assert no_model.returncode == 2 and "needs SPACE.yaml, or --model to build one" in no_model.stderr
