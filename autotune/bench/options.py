"""Parsing of `autotune bench` option strings into typed values (errors name the option)."""

from __future__ import annotations

from pydantic import ValidationError

from autotune.bench.schemas import SLO
from autotune.errors import ConfigError, config_error_from

SLO_NAMES = ("ttft_ms", "tpot_ms", "e2el_ms")


def parse_cpu_list(text: str, option: str = "--client-cpus") -> list[int]:
    """'0-3,6' -> [0, 1, 2, 3, 6] (the `taskset -c` syntax); errors name `option`."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                cpus.extend(range(low, high + 1))
            elif part:
                cpus.append(int(part))
    except ValueError:
        raise ConfigError(f"{option}: expected CPU numbers and ranges like 0-3,6 (got {text!r})") from None
    if not cpus or min(cpus) < 0:
        raise ConfigError(f"{option}: expected CPU numbers and ranges like 0-3,6 (got {text!r})")
    return sorted(set(cpus))


def parse_rate_range(text: str, option: str = "--rate-range") -> tuple[float, float]:
    """'40:120' -> (40.0, 120.0): requests/s, low below high; errors name `option`."""
    low, sep, high = text.partition(":")
    try:
        values = (float(low), float(high)) if sep else None
    except ValueError:
        values = None
    if values is None or not 0 < values[0] < values[1]:
        raise ConfigError(f"{option}: expected LOW:HIGH requests per second with 0 < LOW < HIGH, e.g. 40:120 (got {text!r})")
    return values


def parse_slo(pairs: list[str]) -> SLO:
    """['ttft_ms=2000', 'tpot_ms=50'] -> SLO; names: ttft_ms, tpot_ms, e2el_ms (also ttft:2000)."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.replace(":", "=", 1).partition("=")
        name = name.strip()
        if name in ("ttft", "tpot", "e2el"):
            name += "_ms"
        if not sep or name not in SLO_NAMES:
            raise ConfigError(f"--slo: expected NAME=MILLISECONDS with NAME one of {', '.join(SLO_NAMES)} (got {pair!r})")
        try:
            values[name] = float(value)
        except ValueError:
            raise ConfigError(f"--slo {name}: expected a number of milliseconds (got {value!r})") from None
    try:
        return SLO.model_validate(values)
    except ValidationError as exc:
        raise config_error_from(exc, "--slo") from None
