"""Continuous batching as vLLM v1 schedules it, as a pure state machine (no clock, no asyncio).

Each `step()`: running sequences first (one decode token each, or the next prefill chunk), then,
if nothing was preempted, waiting sequences in FCFS order while there is room under
`max_num_seqs`, token budget `max_num_batched_tokens` and free KV blocks. When a running sequence
needs a KV block and none is free, the newest running sequence is preempted (recompute) back to the
front of the queue. The caller turns `StepOutcome.duration_s` into time.

Prefix caching: a waiting request reuses the longest prefix of its prompt (`prompt_prefixes`, or the shared
system prompt) that an earlier request computed, in whole 16-token blocks and never its last token, as vLLM's
KV-cache manager does; the cache is an LRU of `_PREFIX_CACHE_ENTRIES` prefixes. Like vLLM's
`vllm:prefix_cache_queries`/`_hits`, every new request admitted adds its prompt tokens to `prefix_cache_queries`
and the tokens found cached to `prefix_cache_hits` (requests resumed after a preemption are not counted; nothing
is counted with prefix caching off).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace

from autotune.memory_model import KV_BLOCK_SIZE_TOKENS, blocks_for
from serving.engines.base import GenerationRequest, RequestRejected
from serving.engines.cost_model import CostModel, StepWork

_PREFIX_CACHE_ENTRIES = 4096
DEFAULT_MAX_TOKENS_CAP = 1024  # a request without max_tokens generates at most this (simulated EOS)


@dataclass(eq=False, slots=True)
class Sequence:
    request: GenerationRequest
    target_tokens: int  # how many tokens it will generate
    generated: int = 0
    computed: int = 0  # tokens whose KV exists
    blocks: int = 0
    encoder_done: bool = False
    preemptions: int = 0
    prefixes_cached: int = 0  # how many of request.prompt_prefixes are already in the prefix cache
    token: object = None  # opaque handle of the caller (its output queue)

    @property
    def num_tokens(self) -> int:
        return self.request.prompt_tokens + self.generated

    @property
    def finished(self) -> bool:
        return self.generated >= self.target_tokens


@dataclass(slots=True)
class StepOutcome:
    duration_s: float
    work: StepWork
    emitted: list[Sequence] = field(default_factory=list)  # got one new token (in order)
    finished: list[Sequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)


def output_length(request: GenerationRequest) -> int:
    """Exactly max_tokens with ignore_eos, else a seeded length in [max_tokens/2, max_tokens]."""
    assert request.max_tokens is not None
    if request.ignore_eos:
        return request.max_tokens
    rng = random.Random(request.seed if request.seed is not None else request.request_id)
    return rng.randint(max(1, request.max_tokens // 2), request.max_tokens)


class BatchScheduler:
    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self.settings = cost.settings
        self.total_blocks = cost.kv_capacity_tokens // KV_BLOCK_SIZE_TOKENS
        self.used_blocks = 0
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions_total = 0
        self.steps_total = 0
        self.tokens_generated_total = 0
        self._prefix_cache: OrderedDict[str, None] = OrderedDict()
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    # -- admission -------------------------------------------------------------------------
    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """Fill in max_tokens when absent (what is left of the context, capped) and validate."""
        if request.max_tokens is None:
            left = self.settings.max_model_len - request.prompt_tokens
            request = replace(request, max_tokens=max(1, min(DEFAULT_MAX_TOKENS_CAP, left)))
        self.validate(request)
        return request

    def validate(self, request: GenerationRequest) -> None:
        """Refuse what could never run, as vLLM does (its messages, as a 400)."""
        assert request.max_tokens is not None
        s = self.settings
        if request.prompt_tokens + request.max_tokens > s.max_model_len:
            raise RequestRejected(
                f"This model's maximum context length is {s.max_model_len} tokens. However, you requested "
                f"{request.prompt_tokens + request.max_tokens} tokens ({request.prompt_tokens} in the messages, "
                f"{request.max_tokens} in the completion). Please reduce the length of the messages or completion.",
                param="max_tokens",
            )
        if not s.enable_chunked_prefill and request.prompt_tokens > s.max_num_batched_tokens:
            raise RequestRejected(
                f"The prompt ({request.prompt_tokens} tokens) is longer than max_num_batched_tokens "
                f"({s.max_num_batched_tokens}) and chunked prefill is disabled",
                param="messages",
            )
        if blocks_for(request.prompt_tokens + request.max_tokens) > self.total_blocks:
            raise RequestRejected(
                f"The request needs {request.prompt_tokens + request.max_tokens} tokens of KV cache but only "
                f"{self.total_blocks * KV_BLOCK_SIZE_TOKENS} fit",
                param="max_tokens",
            )

    def add(self, request: GenerationRequest, token: object = None) -> Sequence:
        request = self.resolve(request)
        seq = Sequence(request=request, target_tokens=output_length(request), token=token)
        self.waiting.append(seq)
        return seq

    def abort(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
            self._free(seq)
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass

    # -- state -------------------------------------------------------------------------------
    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def kv_usage(self) -> float:
        return self.used_blocks / self.total_blocks if self.total_blocks else 1.0

    # -- one step ------------------------------------------------------------------------------
    def step(self) -> StepOutcome | None:
        if not self.has_work:
            return None
        budget = self.settings.max_num_batched_tokens
        scheduled: list[tuple[Sequence, int]] = []
        preempted: list[Sequence] = []
        chunked = self.settings.enable_chunked_prefill

        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            new_tokens = min(seq.num_tokens - seq.computed, budget)
            if not self._allocate(seq, new_tokens, preempted):
                break  # `seq` itself was preempted: nothing older is left to free
            scheduled.append((seq, new_tokens))
            budget -= new_tokens
            index += 1

        if not preempted:
            while self.waiting and budget > 0 and len(self.running) < self.settings.max_num_seqs:
                seq = self.waiting[0]
                cached = self._cached_prefix(seq)
                new_tokens = seq.num_tokens - seq.computed - cached
                if not chunked and new_tokens > budget:
                    break
                new_tokens = min(new_tokens, budget)
                needed = blocks_for(seq.computed + cached + new_tokens) - seq.blocks
                if needed > self.total_blocks - self.used_blocks:
                    break
                self.waiting.popleft()
                if self.settings.enable_prefix_caching and seq.preemptions == 0:
                    self.prefix_cache_queries += seq.num_tokens
                    self.prefix_cache_hits += cached
                seq.computed += cached
                seq.blocks += needed
                self.used_blocks += needed
                self.running.append(seq)
                scheduled.append((seq, new_tokens))
                budget -= new_tokens

        return self._execute(scheduled, preempted)

    def _cached_prefix(self, seq: Sequence) -> int:
        request = seq.request
        if not self.settings.enable_prefix_caching or seq.computed:
            return 0
        found = 0
        for prefix_hash, tokens in reversed(request.prompt_prefixes):
            if prefix_hash in self._prefix_cache:
                self._prefix_cache.move_to_end(prefix_hash)
                found = tokens
                break
        if request.prefix_hash is not None and request.prefix_hash in self._prefix_cache:
            self._prefix_cache.move_to_end(request.prefix_hash)
            found = max(found, request.prefix_tokens)
        usable = min(found, seq.num_tokens - 1)
        return usable - usable % KV_BLOCK_SIZE_TOKENS

    def reset_prefix_cache(self) -> bool:
        """Forget every cached prefix, as vLLM's reset_prefix_cache: refused (False) while sequences hold KV blocks."""
        if self.running:
            return False
        self._prefix_cache.clear()
        return True

    def _allocate(self, seq: Sequence, new_tokens: int, preempted: list[Sequence]) -> bool:
        needed = blocks_for(seq.computed + new_tokens) - seq.blocks
        while needed > self.total_blocks - self.used_blocks:
            victim = self.running.pop()  # the newest; never one already scheduled this step
            self._preempt(victim)
            preempted.append(victim)
            if victim is seq:
                return False
        seq.blocks += needed
        self.used_blocks += needed
        return True

    def _preempt(self, seq: Sequence) -> None:
        self._free(seq)
        seq.computed = 0
        seq.encoder_done = False
        seq.preemptions += 1
        self.preemptions_total += 1
        self.waiting.appendleft(seq)

    def _free(self, seq: Sequence) -> None:
        self.used_blocks -= seq.blocks
        seq.blocks = 0

    def _execute(self, scheduled: list[tuple[Sequence, int]], preempted: list[Sequence]) -> StepOutcome:
        decode_seqs = prefill_tokens = context_tokens = image_tokens = 0
        for seq, new_tokens in scheduled:
            if seq.computed == seq.num_tokens - 1 and new_tokens == 1 and seq.generated > 0:
                decode_seqs += 1
            else:
                prefill_tokens += new_tokens
            context_tokens += seq.computed + new_tokens
            if not seq.encoder_done:
                image_tokens += seq.request.image_tokens
                seq.encoder_done = True
        work = StepWork(decode_seqs, prefill_tokens, context_tokens, image_tokens)
        outcome = StepOutcome(duration_s=self.cost.step_time_s(work), work=work, preempted=preempted)
        for seq, new_tokens in scheduled:
            seq.computed += new_tokens
            request = seq.request
            if request.prefix_hash is not None and seq.computed >= request.prefix_tokens:
                self._remember_prefix(request.prefix_hash)
            prefixes = request.prompt_prefixes
            while seq.prefixes_cached < len(prefixes) and prefixes[seq.prefixes_cached][1] <= seq.computed:
                self._remember_prefix(prefixes[seq.prefixes_cached][0])
                seq.prefixes_cached += 1
            if seq.computed < seq.num_tokens:
                continue  # a prefill chunk: no token yet
            seq.generated += 1
            self.tokens_generated_total += 1
            outcome.emitted.append(seq)
            if seq.finished:
                self.running.remove(seq)
                self._free(seq)
                outcome.finished.append(seq)
        self.steps_total += 1
        return outcome

    def _remember_prefix(self, prefix_hash: str) -> None:
        if not self.settings.enable_prefix_caching:
            return
        self._prefix_cache[prefix_hash] = None
        self._prefix_cache.move_to_end(prefix_hash)
        if len(self._prefix_cache) > _PREFIX_CACHE_ENTRIES:
            self._prefix_cache.popitem(last=False)
