"""`autotune export BEST.yaml --to vllm`: the tuned config as raw vLLM 0.24 runs it, without autotune.

The flags come from the same functions `autotune serve` uses (`EngineConfig.to_vllm_cli_args`, the launcher's
`serving_flags` and `vllm_serving_environment`), less our middleware. Two files:
- `serve.sh`: the environment and the `vllm serve MODEL --flag ...` command line;
- `vllm-config.yaml`: the same flags for `vllm serve --config vllm-config.yaml` (model included). vLLM 0.24 turns
  each key back into a flag (`FlexibleArgumentParser.load_config_file`): `key: true` -> `--key`, `key: false` -> nothing
  (so a flag turned off is written `no-key: true`), a mapping -> `--key JSON`, a list -> `--key a b`.
Every flag is checked against the options of `vllm serve` 0.24.0 read from vLLM's source
(`vllm_serve_flags/vllm-0.24.0.txt`, made by `autotune vllm-flags`); an unknown one is an error.

What raw vLLM cannot express is listed with what it needs: several engine cores on one GPU (`engines_per_gpu` > 1,
placed by autotune's launcher) and the limits of autotune's middleware (request and image sizes, private image URLs,
the queue bound). The export then runs one engine core per GPU: the files say so at the top.
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from autotune.config import EngineConfig, TunedConfig
from autotune.errors import ConfigError
from autotune.redact import placeholder_name
from serving.engines.vllm_launcher import serving_flags, vllm_serving_environment

VLLM_VERSION = "0.24.0"
FLAGS_RESOURCE = f"vllm_serve_flags/vllm-{VLLM_VERSION}.txt"
CONFIG_FILE = "vllm-config.yaml"
SCRIPT_FILE = "serve.sh"


class Unexpressible(BaseModel):
    """A setting of the tuned config that raw vLLM has no flag for, and what keeps it."""

    model_config = ConfigDict(extra="forbid")

    setting: str
    value: str
    needs: str


class VllmExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    flags: list[str] = Field(description="`vllm serve MODEL` arguments after the model")
    config: dict[str, Any] = Field(description="The --config YAML mapping (model first)")
    env: dict[str, str] = Field(description="Environment of the server; ${VAR} values come from the caller's environment")
    required_env: list[str] = Field(default_factory=list, description="Variables the caller must set (never written)")
    unexpressible: list[Unexpressible] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def argv(self) -> list[str]:
        return ["vllm", "serve", self.model, *self.flags]


@cache
def known_flags() -> frozenset[str]:
    """The long options of `vllm serve` in vLLM 0.24.0 (`--no-` forms included)."""
    text = (resources.files("autotune.deploy") / FLAGS_RESOURCE).read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.startswith("--"))


def _scalar(text: str) -> Any:
    """The YAML value whose `str()` gives back `text` (vLLM passes str(value) on): typed where that holds."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) and str(value) == text else text


def parse_flags(args: list[str]) -> list[tuple[str, list[str]]]:
    """`--a 1 --b --c x y` -> [('a', ['1']), ('b', []), ('c', ['x', 'y'])]; a flag given twice is an error."""
    parsed: list[tuple[str, list[str]]] = []
    for token in args:
        if token.startswith("--"):
            name = token[2:]
            if any(name == seen for seen, _ in parsed):
                raise ConfigError(f"--{name}: given twice in the exported flags")
            parsed.append((name, []))
        elif parsed:
            parsed[-1][1].append(token)
        else:
            raise ConfigError(f"{token!r}: a value before any flag")
    return parsed


def config_from_flags(args: list[str]) -> dict[str, Any]:
    """The --config mapping that vLLM 0.24 turns back into `args`."""
    config: dict[str, Any] = {}
    for name, values in parse_flags(args):
        if not values:
            config[name] = True
        elif len(values) > 1:
            config[name] = [_scalar(v) for v in values]
        elif values[0].startswith("{"):
            config[name] = json.loads(values[0])
        else:
            config[name] = _scalar(values[0])
    return config


def flags_from_config(config: dict[str, Any]) -> list[str]:
    """vLLM 0.24's reading of a --config file (vllm/utils/argparse_utils.py, `load_config_file`), for checking."""
    args: list[str] = []
    for key, value in config.items():
        if isinstance(value, bool):
            if value:
                args.append("--" + key)
        elif isinstance(value, list):
            if value:
                args.append("--" + key)
                args += [str(item) for item in value]
        elif isinstance(value, dict):
            args += ["--" + key, json.dumps(value)]
        else:
            args += ["--" + key, str(value)]
    return args


def same_flags(a: list[str], b: list[str]) -> bool:
    """The same flags and values (JSON values compared parsed, so spacing does not matter)."""

    def normal(args: list[str]) -> dict[str, list[Any]]:
        return {name: [json.loads(v) if v.startswith("{") else v for v in values] for name, values in parse_flags(args)}

    return normal(a) == normal(b)


