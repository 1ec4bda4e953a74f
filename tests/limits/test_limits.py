"""The limit table's phases, runner and record with a stand-in offline engine (vLLM's needs a GPU: its run is
tests/gpu/test_gpu_limits.py). The stand-in charges a fixed cost per image, prompt token and output token on a
clock of its own, so that every figure the runner derives is known exactly."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.errors import ConfigError
from autotune.limits.measure import measure_limits
from autotune.bench.prepare import make_renderer
from autotune.limits.phases import PHASE_BLOCK, PHASES, Finished, OfflinePrompt, WorkloadPrompts, run_phases
from autotune.limits.record import LimitRecord, limits_table
from autotune.observe.gpu import GpuSummary
from autotune.bench.workload import resolve_workload

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = REPO / "experiments" / "gpu-configs" / "qwen3-vl-4b-defaults.yaml"
BEST = REPO / "experiments" / "h100-qwen3-vl-4b" / "2026-11-26c" / "study" / "qwen3-vl-4b-reference-v2" / "best.yaml"
IMAGE_TOKENS = 196  # what the stand-in counts for one image
IMAGE_S, PROMPT_TOKEN_S, OUTPUT_TOKEN_S, ADD_S = 0.01, 1e-5, 1e-4, 2e-3


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class StandInEngine:
    """An `OfflineEngine` that costs time on `clock` instead of using a GPU."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.args = ["--model", "m", "--max-num-seqs", "256"]
        self.serving_only_args = ["--api-server-count", "4"]
        self.batch_limits = {"max_num_seqs": 256, "max_num_batched_tokens": 8192}
        self.queued: list[tuple[str, OfflinePrompt, int]] = []
        self.seen: list[tuple[str, OfflinePrompt, int]] = []
        self.drop = 0

    def add(self, request_id: str, prompt: OfflinePrompt, max_tokens: int) -> None:
        self.clock.now += ADD_S
        self.queued.append((request_id, prompt, max_tokens))

    def run(self) -> list[Finished]:
        finished = []
        for _request_id, prompt, max_tokens in self.queued[self.drop:]:
            prompt_tokens = len(prompt.token_ids) if prompt.token_ids is not None else (
                _words(prompt) + IMAGE_TOKENS * len(prompt.images))
            self.clock.now += IMAGE_S * len(prompt.images) + PROMPT_TOKEN_S * prompt_tokens + OUTPUT_TOKEN_S * max_tokens
            finished.append(Finished(prompt_tokens, max_tokens))
        self.seen += self.queued
        self.queued = []
        return finished

    def text_token_ids(self, count: int, seed: int) -> list[int]:
        return [seed, *range(count - 1)]  # distinct for distinct seeds


def _words(prompt: OfflinePrompt) -> int:
    """The stand-in's token count of a chat's text: its words."""
    texts = [m["content"] if isinstance(m["content"], str) else " ".join(p.get("text", "") for p in m["content"])
             for m in prompt.messages]
    return sum(len(text.split()) for text in texts)


class WindowSampler:
    """A GPU sampler that remembers the windows it was asked about."""

    available, reason = True, None

    def __init__(self) -> None:
        self.windows: list[tuple[float, float]] = []

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def driver_version(self) -> str | None:
        return None

    def summarize(self, start: float, end: float) -> GpuSummary:
        self.windows.append((start, end))
        return GpuSummary(samples=3, util_mean=99.0, sm_active_mean=60.0, tensor_active_mean=20.0, dram_bw_mean=30.0)


def _run(requests: int = 12) -> tuple[list, StandInEngine, WindowSampler]:
    clock = Clock()
    engine, sampler = StandInEngine(clock), WindowSampler()
    results = run_phases(engine, WorkloadPrompts(resolve_workload("vlm-chat")), requests, sampler, clock=clock)
    return results, engine, sampler


def test_each_phase_queues_its_requests_then_runs_them_and_the_warm_up_is_not_recorded() -> None:
    results, engine, sampler = _run()
    assert [r.name for r in results] == ["whole", "language model", "prefill", "text prefill", "decode"]
    assert len(engine.seen) == 12 * len(PHASES)  # the warm-up ran too
    by_name = {r.name: r for r in results}
    whole = by_name["whole"]
    # vlm-chat: one image, 64 text words, 128 output tokens; each cost known exactly
    per_request_s = IMAGE_S + PROMPT_TOKEN_S * (64 + IMAGE_TOKENS) + OUTPUT_TOKEN_S * 128
    assert whole.engine_s == pytest.approx(12 * per_request_s, abs=1e-3)
    assert whole.req_per_s == pytest.approx(1 / per_request_s, rel=1e-2)
    assert whole.add_s == pytest.approx(12 * ADD_S, abs=1e-3)  # input processing, apart from the engine's time
    assert whole.prompt_tokens_mean == 64 + IMAGE_TOKENS and whole.output_tokens_mean == 128
    assert by_name["prefill"].output_tokens_mean == by_name["text prefill"].output_tokens_mean == 1
    assert by_name["decode"].prompt_tokens_mean == 16 and by_name["decode"].output_tokens_mean == 128
    # the GPU figures of each recorded phase are those of its engine time, not of its input processing
    assert len(sampler.windows) == len(PHASES)
    assert all(end - start == pytest.approx(r.engine_s, abs=1e-3) for (start, end), r in zip(sampler.windows[1:], results))
    assert whole.gpu is not None and whole.gpu.sm_active_mean == 60.0


