"""engines_per_gpu: vLLM data-parallel ranks placed k per GPU, each with its own fixed KV cache."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.servers import MODEL_DIR

from autotune.config import VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, EngineConfig, TunedConfig
from autotune.errors import ConfigError
from autotune.memory_model import COLOCATED_RESERVE_GIB, GIB, ModelInfo, colocated_kv_cache_bytes, estimate_memory
from serving.engines import colocation
from serving.engines.vllm_launcher import build_vllm_argv, vllm_environment

MODEL = Path(MODEL_DIR)


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_each_engine_gets_its_share_of_memory_and_vllm_one_rank_per_engine() -> None:
    engine = EngineConfig(model="m", engines_per_gpu=2, gpu_memory_utilization=0.9)
    args = engine.to_vllm_cli_args(kv_cache_memory_bytes=123 * GIB)
    assert flag_value(args, "--data-parallel-size") == "2"
    assert flag_value(args, "--gpu-memory-utilization") == "0.45"
    assert flag_value(args, "--kv-cache-memory-bytes") == str(123 * GIB)
    # two GPUs with three engines each: six ranks; vLLM's default share split when unset
    spread = EngineConfig(model="m", engines_per_gpu=3, data_parallel_size=2)
    args = spread.to_vllm_cli_args(kv_cache_memory_bytes=1)
    assert flag_value(args, "--data-parallel-size") == "6"
    assert float(flag_value(args, "--gpu-memory-utilization")) == pytest.approx(VLLM_DEFAULT_GPU_MEMORY_UTILIZATION / 3, abs=1e-4)
    # one engine per GPU: nothing changes
    plain = EngineConfig(model="m", gpu_memory_utilization=0.9).to_vllm_cli_args()
    assert "--data-parallel-size" not in plain and "--kv-cache-memory-bytes" not in plain
    assert flag_value(plain, "--gpu-memory-utilization") == "0.9"


def test_co_located_engines_need_a_kv_size_one_model_per_engine_and_no_own_kv_bytes() -> None:
    with pytest.raises(ValueError, match="kv_cache_memory_bytes"):
        EngineConfig(model="m", engines_per_gpu=2).to_vllm_cli_args()
    with pytest.raises(ValueError, match="tensor_parallel_size 1"):
        EngineConfig(model="m", engines_per_gpu=2, tensor_parallel_size=2)
    with pytest.raises(ValueError, match="leave kv_cache_memory_bytes out"):
        EngineConfig(model="m", engines_per_gpu=2, extra_engine_args={"kv_cache_memory_bytes": 10})


def test_the_kv_cache_per_engine_is_its_share_less_weights_and_reserve() -> None:
    model = ModelInfo.from_model_dir(MODEL)
    one = EngineConfig(model=str(MODEL), gpu_memory_utilization=0.9)
    two = one.model_copy(update={"engines_per_gpu": 2})
    alone = estimate_memory(one, model, 80.0, COLOCATED_RESERVE_GIB)
    shared = estimate_memory(two, model, 80.0, COLOCATED_RESERVE_GIB)
    # per engine: 80 x 0.9 / 2 = 36 GiB less the same weights and reserve
    free_alone = 72 - alone.weights_gib - COLOCATED_RESERVE_GIB
    free_shared = 36 - shared.weights_gib - COLOCATED_RESERVE_GIB
    assert shared.kv_capacity_tokens == pytest.approx(alone.kv_capacity_tokens * free_shared / free_alone, rel=1e-3)
    assert colocated_kv_cache_bytes(two, model, 80.0) == shared.kv_capacity_tokens * shared.kv_bytes_per_token
    assert colocation.kv_cache_bytes_per_engine(two, gpu_memory_gib=80.0) == colocated_kv_cache_bytes(two, model, 80.0)
    assert colocation.kv_cache_bytes_per_engine(one, gpu_memory_gib=80.0) is None
    # eight engines on a 24 GiB card leave nothing: said before vLLM starts
    with pytest.raises(ConfigError, match="leaves no KV cache"):
        colocated_kv_cache_bytes(one.model_copy(update={"engines_per_gpu": 8}), model, 24.0)


def test_without_a_gpu_the_kv_size_cannot_be_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(colocation, "gpu_total_memory_gib", lambda: None)
    with pytest.raises(ConfigError, match="NVML sees no GPU"):
        colocation.kv_cache_bytes_per_engine(EngineConfig(model="m", engines_per_gpu=2))


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in `vllm.v1.engine.core.EngineCoreProc` whose run_engine_core records how it was called."""
    package = tmp_path / "vllm" / "v1" / "engine"
    package.mkdir(parents=True)
    for folder in (tmp_path / "vllm", tmp_path / "vllm" / "v1", package):
        (folder / "__init__.py").write_text("")
    (package / "core.py").write_text(
        textwrap.dedent(
            """
            calls = []

            class EngineCoreProc:
                @staticmethod
                def run_engine_core(*args, dp_rank=0, local_dp_rank=0, **kwargs):
                    calls.append((dp_rank, local_dp_rank))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(colocation, "_original_run_engine_core", None)
    import vllm.v1.engine.core as core

    yield core
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        sys.modules.pop(name, None)


def test_ranks_are_placed_k_per_gpu_through_vllms_engine_core_target(fake_vllm, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = EngineConfig(model="m", engines_per_gpu=2, data_parallel_size=2)
    monkeypatch.setenv(colocation.ENGINES_PER_GPU_ENV, "2")
    assert colocation.place_engines_on_shared_gpus(engine)
    target = fake_vllm.EngineCoreProc.run_engine_core  # what vLLM's CoreEngineProcManager hands each process
    for rank in range(4):
        target("config", dp_rank=rank, local_dp_rank=rank)
    assert fake_vllm.calls == [(0, 0), (1, 0), (2, 1), (3, 1)]  # global ranks kept; ranks 0,1 on GPU 0, 2,3 on GPU 1
    # a spawned engine core unpickles the target by name: this module's function, vLLM's own run inside
    assert pickle.loads(pickle.dumps(target)) is colocation.run_engine_core_on_shared_gpu
    assert not colocation.place_engines_on_shared_gpus(EngineConfig(model="m"))  # one engine per GPU: untouched


def test_a_spawned_engine_core_calls_vllms_own_function(fake_vllm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(colocation.ENGINES_PER_GPU_ENV, "3")
    colocation.run_engine_core_on_shared_gpu(dp_rank=5, local_dp_rank=5)  # not patched here, as in a fresh process
    assert fake_vllm.calls == [(5, 1)]


def test_the_launcher_hands_vllm_the_ranks_the_memory_and_the_placement() -> None:
    tuned = TunedConfig(engine_config=EngineConfig(model="m", engines_per_gpu=2, gpu_memory_utilization=0.9))
    argv = build_vllm_argv(tuned, tuned.serving, kv_cache_memory_bytes=7 * GIB)
    assert flag_value(argv, "--data-parallel-size") == "2" and flag_value(argv, "--kv-cache-memory-bytes") == str(7 * GIB)
    assert vllm_environment(tuned, "/tmp/c.json")[colocation.ENGINES_PER_GPU_ENV] == "2"
    plain = TunedConfig(engine_config=EngineConfig(model="m"))
    assert colocation.ENGINES_PER_GPU_ENV not in vllm_environment(plain, "/tmp/c.json")
