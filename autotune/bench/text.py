"""Deterministic prompt text with a known token count.

Approximation: every word of `WORDS` is one token when preceded by a space in Qwen's
byte-level BPE (checked against the Qwen3-VL tokenizer: 1000 random words -> 1000 tokens),
and in most GPT-style BPE vocabularies too. So `n` words are `n` text tokens, before the chat
template's own tokens (role markers) and the image tokens that the server adds.
When a tokenizer file is given and the `tokenizers` package is installed, the text is
trimmed or extended until the tokenizer counts exactly `n` tokens.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from autotune.errors import ConfigError
from autotune.model_files import usable_model_dir

WORDS: tuple[str, ...] = tuple(
    """the of and to in is was for on are with as at be by this had not but from or have an they which
    one you were her all she there would their we him been has when who will more no if out so said what
    up its about into than them can only other new some could time these two may then do first any my
    now such like our over man me even most made after also did many before must through back years
    where much your way well down should because each just those people how too little state good very
    make world still own see men work long get here between both life being under never day same
    another know while last might us great old year off come since against go came right used take
    three place small house""".split()
)


class TokenCounter(Protocol):
    def __call__(self, text: str) -> int: ...


def make_text(num_tokens: int, rng: np.random.Generator) -> str:
    """`num_tokens` words drawn from WORDS (about one token each, see the module docstring)."""
    if num_tokens <= 0:
        return ""
    picks = rng.integers(0, len(WORDS), size=num_tokens)
    return " ".join(WORDS[i] for i in picks)


def fit_to_tokens(text: str, num_tokens: int, count: TokenCounter, rng: np.random.Generator) -> str:
    """Adjust `text` word by word until `count(text) == num_tokens` (or as close as words allow)."""
    words = text.split()
    for _ in range(4 * num_tokens + 8):
        current = count(" ".join(words))
        if current == num_tokens:
            break
        if current > num_tokens and words:
            words.pop()
        elif current < num_tokens:
            words.append(WORDS[int(rng.integers(0, len(WORDS)))])
        else:
            break
    return " ".join(words)


@functools.cache
def load_token_counter(path: str) -> TokenCounter:
    """A counter from a `tokenizer.json` (or a model folder holding one), via the `tokenizers` package."""
    source = Path(path)
    if source.is_dir():
        source = Path(usable_model_dir(source)) / "tokenizer.json"
    if not source.is_file():
        raise ConfigError(f"synthetic.tokenizer: no tokenizer.json at {path}")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError(
            "synthetic.tokenizer is set but the 'tokenizers' package is not installed (pip install tokenizers)"
        ) from None
    tokenizer = Tokenizer.from_file(str(source))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count