def test_text_phases_have_the_workload_prompts_length_and_no_phase_reuses_another_phases_inputs() -> None:
    _results, engine, _sampler = _run()
    texts = [p for rid, p, _ in engine.seen if rid.startswith("language model-")]
    assert {len(p.token_ids or []) for p in texts} == {64 + IMAGE_TOKENS} and not any(p.images for p in texts)
    images = [hashlib.sha256(image.tobytes()).hexdigest() for _, p, _ in engine.seen for image in p.images]
    assert len(images) == 12 * 3 and len(set(images)) == len(images)  # warm-up, whole, prefill: all distinct
    token_ids = [tuple(p.token_ids) for _, p, _ in engine.seen if p.token_ids is not None]
    assert len(set(token_ids)) == len(token_ids)
    # the workload's phases send what the load generator sends: phase 1's first request is its request PHASE_BLOCK
    served = json.loads(make_renderer(resolve_workload("vlm-chat")).render(PHASE_BLOCK, "offline").body)["messages"]
    whole = next(p for request_id, p, _ in engine.seen if request_id == "whole-0")
    assert [part["type"] for part in whole.messages[-1]["content"]] == ["image", "text"] and len(whole.images) == 1
    assert whole.messages[-1]["content"][1] == served[-1]["content"][1]


def test_the_encoder_rate_is_derived_from_the_two_prefill_phases_and_the_table_shows_every_phase(tmp_path: Path) -> None:
    clock = Clock()
    record = measure_limits(DEFAULTS, requests=10, engine_factory=lambda _config: StandInEngine(clock),
                            gpu=WindowSampler(), clock=clock)
    # prefill with an image against text of the same length: the image's cost alone, 0.01 s
    assert record.encoder_images_per_s == pytest.approx(1 / IMAGE_S, rel=0.02)
    assert record.serving_only_args == ["--api-server-count", "4"] and record.workload == "vlm-chat"
    assert record.batch_limits == {"max_num_seqs": 256, "max_num_batched_tokens": 8192}
    assert "ran with max_num_seqs 256, max_num_batched_tokens 8,192" in limits_table(record)
    table = limits_table(LimitRecord.model_validate_json(record.model_dump_json()))
    assert table.count("\n| ") == 5  # one row per recorded phase below the header
    assert "| whole: the workload's requests" in table and "| 60 | 20 | 30 | 99 |" in table
    assert "Vision encoder (derived from the two prefill phases): 100.0 images/s." in table


def test_a_config_with_two_engine_cores_is_noted_as_measured_with_one() -> None:
    clock = Clock()
    record = measure_limits(BEST, requests=8, engine_factory=lambda _config: StandInEngine(clock), gpu=WindowSampler(),
                            clock=clock)
    assert any("2 engine cores" in note for note in record.notes)


def test_an_engine_that_loses_a_request_fails_the_phase_by_name() -> None:
    clock = Clock()
    engine = StandInEngine(clock)
    engine.drop = 1
    with pytest.raises(RuntimeError, match="phase 'warm-up': 7 of 8 requests finished"):
        run_phases(engine, WorkloadPrompts(resolve_workload("vlm-chat")), 8, WindowSampler(), clock=clock)


def test_what_cannot_be_measured_offline_is_refused_in_one_line(tmp_path: Path) -> None:
    simulated = tmp_path / "simulated.yaml"
    simulated.write_text(DEFAULTS.read_text().replace("engine: vllm", "engine: simulated"))
    with pytest.raises(ConfigError, match="engine simulated: the limit table measures vLLM's offline engine"):
        measure_limits(simulated, requests=8)
    dataset = tmp_path / "lines.jsonl"
    dataset.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(ConfigError, match="needs a synthetic workload"):
        WorkloadPrompts(resolve_workload(dataset))
    # without vLLM (this machine): one error line that says how to install it, exit 2 as other usage errors
    done = subprocess.run([sys.executable, "-m", "autotune.cli", "limits", str(DEFAULTS), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        pytest.skip("vLLM is installed here")
    assert "vLLM is not installed" in done.stderr and "Traceback" not in done.stderr, done.stderr