def _unexpressible(tuned: TunedConfig) -> list[Unexpressible]:
    engine, serving = tuned.engine_config, tuned.serving
    found: list[Unexpressible] = []
    if engine.engines_per_gpu > 1:
        found.append(Unexpressible(
            setting="engine_config.engines_per_gpu",
            value=str(engine.engines_per_gpu),
            needs=(
                f"`autotune serve --config` (serving/engines/colocation.py places {engine.engines_per_gpu} vLLM "
                "data-parallel engine cores on each GPU, each with a fixed KV cache); vLLM 0.24 puts each data-parallel "
                "rank on its own GPU and refuses a GPU named twice. This export runs one engine core per GPU with the "
                "same gpu_memory_utilization: not the configuration that was measured"
            ),
        ))
    limits = ("max_request_bytes", "max_image_bytes", "max_image_pixels", "max_images_per_request", "max_queued_requests")
    found.append(Unexpressible(
        setting="serving limits",
        value=", ".join(f"{name} {getattr(serving, name)}" for name in limits)
        + ("" if serving.allow_private_image_urls else ", allow_private_image_urls false"),
        needs="`autotune serve --config` (its ASGI middleware, serving/vllm_middleware.py, refuses larger requests and "
        "images, image URLs to private addresses, and requests beyond the queue bound); vLLM 0.24 has no such limits",
    ))
    return found


def export_vllm(tuned: TunedConfig, model: str | None = None) -> VllmExport:
    """The raw-vLLM form of a tuned config; `model` replaces the config's model (a path on the serving host, or a hub id)."""
    engine: EngineConfig = tuned.engine_config.model_copy(update={"model": model or tuned.engine_config.model, "engines_per_gpu": 1})
    flags = [*engine.to_vllm_cli_args(), *serving_flags(tuned.serving)]
    unknown = [name for name, _ in parse_flags(flags) if "--" + name not in known_flags()]
    if unknown:
        raise ConfigError(
            f"engine_config: {', '.join('--' + n for n in unknown)}: not an option of vllm serve {VLLM_VERSION} "
            f"(autotune/deploy/{FLAGS_RESOURCE}); check extra_engine_args"
        )
    config = {"model": engine.model, **config_from_flags(flags)}
    if not same_flags(flags_from_config({k: v for k, v in config.items() if k != "model"}), flags):
        raise AssertionError(f"the --config mapping does not read back as the flags: {config} vs {flags}")
    env = {**vllm_serving_environment(tuned.serving), **tuned.engine_config.env}
    required = sorted({name for value in env.values() if (name := placeholder_name(value))})
    if tuned.serving.api_key is not None:
        required.append("VLLM_API_KEY")
    notes: list[str] = []
    if engine.load_format == "dummy":
        notes.append("load_format dummy: random weights (the study measured a weightless skeleton); drop --load-format "
                     "to serve the real weights")
    if tuned.provenance.simulated:
        notes.append("SIMULATED: this config was tuned on the simulated engine; its figures are not GPU measurements")
    return VllmExport(
        model=engine.model, flags=flags, config=config, env=env, required_env=required,
        unexpressible=_unexpressible(tuned), notes=notes,
    )


def _header(export: VllmExport, tuned: TunedConfig, source: str) -> list[str]:
    provenance = tuned.provenance
    origin = f"study {provenance.study}, trial {provenance.trial_number}" if provenance.study else "a tuned config"
    lines = [f"Raw vLLM {VLLM_VERSION} form of {source} ({origin}), written by `autotune export --to vllm`."]
    if export.unexpressible:
        lines.append("Not expressible in raw vLLM (serve the tuned file with `autotune serve --config` to keep them):")
        lines += [f"  - {item.setting} = {item.value}: needs {item.needs}" for item in export.unexpressible]
    lines += [f"Note: {note}" for note in export.notes]
    if export.required_env:
        lines.append(f"Set in the environment first (never written here): {', '.join(export.required_env)}")
    return lines


def _shell_value(value: str) -> str:
    return f'"{value}"' if placeholder_name(value) else shlex.quote(value)


def write_vllm_export(export: VllmExport, tuned: TunedConfig, out_dir: Path, source: str) -> list[Path]:
    """serve.sh (environment + command line) and vllm-config.yaml (the same flags for `vllm serve --config`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = _header(export, tuned, source)
    env_lines = [f"export {key}={_shell_value(value)}" for key, value in export.env.items()]
    checks = [f': "${{{name}:?set {name} first}}"' for name in export.required_env]
    groups = [f"vllm serve {shlex.quote(export.model)}"] + [
        " ".join(shlex.quote(part) for part in ["--" + name, *values]) for name, values in parse_flags(export.flags)
    ]
    command = " \\\n  ".join(groups)
    script = "\n".join([
        "#!/bin/sh",
        *(f"# {line}" for line in header),
        f"# The same flags as a file: vllm serve --config {CONFIG_FILE} (beside this script), with this environment.",
        "set -eu",
        *checks,
        *env_lines,
        f"exec {command}",
        "",
    ])
    env_text = " ".join(f"{key}={_shell_value(value)}" for key, value in export.env.items())
    config_text = "\n".join([
        *(f"# {line}" for line in header),
        f"# Run: {env_text} vllm serve --config {CONFIG_FILE}",
        "# (serve.sh beside this file sets the same environment and passes the same flags on the command line)",
        yaml.safe_dump(export.config, sort_keys=False, allow_unicode=True),
    ])
    script_path, config_path = out_dir / SCRIPT_FILE, out_dir / CONFIG_FILE
    script_path.write_text(script)
    script_path.chmod(0o755)
    config_path.write_text(config_text)
    return [script_path, config_path]
