"""What a vLLM server's threads did in a measured window, from its stack profile: flat shares for metrics and tables.

The engine core's main thread runs vLLM's loop: schedule, prepare inputs, launch the GPU work, wait for its
results. Each sample of that thread is put in the first activity whose vLLM 0.24 function is on its stack:

- idle: `EngineCore._process_input_queue` (no work: waiting for requests);
- scheduler: `Scheduler.schedule`, `update_from_output`;
- input_preparation: `GPUModelRunner._update_states`, `_prepare_inputs`;
- mm_batching: `group_and_batch_mm_kwargs` (stacking the requests' pixel tensors, moving them to the GPU);
- vision_encoder: `Qwen3-VL embed_multimodal` (eager), or `EncoderCudaGraphManager.execute` (in CUDA graphs);
- language_model: `GPUModelRunner._model_forward` (CUDA-graph replay or the compiled graph);
- gpu_wait: `GPUModelRunner._to_list` (the sampled tokens copied back: the step's GPU work finishing);
- other: the rest.

With a multiprocess executor (several engines per GPU, tensor parallel) the model runner runs in a `Worker`
process, and the engine core's thread only schedules and waits for it: the figures are then the first Worker's main
thread's, and its idle is waiting for the engine core's next step (`MessageQueue.dequeue` in `worker_busy_loop`).

For the API servers: the busiest one's event loop (its MainThread's busy share) and its preprocessing threads
(vLLM's renderer pool, `ThreadPoolExecutor-2_*`, summed). With one API server the launcher process is the server.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from autotune.observe.names import (
    PEAK_PREFIX,
    STACK_API_SERVER_EVENT_LOOP_BUSY,
    STACK_API_SERVER_PREPROCESSING_BUSY,
    stack_engine_core_share,
)
from autotune.observe.stacks.profiler import START_WINDOW
from autotune.observe.stacks.reader import folded_stacks, profile_process, read_folded

ENGINE_CORE_ACTIVITIES: dict[str, tuple[str, ...]] = {
    "idle": (
        "vllm/v1/engine/core.py:_process_input_queue",
        "vllm/distributed/device_communicators/shm_broadcast.py:dequeue",  # a Worker waiting for its next step
    ),
    "scheduler": ("vllm/v1/core/sched/scheduler.py:schedule", "vllm/v1/core/sched/scheduler.py:update_from_output"),
    "input_preparation": (
        "vllm/v1/worker/gpu_model_runner.py:_update_states",
        "vllm/v1/worker/gpu_model_runner.py:_prepare_inputs",
    ),
    "mm_batching": ("vllm/multimodal/utils.py:group_and_batch_mm_kwargs",),
    "vision_encoder": (
        "vllm/model_executor/models/qwen3_vl.py:embed_multimodal",
        "vllm/v1/worker/encoder_cudagraph.py:execute",  # the encoder in CUDA graphs (cudagraph_mm_encoder)
    ),
    "language_model": ("vllm/v1/worker/gpu_model_runner.py:_model_forward",),
    "gpu_wait": ("vllm/v1/worker/gpu_model_runner.py:_to_list",),
}
ACTIVITIES: tuple[str, ...] = (*ENGINE_CORE_ACTIVITIES, "other")
_RENDERER_POOL = "ThreadPoolExecutor-2_"
_SINGLE_SERVER_TITLES = ("vllm_serve", "cli_serve")  # the launcher, when it is the only API server


def _files(window: Path, prefix: str) -> list[Path]:
    return sorted(f for f in window.iterdir() if f.name.startswith(prefix) and ".folded" in f.name)


def activity_of(frames: list[str]) -> str:
    """The activity of one sample: the first of ENGINE_CORE_ACTIVITIES with a frame on its stack, else "other"."""
    on_stack = set(frames)
    return next((name for name, marks in ENGINE_CORE_ACTIVITIES.items() if not on_stack.isdisjoint(marks)), "other")


def engine_core_shares(window: Path) -> dict[str, float] | None:
    """Share of the model-runner thread's samples per activity (summing to 1); None without its profile."""
    files = _files(window, "Worker") or _files(window, "EngineCore")  # the thread that runs the model runner
    if not files:
        return None
    counts = Counter[str]()
    for thread, frames, n in folded_stacks(read_folded(files[0])):
        if thread == "MainThread":
            counts[activity_of(frames)] += n
    total = sum(counts.values())
    if not total:
        return None
    return {name: round(counts[name] / total, 4) for name in ACTIVITIES}


def api_server_busy(window: Path) -> dict[str, float | str | int] | None:
    """The busiest API server by event-loop busy share, with its preprocessing threads' summed busy share."""
    files = _files(window, "APIServer") or [f for t in _SINGLE_SERVER_TITLES for f in _files(window, t)]
    rows: list[dict[str, float | str | int]] = []
    for f in files:
        profile = profile_process(f)
        if profile is None:
            continue
        main = next((t.busy_share for t in profile.threads if t.name == "MainThread"), 0.0)
        pool = sum(t.busy_share for t in profile.threads if t.name.startswith(_RENDERER_POOL))
        rows.append({"process": profile.title, "event_loop_busy": main, "preprocessing_threads_busy": round(pool, 4)})
    if not rows:
        return None
    busiest = max(rows, key=lambda r: float(r["event_loop_busy"]))
    return {**busiest, "api_servers": len(rows)}


def window_folders(stack_dir: Path, reported_rate_rps: float | None) -> tuple[Path | None, Path | None]:
    """(the window the trial reports, the capacity probe): by the reported slo_rate, else the last window;
    the probe is the closed-loop `phase00-c*` window when there were several windows. The start is never either."""
    folders = sorted(p for p in stack_dir.iterdir() if p.is_dir() and p.name != START_WINDOW) if stack_dir.is_dir() else []
    if not folders:
        return None, None
    reported = folders[-1]
    if reported_rate_rps:
        tag = f"rate{reported_rate_rps:.2f}"
        reported = next((p for p in reversed(folders) if p.name.endswith(tag)), reported)
    probe = next((p for p in folders if p.name.startswith("phase00-c")), None) if len(folders) > 1 else None
    return reported, probe


def window_metrics(window: Path, prefix: str = "") -> dict[str, float]:
    """Flat figures of one window: `stack_engine_core_<activity>_share`, `stack_api_server_event_loop_busy`, ..."""
    out: dict[str, float] = {}
    if (shares := engine_core_shares(window)) is not None:
        out.update({prefix + stack_engine_core_share(k): v for k, v in shares.items()})
    if (api := api_server_busy(window)) is not None:
        out[prefix + STACK_API_SERVER_EVENT_LOOP_BUSY] = float(api["event_loop_busy"])
        out[prefix + STACK_API_SERVER_PREPROCESSING_BUSY] = float(api["preprocessing_threads_busy"])
    return out


def stack_metrics(stack_dir: Path, reported_rate_rps: float | None) -> dict[str, float]:
    """The reported window's figures, and the capacity probe's with a `peak_` prefix (as `peak_*` metrics)."""
    reported, probe = window_folders(stack_dir, reported_rate_rps)
    metrics = window_metrics(reported) if reported is not None else {}
    if probe is not None and probe != reported:
        metrics.update(window_metrics(probe, prefix=PEAK_PREFIX))
    return metrics
