"""The simulated engine's model in virtual time: batching, KV capacity, preemption, frontends."""

from __future__ import annotations

import pytest

from autotune.config import EngineConfig
from autotune.memory_model import ModelInfo, estimate_memory
from helpers.servers import MODEL_DIR
from serving.engines.base import GenerationRequest, ImageInput, RequestRejected
from serving.engines.batching import BatchScheduler
from serving.engines.cost_model import CostModel
from serving.engines.profile import SimulatorProfile
from serving.engines.virtual_run import simulate_closed_loop

PROFILE = SimulatorProfile.load()
WIDE_FRONTEND = {"api_server_count": 4, "preprocessing_workers": 4, "mm_processor_cache_gb": 0}


def vlm_chat(index: int) -> GenerationRequest:
    """The vlm-chat shape: one 448x448 image (~196 tokens), 64 text tokens, 128 out."""
    return GenerationRequest(
        request_id=f"r{index}",
        prompt_tokens=64 + 198,
        max_tokens=128,
        ignore_eos=True,
        images=(ImageInput(448, 448, 198, f"image-{index}"),),
    )


def cost(**engine: object) -> CostModel:
    return CostModel(PROFILE, EngineConfig(model=MODEL_DIR, **engine))  # type: ignore[arg-type]


def run(concurrency: int, num_requests: int = 600, **engine: object):  # type: ignore[no-untyped-def]
    return simulate_closed_loop(cost(**engine), vlm_chat, concurrency=concurrency, num_requests=num_requests)


def test_profile_is_labeled_uncalibrated_and_matches_the_model_skeleton() -> None:
    assert PROFILE.calibrated is False
    assert PROFILE.model == ModelInfo.from_model_dir(MODEL_DIR)


def test_vllm_defaults_are_frontend_bound_near_the_design_target() -> None:
    defaults = run(256)
    wide = run(256, **WIDE_FRONTEND)
    assert 45 <= defaults.throughput_rps <= 65
    assert wide.throughput_rps > defaults.throughput_rps * 1.4
    assert defaults.max_running_seqs < 256  # the frontend, not the batch, is the limit


def test_throughput_rises_with_max_num_seqs_until_saturation() -> None:
    rates = [run(256, max_num_seqs=seqs, **WIDE_FRONTEND).throughput_rps for seqs in (8, 32, 128, 256, 1024)]
    assert rates[0] < rates[1] < rates[2] < rates[3]
    assert rates[4] == pytest.approx(rates[3], rel=0.02)  # concurrency 256: more seats do not help
    ceiling = run(1024, num_requests=2048, **WIDE_FRONTEND).throughput_rps
    assert 95 <= ceiling <= 130  # GPU-bound


def test_max_num_seqs_caps_the_running_batch() -> None:
    assert run(128, max_num_seqs=16, **WIDE_FRONTEND).max_running_seqs == 16


def test_fp8_kv_cache_doubles_kv_capacity() -> None:
    auto = cost(max_model_len=4096).kv_capacity_tokens
    fp8 = cost(max_model_len=4096, kv_cache_dtype="fp8").kv_capacity_tokens
    assert fp8 == pytest.approx(2 * auto, rel=0.001)


def test_quantized_weights_leave_more_kv() -> None:
    model = ModelInfo.from_model_dir(MODEL_DIR)
    bf16 = estimate_memory(EngineConfig(model=MODEL_DIR), model, 80)
    fp8 = estimate_memory(EngineConfig(model=MODEL_DIR, quantization="fp8"), model, 80)
    awq = estimate_memory(EngineConfig(model=MODEL_DIR, quantization="awq"), model, 80)
    assert awq.weights_gib < fp8.weights_gib < bf16.weights_gib
    assert bf16.kv_capacity_tokens < fp8.kv_capacity_tokens < awq.kv_capacity_tokens


def test_small_kv_cache_caps_concurrency_and_preempts() -> None:
    roomy = run(128, max_model_len=4096, **WIDE_FRONTEND)
    tight = run(128, max_model_len=4096, gpu_memory_utilization=0.1595, **WIDE_FRONTEND)
    tight_cost = cost(max_model_len=4096, gpu_memory_utilization=0.1595)
    assert tight_cost.kv_capacity_tokens < 128 * (262 + 128)  # not all 128 fit
    assert tight.max_running_seqs < roomy.max_running_seqs == 128
    assert tight.preemptions > 0 and roomy.preemptions == 0
    assert tight.completed == roomy.completed  # preempted sequences are recomputed, not lost


def test_engine_refuses_to_start_when_max_model_len_does_not_fit() -> None:
    assert cost(gpu_memory_utilization=0.3).memory.max_seqs_at_max_model_len == 0  # 262144 tokens do not fit


def test_chunked_prefill_splits_a_long_prompt() -> None:
    scheduler = BatchScheduler(cost(max_model_len=8192, max_num_batched_tokens=512))
    scheduler.add(GenerationRequest(request_id="long", prompt_tokens=2000, max_tokens=4, ignore_eos=True))
    steps = []
    while scheduler.has_work:
        outcome = scheduler.step()
        assert outcome is not None
        steps.append(outcome)
    assert [s.work.prefill_tokens for s in steps[:4]] == [512, 512, 512, 464]
    assert not steps[0].emitted and steps[3].emitted  # the first token comes with the last chunk
    assert len(steps) == 4 + 3


