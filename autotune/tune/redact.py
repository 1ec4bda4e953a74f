"""Keep secrets out of logs, MLflow and result files: passwords in URLs, keys and tokens in settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api[_-]?key|credential|auth)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`; URLs without a password unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:{MASK}@{host}{port}", parts.path, parts.query, parts.fragment))


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Mask values whose key looks secret (HF_TOKEN, api_key, ...); URLs lose their password."""
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        last = key.rsplit(".", 1)[-1]
        if is_secret_key(last) and value not in (None, ""):
            cleaned[key] = MASK
        elif isinstance(value, str) and "://" in value:
            cleaned[key] = redact_url(value)
        else:
            cleaned[key] = value
    return cleaned
