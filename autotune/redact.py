"""Keep secrets out of logs, MLflow and result files: passwords in URLs, keys and tokens in settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# `token` but not `tokenizer`/`max_num_batched_tokens`, `auth` but not `author`: those are settings, not secrets.
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token(?!i[sz]|s)|api[_-]?key|credential|auth(?!or))", re.IGNORECASE)


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


# `scheme://user:password@` anywhere in a text (exception messages quote whole URIs).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)(?P<password>[^\s@/'\"]+)(?=@)")
# An env value that names a variable of the tuner's environment: `${HF_TOKEN}`.
_PLACEHOLDER = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}$")


def redact_text(text: str) -> str:
    """Mask every URL password in free text (log lines, exception messages)."""
    return _URL_PASSWORD.sub(lambda match: match.group("head") + MASK, text)


def placeholder_name(value: object) -> str | None:
    """`${HF_TOKEN}` -> `HF_TOKEN`; None for any other value."""
    match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
    return match.group("name") if match else None


def hide_secret_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split engine env: secret-looking literal values become `${KEY}` placeholders.

    Returns (env with placeholders, {KEY: literal}) so the literals go to the tuner's process environment,
    which trial servers inherit, and never into files.
    """
    kept: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for key, value in env.items():
        if is_secret_key(key) and value not in (None, "") and placeholder_name(value) is None:
            kept[key] = "${" + key + "}"
            secrets[key] = str(value)
        else:
            kept[key] = value
    return kept, secrets


def missing_env_placeholders(env: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """`KEY (${VAR})` for each placeholder whose variable is not set in `environ`."""
    missing: list[str] = []
    for key, value in env.items():
        name = placeholder_name(value)
        if name is not None and name not in environ:
            missing.append(f"{key} (${{{name}}})")
    return missing


def expand_env(env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Placeholders replaced by their variable's value in `environ` (the server's own environment).

    An unset variable leaves the key out (the process keeps whatever it inherited).
    """
    expanded: dict[str, str] = {}
    for key, value in env.items():
        name = placeholder_name(value)
        if name is None:
            expanded[key] = value
        elif name in environ:
            expanded[key] = environ[name]
    return expanded
