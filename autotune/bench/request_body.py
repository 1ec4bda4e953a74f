"""What every renderer of a request shares (synthetic, dataset, trace): its seeded RNG and its JSON body bytes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from autotune.bench.workload import Workload


def request_rng(*keys: int) -> np.random.Generator:
    """A generator seeded by `keys` (the workload seed, the request index, a stream): the same keys, the same draws."""
    return np.random.default_rng(np.random.SeedSequence([abs(k) for k in keys]))


def request_body(workload: Workload, model_name: str, messages: list[dict[str, Any]], max_tokens: int) -> bytes:
    body: dict[str, Any] = {
        "model": model_name,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if workload.ignore_eos:
        body["ignore_eos"] = True
    body.update(workload.extra_body)
    return json.dumps(body, separators=(",", ":")).encode()
