"""autotune.observe.stacks.activity: a window's folded stacks -> the engine core's activities and the API servers' load."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from autotune.observe.stacks.activity import ACTIVITIES, engine_core_shares, stack_metrics, window_folders

CORE = "vllm/v1/engine/core.py"
RUNNER = "vllm/v1/worker/gpu_model_runner.py"


def _folded(path: Path, samples: int, lines: list[str], *, gz: bool = False) -> None:
    text = "\n".join([f"# samples {samples} hz 25 pid 7 closed", *lines]) + "\n"
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def _window(root: Path, name: str, *, gz: bool = False) -> Path:
    window = root / name
    window.mkdir(parents=True)
    _folded(window / "EngineCore.7.folded", 10, [
        f"MainThread;{CORE}:run_busy_loop;{CORE}:_process_input_queue;threading.py:wait 2",
        f"MainThread;{CORE}:step;vllm/model_executor/models/qwen3_vl.py:embed_multimodal;torch/_ops.py:__call__ 5",
        f"MainThread;{CORE}:step;{RUNNER}:sample_tokens;{RUNNER}:_to_list 3",
        "Thread-1;zmq/utils/garbage.py:run 10",  # another thread: not counted
    ], gz=gz)
    _folded(window / "APIServer_0.8.folded", 10, [
        "MainThread;uvloop/__init__.py:run 8", "MainThread;uvloop/__init__.py:run;serving.py:create 2",
        "ThreadPoolExecutor-2_0;concurrent/futures/thread.py:_worker 6",
        "ThreadPoolExecutor-2_0;concurrent/futures/thread.py:_worker;processor.py:apply 4",
    ], gz=gz)
    _folded(window / "APIServer_1.9.folded", 10, ["MainThread;uvloop/__init__.py:run 10"], gz=gz)
    return window


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_engine_core_samples_are_split_by_activity(tmp_path: Path, gz: bool) -> None:
    shares = engine_core_shares(_window(tmp_path, "phase01-rate30.00", gz=gz))
    assert shares is not None and set(shares) == set(ACTIVITIES)
    assert shares["idle"] == 0.2 and shares["vision_encoder"] == 0.5 and shares["gpu_wait"] == 0.3
    assert shares["other"] == 0.0 and abs(sum(shares.values()) - 1) < 1e-9


def test_with_a_worker_process_its_main_thread_is_read_and_each_sample_counts_once(tmp_path: Path) -> None:
    """Several engines per GPU (or tensor parallel): the model runner runs in a Worker process; the engine core
    thread only waits for it. Encoder CUDA graphs count as the encoder, also where the eager path nests in them."""
    window = _window(tmp_path, "phase02-rate90.00")
    shm = "vllm/distributed/device_communicators/shm_broadcast.py:dequeue"
    graphs = "vllm/v1/worker/encoder_cudagraph.py:execute"
    _folded(window / "Worker.11.folded", 10, [
        f"MainThread;vllm/v1/executor/multiproc_executor.py:worker_busy_loop;{shm};vllm/distributed/utils.py:sched_yield 4",
        f"MainThread;{RUNNER}:execute_model;{RUNNER}:_execute_mm_encoder;{graphs};qwen3_vl.py:prepare_encoder_metadata 2",
        f"MainThread;{RUNNER}:execute_model;{RUNNER}:_execute_mm_encoder;{graphs};vllm/model_executor/models/qwen3_vl.py:embed_multimodal 1",
        f"MainThread;{RUNNER}:execute_model;{RUNNER}:_model_forward 3",
        "WorkerAsyncOutputCopy;vllm/v1/executor/multiproc_executor.py:async_output_busy_loop 10",
    ])
    shares = engine_core_shares(window)
    assert shares is not None
    assert shares["idle"] == 0.4 and shares["vision_encoder"] == 0.3 and shares["language_model"] == 0.3
    assert abs(sum(shares.values()) - 1) < 1e-9  # the nested eager frame is not counted twice


def test_metrics_of_the_reported_window_and_the_probe(tmp_path: Path) -> None:
    for name in ("phase00-c256", "phase01-rate41.18", "phase02-rate36.85", "phase03-rate39.02"):
        _window(tmp_path, name)
    reported, probe = window_folders(tmp_path, 36.85)
    assert reported is not None and reported.name == "phase02-rate36.85"
    assert probe is not None and probe.name == "phase00-c256"
    metrics = stack_metrics(tmp_path, 36.85)
    assert metrics["stack_engine_core_vision_encoder_share"] == 0.5
    assert metrics["peak_stack_engine_core_idle_share"] == 0.2
    assert metrics["stack_api_server_event_loop_busy"] == 0.2  # the busier of the two API servers
    assert metrics["stack_api_server_preprocessing_busy"] == 0.4


def test_a_single_window_has_no_probe_and_no_profile_gives_nothing(tmp_path: Path) -> None:
    _window(tmp_path, "phase00-c8")
    assert window_folders(tmp_path, None)[1] is None
    assert not any(k.startswith("peak_") for k in stack_metrics(tmp_path, None))
    assert stack_metrics(tmp_path / "absent", 10.0) == {}
