"""serving.vllm_startup_fixes: vLLM's pooled tokenizer is shared on deepcopy (a stand-in `vllm.tokenizers.hf`)."""

from __future__ import annotations

import copy
import sys
import types
from collections.abc import Iterator

import pytest

from serving.vllm_startup_fixes import OFF_ENV, share_pooled_tokenizer_on_deepcopy


class _Vocab:
    def __init__(self) -> None:
        self.tokens = {f"t{i}": i for i in range(1000)}


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """`vllm.tokenizers.hf` with the mixin that vLLM 0.24's TokenizerPool classes derive from."""
    hf = types.ModuleType("vllm.tokenizers.hf")

    class ThreadSafeHFTokenizerMixin:
        pass

    hf.ThreadSafeHFTokenizerMixin = ThreadSafeHFTokenizerMixin  # type: ignore[attr-defined]
    for name, module in (("vllm", types.ModuleType("vllm")), ("vllm.tokenizers", types.ModuleType("vllm.tokenizers")),
                         ("vllm.tokenizers.hf", hf)):
        monkeypatch.setitem(sys.modules, name, module)
    yield ThreadSafeHFTokenizerMixin


def test_a_deep_copy_of_a_pooled_tokenizer_is_the_pool_itself(fake_vllm: type) -> None:
    class TokenizerPool(_Vocab, fake_vllm):  # as vLLM builds it: (tokenizer class, mixin)
        pass

    class PlainTokenizer(_Vocab):
        pass

    pool, plain = TokenizerPool(), PlainTokenizer()
    assert copy.deepcopy(pool) is not pool  # vLLM as shipped: a full copy of the vocabulary
    assert share_pooled_tokenizer_on_deepcopy({}) is True
    kwargs = {"tokenizer": pool, "use_fast": True}
    copied = copy.deepcopy(kwargs)  # what transformers does with the processor's keyword arguments
    assert copied["tokenizer"] is pool and copied is not kwargs
    assert copy.deepcopy(plain) is not plain  # other tokenizers are copied as before
    assert share_pooled_tokenizer_on_deepcopy({}) is True  # idempotent


def test_the_fix_can_be_turned_off(fake_vllm: type) -> None:
    assert share_pooled_tokenizer_on_deepcopy({OFF_ENV: "0"}) is False
    assert "__deepcopy__" not in vars(fake_vllm)


def test_without_vllm_nothing_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    assert share_pooled_tokenizer_on_deepcopy({}) is False
