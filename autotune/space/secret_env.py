"""Secrets in the engine env never reach a file.

An env value may be written `${VAR}`: it is expanded only in the server process's environment (from the tuner's own
environment, which trial servers inherit); trial config.yaml, best.yaml, the study storage and MLflow keep the
placeholder. A literal value under a secret-looking key (`engine_base.env.HF_TOKEN: hf_...` or
`fixed: {env.HF_TOKEN: ...}`) is turned into `${HF_TOKEN}` when the space is parsed, and its value kept apart
(`SearchSpace.secret_env`, exported to the tuner's environment by the tune preflight). Tuned parameters should not
carry secrets.
"""

from __future__ import annotations

from typing import Any

from autotune.redact import hide_secret_env, is_secret_key, placeholder_name


def hide_secrets(data: dict[str, Any]) -> dict[str, str]:
    """Literal secret env values (engine_base.env, fixed env.*) become `${KEY}`; returns {KEY: value}."""
    secrets: dict[str, str] = {}
    base = data.get("engine_base")
    if isinstance(base, dict) and isinstance(base.get("env"), dict):
        env, found = hide_secret_env({str(k): v for k, v in base["env"].items()})
        data["engine_base"] = {**base, "env": env}
        secrets.update(found)
    fixed = data.get("fixed")
    if isinstance(fixed, dict):
        cleaned = dict(fixed)
        for path, value in fixed.items():
            parts = str(path).split(".")
            if len(parts) == 2 and parts[0] == "env" and is_secret_key(parts[1]) and isinstance(value, str):
                if value and placeholder_name(value) is None:
                    cleaned[path] = "${" + parts[1] + "}"
                    secrets[parts[1]] = value
        data["fixed"] = cleaned
    return secrets
