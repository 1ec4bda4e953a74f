"""Hugging Face hub ids as models: their config files fetched once with `huggingface_hub` and cached, never weights.

`model_files_dir(model)` is the local folder whose files describe `model`: the folder itself when `model` is one
(or is not shaped like a hub id), else the hub cache's snapshot of `org/name` holding `CONFIG_FILES` only. The
memory model (`autotune.memory_model`), the simulated engine's token counter and image grid (`serving.tokens`) read
their files from it, so they read the same cached files. Configs keep the id as written: vLLM is given the id and
resolves it itself (weights included), through the same cache.

The cache comes first: a snapshot that already holds `config.json` is used without asking the hub (what
`HF_HUB_OFFLINE=1` with a populated cache relies on; a study's trial servers do not ask the hub again). Otherwise
the files are fetched; where the hub cannot be reached, or the id names no model, `HubModelError` says so once,
with what to do. The cache is `huggingface_hub`'s (`HF_HUB_CACHE`, `HF_HOME`); `HF_TOKEN` reaches gated models.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from autotune.errors import ConfigError

CONFIG_FILES: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "tokenizer_config.json",
    "tokenizer.json",  # the text token counter reads it (a few MB, no weights)
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
"""What is fetched for a hub id: configs of the model, its processor and its tokenizer. Weights never are."""

# `org/name` as the hub spells repository ids (letters, digits, `-`, `_`, `.`; no `..` or `--` at the ends).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class HubModelError(ConfigError):
    """A hub id whose config files are neither cached nor fetchable (the one message the commands print)."""


def looks_like_hub_id(model: str) -> bool:
    """`org/name`, not a path that exists, not `./x`, `/x` or `~/x`."""
    if model.startswith((".", "/", "~")) or ".." in model:
        return False
    return bool(_HUB_ID.match(model)) and not Path(model).exists()


def model_files_dir(model: str | Path) -> Path:
    """The local folder holding `model`'s config files (see the module doc). Raises HubModelError for a hub id
    that can be neither found in the cache nor fetched; a missing local folder is returned as it is (the reader
    says which file it lacks)."""
    text = str(model)
    if not looks_like_hub_id(text):
        return Path(text).expanduser()
    return _hub_snapshot(text, _cache_key())


def require_model_files(models: Iterable[str]) -> None:
    """Resolve every hub id among `models` now (before a server or a study starts): one clear error or none."""
    for model in dict.fromkeys(models):
        model_files_dir(model)


def _cache_key() -> tuple[str | None, ...]:
    """The environment that decides where the cache is and whether the hub may be asked (part of the memo key)."""
    return tuple(os.environ.get(name) for name in ("HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT"))


@functools.cache
def _hub_snapshot(repo_id: str, cache_key: tuple[str | None, ...]) -> Path:
    """Cached per process: a tuner resolves its model once, each trial server once."""
    del cache_key  # part of the memo key only
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = list(CONFIG_FILES)
    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        if (cached / "config.json").is_file():
            return cached
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass  # not cached (or cached without config.json): fetch it
    where = f"model {repo_id!r} is not a local folder"
    try:
        fetched = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except GatedRepoError:
        raise HubModelError(
            f"{where}, and the Hugging Face hub model {repo_id} is gated: accept its terms on the hub and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise HubModelError(
            f"{where}, and the Hugging Face hub has no model {repo_id} (or it is private: set HF_TOKEN); "
            "check the spelling, or give a local model folder"
        ) from None
    except RevisionNotFoundError as exc:
        raise HubModelError(f"{where}, and the Hugging Face hub model {repo_id}: {exc}") from None
    except Exception as exc:  # LocalEntryNotFoundError, HfHubHTTPError, OSError, the HTTP client's own errors
        reason = "HF_HUB_OFFLINE is set, so the hub was not asked" if constants.is_offline_mode() else (
            f"the Hugging Face hub ({constants.ENDPOINT}) could not be reached: {_first_line(exc)}"
        )
        raise HubModelError(
            f"{where}, its config files are not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and {reason}. "
            "Give a local model folder, or run once where the hub is reachable (only config.json and the "
            "processor and tokenizer files are fetched, never weights) and reuse that cache"
        ) from None
    if not (fetched / "config.json").is_file():
        raise HubModelError(f"Hugging Face hub model {repo_id} has no config.json (not a transformers model?)")
    return fetched


def _first_line(exc: BaseException) -> str:
    """The network error underneath huggingface_hub's wrapper, on one line."""
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    return (f"{type(cause).__name__}: {text}" if text else type(cause).__name__).splitlines()[0][:300]
