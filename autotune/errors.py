"""One exception root for everything autotune raises on purpose."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class AutotuneError(Exception):
    """Base of every error that autotune reports to a user as a message (not a traceback)."""


class ConfigError(AutotuneError):
    """A config file (search space, workload, tuned config) or CLI option is invalid."""


class EngineUnavailableError(AutotuneError):
    """The requested engine cannot run here (for example vLLM is not installed)."""


def _describe_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(error: ValidationError, source: str | Path | None = None) -> str:
    """Render a pydantic error as lines `source: field.path: message (got value)`.

    Pydantic's messages already list the allowed values of a Literal/enum
    ("Input should be 'auto' or 'fp8'"), so each line names the field and what is allowed.
    """
    prefix = f"{source}: " if source else ""
    lines = []
    for item in error.errors(include_url=False):
        where = _describe_location(tuple(item.get("loc", ())))
        message = item.get("msg", "invalid value")
        got = item.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{prefix}{where}: {message}{shown}")
    return "\n".join(lines)


def config_error_from(error: ValidationError, source: str | Path | None = None) -> ConfigError:
    return ConfigError(format_validation_error(error, source))