def test_without_chunked_prefill_a_long_prompt_waits_for_a_free_budget() -> None:
    scheduler = BatchScheduler(cost(max_model_len=2048, max_num_batched_tokens=2048, enable_chunked_prefill=False))
    scheduler.add(GenerationRequest(request_id="a", prompt_tokens=1500, max_tokens=8))
    scheduler.add(GenerationRequest(request_id="b", prompt_tokens=1500, max_tokens=8))
    first = scheduler.step()
    assert first is not None and first.work.prefill_tokens == 1500  # b does not fit the rest of the budget
    assert len(scheduler.waiting) == 1
    second = scheduler.step()
    assert second is not None and second.work.prefill_tokens == 1500 and second.work.decode_seqs == 1


def test_prompt_longer_than_the_budget_is_rejected_without_chunked_prefill() -> None:
    scheduler = BatchScheduler(cost(max_num_batched_tokens=1024, enable_chunked_prefill=False))
    with pytest.raises(RequestRejected):
        scheduler.add(GenerationRequest(request_id="x", prompt_tokens=2000, max_tokens=8))


def test_prompt_plus_max_tokens_beyond_max_model_len_is_rejected() -> None:
    scheduler = BatchScheduler(cost(max_model_len=1024))
    with pytest.raises(RequestRejected) as caught:
        scheduler.add(GenerationRequest(request_id="x", prompt_tokens=1000, max_tokens=100))
    assert caught.value.param == "max_tokens"


@pytest.mark.parametrize("enabled", [True, False])
def test_prefix_caching_skips_a_shared_system_prompt(enabled: bool) -> None:
    scheduler = BatchScheduler(cost(max_model_len=4096, enable_prefix_caching=enabled))

    def request(name: str) -> GenerationRequest:
        return GenerationRequest(request_id=name, prompt_tokens=600, max_tokens=2, prefix_hash="sys", prefix_tokens=500)

    scheduler.add(request("first"))
    first = scheduler.step()
    scheduler.add(request("second"))
    second = scheduler.step()
    assert first is not None and second is not None
    assert first.work.prefill_tokens == 600
    assert second.work.prefill_tokens == (600 - 496 if enabled else 600)  # whole 16-token blocks


def test_fewer_frontends_means_longer_ttft_under_load() -> None:
    assert run(256).mean_ttft_s > 2 * run(256, **WIDE_FRONTEND).mean_ttft_s


def test_output_length_is_seeded_without_ignore_eos() -> None:
    scheduler = BatchScheduler(cost(max_model_len=4096))
    one = scheduler.add(GenerationRequest(request_id="a", prompt_tokens=10, max_tokens=50, seed=3))
    two = scheduler.add(GenerationRequest(request_id="b", prompt_tokens=10, max_tokens=50, seed=3))
    exact = scheduler.add(GenerationRequest(request_id="c", prompt_tokens=10, max_tokens=50, ignore_eos=True))
    assert one.target_tokens == two.target_tokens <= 50
    assert exact.target_tokens == 50


def _drain(scheduler: BatchScheduler) -> None:
    while scheduler.has_work:
        scheduler.step()


def test_a_repeated_prompt_hits_the_prefix_cache_and_is_counted_as_vllm_counts() -> None:
    scheduler = BatchScheduler(cost(max_model_len=4096))

    def request(name: str, last: str, max_tokens: int = 1) -> GenerationRequest:  # an image (300 tokens), text: 605
        return GenerationRequest(
            request_id=name, prompt_tokens=605, max_tokens=max_tokens, prompt_prefixes=(("image-a", 300), (last, 605))
        )

    scheduler.add(request("first", "text-1"))
    assert scheduler.step().work.prefill_tokens == 605  # type: ignore[union-attr]
    _drain(scheduler)
    scheduler.add(request("same", "text-1"))
    assert scheduler.step().work.prefill_tokens == 605 - 592  # type: ignore[union-attr]  # all but the last token, in whole blocks
    _drain(scheduler)
    scheduler.add(request("same image, other text", "text-2"))
    assert scheduler.step().work.prefill_tokens == 605 - 288  # type: ignore[union-attr]
    _drain(scheduler)
    assert (scheduler.prefix_cache_queries, scheduler.prefix_cache_hits) == (3 * 605, 592 + 288)
    assert scheduler.reset_prefix_cache() is True
    scheduler.add(request("after the reset", "text-1", max_tokens=4))
    assert scheduler.step().work.prefill_tokens == 605  # type: ignore[union-attr]
    assert scheduler.reset_prefix_cache() is False  # as vLLM: not while a sequence holds KV blocks


def test_prefix_cache_counters_stay_zero_when_prefix_caching_is_off() -> None:
    scheduler = BatchScheduler(cost(max_model_len=4096, enable_prefix_caching=False))
    for name in ("a", "b"):
        scheduler.add(GenerationRequest(request_id=name, prompt_tokens=100, max_tokens=1, prompt_prefixes=(("p", 100),)))
        _drain(scheduler)
    assert scheduler.prefix_cache_queries == scheduler.prefix_cache_hits == 0
