"""`autotune export --to vllm|k8s`: flags raw vLLM 0.24 knows, a --config file that reads back as the same flags,
what raw vLLM cannot express named, secrets never written, Kubernetes objects valid against the schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig, load_tuned_config
from autotune.deploy.k8s_export import k8s_manifests, write_k8s_export
from autotune.deploy.vllm_export import (
    CONFIG_FILE, SCRIPT_FILE, export_vllm, flags_from_config, known_flags, parse_flags, same_flags, write_vllm_export,
)
from autotune.errors import ConfigError
from autotune.space import load_search_space

REPO = Path(__file__).resolve().parents[2]
SECRET = "hf_do-not-write-me-123"


def _tuned(**engine: Any) -> TunedConfig:
    base: dict[str, Any] = {
        "model": "/models/qwen3-vl-4b", "served_model_name": "qwen3-vl-4b", "load_format": "dummy", "max_model_len": 8192,
        "max_num_seqs": 256, "enable_prefix_caching": False, "enable_chunked_prefill": True, "max_num_batched_tokens": 4096,
        "gpu_memory_utilization": 0.9, "kv_cache_dtype": "fp8", "quantization": "fp8", "async_scheduling": True,
        "preprocessing_workers": 2, "mm_processor_cache_gb": 0, "api_server_count": 4,
        "mm_processor_kwargs": {"use_fast": True}, "limit_mm_per_prompt": {"image": {"count": 1, "width": 448, "height": 448}, "video": 0},
        "extra_engine_args": {"compilation_config": {"cudagraph_mm_encoder": True}}, "env": {"HF_TOKEN": "${HF_TOKEN}"},
    }
    return TunedConfig(engine_config=EngineConfig.model_validate({**base, **engine}))


def test_every_flag_is_a_vllm_0_24_option_and_the_config_file_reads_back_as_the_same_flags() -> None:
    exported = export_vllm(_tuned())
    names = [name for name, _ in parse_flags(exported.flags)]
    assert all("--" + name in known_flags() for name in names)
    config = {k: v for k, v in exported.config.items() if k != "model"}
    assert same_flags(flags_from_config(config), exported.flags) and exported.config["model"] == "/models/qwen3-vl-4b"
    # vLLM drops `key: false` from a config file: a flag turned off must be written as its --no- form
    assert config["no-enable-prefix-caching"] is True and "enable-prefix-caching" not in config
    assert config["compilation-config"] == {"cudagraph_mm_encoder": True}  # a mapping, passed on as JSON


def test_configs_sampled_from_the_reference_space_export_to_known_flags() -> None:
    space = load_search_space(REPO / "search_spaces" / "qwen3-vl-4b.yaml", model="/models/qwen3-vl-4b")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: set[str] = set()
    for _ in range(40):
        trial = study.ask()
        engine = space.suggest(trial)
        study.tell(trial, 0.0)
        exported = export_vllm(TunedConfig(engine_config=engine))
        seen |= {name for name, _ in parse_flags(exported.flags)}
        assert same_flags(flags_from_config({k: v for k, v in exported.config.items() if k != "model"}), exported.flags)
    assert {"no-enable-prefix-caching", "enable-prefix-caching", "renderer-num-workers", "kv-cache-dtype"} <= seen
    assert all("--" + name in known_flags() for name in seen)


def test_engines_per_gpu_is_named_with_what_it_needs_and_exported_as_one_engine() -> None:
    exported = export_vllm(_tuned(engines_per_gpu=2))
    flags = dict(parse_flags(exported.flags))
    assert "data-parallel-size" not in flags and "kv-cache-memory-bytes" not in flags
    assert flags["gpu-memory-utilization"] == ["0.9"]  # the GPU's whole share, for the one engine
    settings = {item.setting: item for item in exported.unexpressible}
    assert settings["engine_config.engines_per_gpu"].value == "2"
    assert "autotune serve --config" in settings["engine_config.engines_per_gpu"].needs
    assert "max_request_bytes 20971520" in settings["serving limits"].value
    assert "engine_config.engines_per_gpu" not in {i.setting for i in export_vllm(_tuned()).unexpressible}


def test_an_option_vllm_does_not_know_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="--max-num-seqz: not an option of vllm serve 0.24.0"):
        export_vllm(_tuned(extra_engine_args={"max_num_seqz": 3}))


def test_serve_sh_runs_vllm_with_the_flags_and_environment_and_writes_no_secret(tmp_path: Path) -> None:
    tuned = _tuned().model_copy(update={"serving": ServingSettings(api_key="sk-very-secret", allowed_image_hosts=["example.com"])})
    exported = export_vllm(tuned)
    paths = write_vllm_export(exported, tuned, tmp_path / "out", source="best.yaml")
    assert {p.name for p in paths} == {SCRIPT_FILE, CONFIG_FILE}
    for path in paths:
        assert "sk-very-secret" not in path.read_text() and SECRET not in path.read_text()
    assert exported.required_env == ["HF_TOKEN", "VLLM_API_KEY"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    (bin_dir / "vllm").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n"
    )
    (bin_dir / "vllm").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_TOKEN": SECRET}
    refused = subprocess.run(["sh", str(paths[0])], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode != 0 and "VLLM_API_KEY" in refused.stderr  # the key is asked for, not written
    done = subprocess.run(["sh", str(paths[0])], env={**env, "VLLM_API_KEY": "k"}, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    ran = json.loads(record.read_text())
    assert ran["argv"] == exported.argv[1:]
    assert ran["env"]["HF_TOKEN"] == SECRET and ran["env"]["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    assert ran["env"]["MALLOC_MMAP_THRESHOLD_"] == "131072"  # exported before vllm starts: glibc reads it at start
    config = yaml.safe_load((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config == exported.config and config["allowed-media-domains"] == "example.com"  # read back as --allowed-media-domains example.com


def test_cli_writes_both_files_and_names_what_raw_vllm_lacks(tmp_path: Path) -> None:
    best = _tuned(engines_per_gpu=2).write(tmp_path / "study" / "best.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "export", str(best), "--to", "vllm", "--model", "Qwen/Qwen3-VL-4B-Instruct"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "study" / "export-vllm"
    assert (out / SCRIPT_FILE).is_file() and yaml.safe_load((out / CONFIG_FILE).read_text())["model"] == "Qwen/Qwen3-VL-4B-Instruct"
    assert "not in raw vLLM: engine_config.engines_per_gpu = 2" in done.stdout
    assert "vllm serve Qwen/Qwen3-VL-4B-Instruct --served-model-name qwen3-vl-4b" in done.stdout


def test_k8s_export_serves_the_tuned_file_with_its_gpus_and_validates(tmp_path: Path) -> None:
    tuned = _tuned(tensor_parallel_size=2, engines_per_gpu=1, extra_engine_args={})
    tuned = tuned.model_copy(update={"serving": ServingSettings(api_key="sk-very-secret")})
    manifests = k8s_manifests(tuned, name="qwen-serve", image="registry.example/autotune:1", model="/models/q", models_pvc="weights")
    path = write_k8s_export(manifests, tmp_path, ["header"])
    text = path.read_text()
    assert "sk-very-secret" not in text
    config_map, deployment, service = yaml.safe_load_all(text)
    served = TunedConfig.model_validate(yaml.safe_load(config_map["data"]["best.yaml"]))
    assert served.engine_config.model == "/models/q" and served.serving.api_key is None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2  # tensor_parallel_size 2
    assert container["args"][:2] == ["--config", "/config/best.yaml"] and container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "AUTOTUNE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "qwen-serve-api-key", "key": "API_KEY"}}} in container["env"]
    assert service["spec"]["ports"][0]["port"] == 8000
    simulated = _tuned().model_copy(update={"engine": EngineKind.SIMULATED})
    sim_container = k8s_manifests(simulated, name="sim", image="autotune")[1]["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in sim_container  # the simulated engine needs no GPU


def test_k8s_export_refuses_a_bad_name_or_an_invalid_object_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--name 'Qwen_Serve': a Kubernetes name is lowercase letters"):
        k8s_manifests(_tuned(), name="Qwen_Serve", image="autotune")
    manifests = k8s_manifests(_tuned(), name="ok", image="autotune")
    manifests[1]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(ConfigError) as refused:
        write_k8s_export(manifests, tmp_path, [])
    assert "k8s.yaml: Deployment/ok: spec.template.spec.containers[0].ports[0].containerPort: '8000' is not of type 'integer'" in str(refused.value)
    assert not (tmp_path / "k8s.yaml").exists()


def test_cli_k8s_export_of_a_study_best_yaml(tmp_path: Path) -> None:
    best = _tuned().write(tmp_path / "best.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "export", str(best), "--to", "k8s", "--out", str(tmp_path / "k8s")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all((tmp_path / "k8s" / "k8s.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    assert docs[1]["metadata"]["name"] == "qwen3-vl-4b-serve"
    assert load_tuned_config(best).engine_config.model == "/models/qwen3-vl-4b"
