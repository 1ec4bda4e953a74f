"""Where vLLM's engine core and API servers spend their time, from the trials' stack profiles (--stack-profile-hz).

For every trial of a study folder that has `trials/N/stack-profile/` (each server process's folded stacks per
measured window, `serving.stack_profile`), two windows are read: the capacity probe (`phase00-c*`, the highest
load) and the window whose rate the trial reports (its slo_rate; the last window at that rate). For the engine
core's main thread (the loop that schedules, prepares inputs, launches the GPU work and waits for its results) the
share of samples with each of these functions on the stack is given; they do not overlap:

- idle: `EngineCore._process_input_queue` (no work: waiting for requests);
- scheduler: `Scheduler.schedule` and `update_from_output`;
- input preparation: `GPUModelRunner._update_states` and `_prepare_inputs`;
- multimodal batching: `group_and_batch_mm_kwargs` (stacking the requests' pixel tensors and moving them to the GPU);
- vision encoder: `Qwen3VL...embed_multimodal` (run eagerly: vLLM 0.24 has `compile_mm_encoder` and
  `cudagraph_mm_encoder` off by default);
- language model: `GPUModelRunner._model_forward` (CUDA-graph replay, or the compiled graph for large batches);
- waiting for the GPU: `GPUModelRunner._to_list` (the sampled tokens copied back: the step's GPU work finishing);
- other: the rest of the step.

For the API servers: the busiest API server's event-loop (MainThread) busy share and its preprocessing threads'
(vLLM's renderer pool) summed busy share. Writes `stack_profiles.json` and `stack_profiles.md` into the run folder:

    .venv/bin/python scripts/summarize_stack_profiles.py RUN_DIR [STUDY]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autotune.bench.stack_profile import profile_process, thread_inclusive_samples  # noqa: E402

ENGINE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "idle": ("vllm/v1/engine/core.py:_process_input_queue",),
    "scheduler": ("vllm/v1/core/sched/scheduler.py:schedule", "vllm/v1/core/sched/scheduler.py:update_from_output"),
    "input preparation": ("vllm/v1/worker/gpu_model_runner.py:_update_states", "vllm/v1/worker/gpu_model_runner.py:_prepare_inputs"),
    "multimodal batching": ("vllm/multimodal/utils.py:group_and_batch_mm_kwargs",),
    "vision encoder": ("vllm/model_executor/models/qwen3_vl.py:embed_multimodal",),
    "language model": ("vllm/v1/worker/gpu_model_runner.py:_model_forward",),
    "waiting for the GPU": ("vllm/v1/worker/gpu_model_runner.py:_to_list",),
}
Json = dict[str, Any]


def _windows(trial_dir: Path) -> tuple[Path | None, Path | None]:
    """(probe window folder, reported window folder) of a trial, from the rate it reports."""
    root = trial_dir / "stack-profile"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    probe = next((p for p in folders if p.name.startswith("phase00-c")), None)
    trial = json.loads((trial_dir / "trial.json").read_text())
    rate = ((trial.get("summary") or {}).get("slo_rate_rps"))
    reported = None
    if rate:
        tag = f"rate{rate:.2f}"
        reported = next((p for p in reversed(folders) if p.name.endswith(tag)), None)
    return probe, reported


def _files(window: Path, title_prefix: str) -> list[Path]:
    return sorted(f for f in window.iterdir() if f.name.startswith(title_prefix) and ".folded" in f.name)


def engine_core_breakdown(window: Path) -> Json | None:
    files = _files(window, "EngineCore")
    if not files:
        return None
    total, inclusive = thread_inclusive_samples(files[0], "MainThread")
    if not total:
        return None
    shares = {name: sum(inclusive[f] for f in frames) / total for name, frames in ENGINE_CATEGORIES.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {"samples": total, "shares": {k: round(v, 3) for k, v in shares.items()}}


def api_server_busy(window: Path) -> Json | None:
    """The busiest API server (or the single-process frontend) by event-loop busy share."""
    rows = []
    # several API servers: APIServer_N; one: the launcher process itself (title from its argv: vllm_serve / cli_serve)
    files = _files(window, "APIServer") or [*_files(window, "vllm_serve"), *_files(window, "cli_serve")]
    for f in files:
        profile = profile_process(f)
        if profile is None:
            continue
        threads = {t.name: t for t in profile.threads}
        main = threads.get("MainThread")
        pool = sum(t.busy_share for t in profile.threads if t.name.startswith("ThreadPoolExecutor-2_"))
        rows.append({"process": profile.title, "event_loop_busy": main.busy_share if main else None,
                     "preprocessing_threads_busy": round(pool, 3)})
    if not rows:
        return None
    busiest = max(rows, key=lambda r: r["event_loop_busy"] or 0.0)
    return {**busiest, "api_servers": len(rows)}


def summarize(study_dir: Path) -> list[Json]:
    rows = []
    for trial_dir in sorted((study_dir / "trials").iterdir(), key=lambda p: int(p.name)):
        if not (trial_dir / "stack-profile").is_dir():
            continue
        trial = json.loads((trial_dir / "trial.json").read_text())
        probe, reported = _windows(trial_dir)
        rows.append({
            "trial": int(trial_dir.name),
            "slo_rate_rps": round((trial.get("summary") or {}).get("slo_rate_rps") or 0.0, 2),
            "probe_window": probe.name if probe else None,
            "reported_window": reported.name if reported else None,
            "engine_core_probe": engine_core_breakdown(probe) if probe else None,
            "engine_core_reported": engine_core_breakdown(reported) if reported else None,
            "api_server_probe": api_server_busy(probe) if probe else None,
            "api_server_reported": api_server_busy(reported) if reported else None,
        })
    return rows


def render(rows: list[Json]) -> str:
    names = [*ENGINE_CATEGORIES, "other"]
    lines = [
        "# Engine-core main thread: share of samples per activity (made by scripts/summarize_stack_profiles.py)\n",
        "| trial | window | " + " | ".join(names) + " | busiest API server event loop | its preprocessing threads |",
        "|---|---|" + "---|" * (len(names) + 2),
    ]
    for row in rows:
        for kind in ("probe", "reported"):
            engine, api = row[f"engine_core_{kind}"], row[f"api_server_{kind}"]
            if engine is None:
                continue
            cells = [f"{100 * engine['shares'][n]:.0f}%" for n in names]
            api_cells = [f"{100 * api['event_loop_busy']:.0f}%", f"{100 * api['preprocessing_threads_busy']:.0f}%"] if api else ["", ""]
            lines.append(f"| {row['trial']} | {row[f'{kind}_window']} | " + " | ".join(cells + api_cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    run_dir = Path(sys.argv[1])
    study = sys.argv[2] if len(sys.argv) > 2 else "qwen3-vl-4b-reference"
    rows = summarize(run_dir / "study" / study)
    (run_dir / "stack_profiles.json").write_text(json.dumps({"made_by": "scripts/summarize_stack_profiles.py",
                                                             "categories": ENGINE_CATEGORIES, "trials": rows}, indent=2))
    text = render(rows)
    (run_dir / "stack_profiles.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
