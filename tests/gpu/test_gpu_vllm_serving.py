"""On a GPU host with vLLM: `autotune serve --engine vllm` streams an image chat and `autotune bench` measures it.

Marked `gpu` (skipped without an NVIDIA GPU, and without vLLM). Run on the device after staging:
    python3 -m pytest tests/gpu -q   (the project's skeleton; AUTOTUNE_GPU_MODEL: another model folder)
The recorded GPU runs of these paths (scripts/gpu/*.sh) are under experiments/gpu-runs/.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from autotune import GPU_INSTALL_HINT
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.workload import resolve_workload
from autotune.config import EngineConfig, EngineKind, TunedConfig
from helpers.servers import MODEL_DIR, running_server_process
from autotune.tune.server_process import ServerProcess

pytestmark = pytest.mark.gpu

MODEL = os.environ.get("AUTOTUNE_GPU_MODEL", MODEL_DIR)  # default: the skeleton the project ships
MAX_TOKENS = 16


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(f"vLLM is not installed ({GPU_INSTALL_HINT})")
    config = TunedConfig(
        engine=EngineKind.VLLM,
        engine_config=EngineConfig(
            model=MODEL,
            served_model_name="q",
            load_format="dummy",
            max_model_len=8192,
            limit_mm_per_prompt={"image": 1, "video": 0},
        ),
    )
    path = config.write(tmp_path_factory.mktemp("gpu") / "config.yaml")
    with running_server_process(["--config", str(path), "--engine", "vllm"], startup_timeout_s=600) as server:
        yield server


def _image_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (448, 448), (40, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_streamed_image_chat_through_vllm(vllm_server: ServerProcess) -> None:
    body = {
        "model": "q",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": _image_data_url()}},
            {"type": "text", "text": "Describe this image."},
        ]}],
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    content_chunks, usage = 0, None
    with httpx.stream("POST", f"{vllm_server.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["x-autotune-engine"] == "vllm"
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if any(choice.get("delta", {}).get("content") for choice in chunk.get("choices", [])):
                content_chunks += 1
    assert usage is not None and usage["completion_tokens"] == MAX_TOKENS
    assert usage["prompt_tokens"] > 100  # the image's tokens are counted
    assert 1 <= content_chunks <= MAX_TOKENS


def test_config_route_reports_the_real_engine(vllm_server: ServerProcess) -> None:
    document = httpx.get(f"{vllm_server.base_url}/autotune/config", timeout=10).json()
    assert document["engine"] == "vllm" and document["simulated"] is False
    assert document["engine_config"]["model"] == MODEL


def test_bench_measures_the_server_with_gpu_telemetry(vllm_server: ServerProcess) -> None:
    load = LoadSpec(mode="concurrency", concurrency=8, num_requests=48, warmup_requests=8)
    result = run_benchmark_sync(vllm_server.base_url, resolve_workload("vlm-chat"), load, SLO(ttft_ms=2000, tpot_ms=50))
    summary = result.summary
    assert not result.simulated and summary.completed == 48 and summary.failed == 0
    assert summary.throughput_rps > 1.0 and summary.ttft_ms.p50 is not None
    assert summary.gpu is not None and summary.gpu.samples > 0 and (summary.gpu.util_mean or 0) > 0
    assert not summary.client.saturated
