"""List the long options `vllm serve` accepts, read from vLLM's source without importing it (no GPU, no torch).

    autotune vllm-flags VLLM_PACKAGE_DIR_OR_WHEEL > autotune/deploy/vllm_serve_flags/vllm-0.24.0.txt

Where the options come from in vLLM 0.24 (`vllm serve` = `make_arg_parser` in vllm/entrypoints/openai/cli_args.py):
- the explicit `add_argument("--x", ...)` calls of `make_arg_parser` and of `EngineArgs.add_cli_args` /
  `AsyncEngineArgs.add_cli_args` (vllm/engine/arg_utils.py);
- one `--field-name` per dataclass field of `BaseFrontendArgs` and `FrontendArgs` (cli_args.py), added in a loop.
An option is boolean (it also has `--no-x`, argparse.BooleanOptionalAction) when its call says so, or when its field's
annotation holds `bool` (vLLM's `_compute_kwargs`), except `bool | str | None` (a flag with an optional value).
vLLM's parser takes `_` for `-` in option names; the list has the `-` spelling. Platform plugins may add options at
run time (`current_platform.pre_register_and_update`); those are not in the source and not listed.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

from autotune.errors import AutotuneError

FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py", "vllm/version.py", "vllm/_version.py")


def _read_sources(location: Path) -> dict[str, str]:
    """The files of FILES that exist, from a wheel or from a folder holding the `vllm` package."""
    sources: dict[str, str] = {}
    if location.suffix == ".whl":
        with zipfile.ZipFile(location) as wheel:
            names = set(wheel.namelist())
            for name in FILES:
                if name in names:
                    sources[name] = wheel.read(name).decode()
        return sources
    root = location if (location / "vllm").is_dir() else location.parent
    for name in FILES:
        path = root / name
        if path.is_file():
            sources[name] = path.read_text()
    return sources


def _annotations(tree: ast.Module, classes: set[str]) -> dict[str, str]:
    """field name -> annotation source, for the named classes' annotated fields."""
    fields: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    fields[item.target.id] = ast.unparse(item.annotation)
    return fields


def _is_boolean(annotation: str) -> bool:
    parts = {part.strip() for part in annotation.split("|")}
    return "bool" in parts and parts != {"bool", "str", "None"}


def _explicit_flags(tree: ast.Module, fields: dict[str, str]) -> dict[str, bool]:
    """--flag -> boolean, from every `.add_argument("--flag", ...)` call."""
    flags: dict[str, bool] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")]
        if not names:
            continue
        boolean = any(
            kw.arg == "action" and "BooleanOptionalAction" in ast.unparse(kw.value) for kw in node.keywords
        )
        for kw in node.keywords:  # **model_kwargs["field"] or **{**model_kwargs["field"], ...}: the field's type decides
            if kw.arg is not None:
                continue
            for part in ast.walk(kw.value):
                if isinstance(part, ast.Subscript) and isinstance(part.slice, ast.Constant):
                    boolean = boolean or _is_boolean(fields.get(str(part.slice.value), ""))
        # a sub-config's kwargs (**mamba_kwargs["enable_stochastic_rounding"]) name that config's field, not the
        # engine's: the option's own field (--enable-mamba-cache-stochastic-rounding) says whether it is boolean
        from_kwargs = any(kw.arg is None for kw in node.keywords) and not any(kw.arg == "action" for kw in node.keywords)
        boolean = boolean or (from_kwargs and any(
            _is_boolean(fields.get(n.removeprefix("--").replace("-", "_"), "")) for n in names
        ))
        for name in names:
            flags[name] = flags.get(name, False) or boolean
    return flags


def serve_flags(location: Path) -> tuple[str, list[str]]:
    """(vLLM version, sorted long options of `vllm serve`, `--no-` forms included)."""
    sources = _read_sources(location)
    missing = [name for name in FILES[:2] if name not in sources]
    if missing:
        raise AutotuneError(f"{location}: missing {', '.join(missing)}")
    engine = ast.parse(sources["vllm/engine/arg_utils.py"])
    frontend = ast.parse(sources["vllm/entrypoints/openai/cli_args.py"])
    engine_fields = _annotations(engine, {"EngineArgs", "AsyncEngineArgs"})
    frontend_fields = _annotations(frontend, {"BaseFrontendArgs", "FrontendArgs"})
    flags = _explicit_flags(engine, engine_fields)
    for name, boolean in _explicit_flags(frontend, frontend_fields).items():
        flags[name] = flags.get(name, False) or boolean
    for field, annotation in frontend_fields.items():
        flags["--" + field.replace("_", "-")] = _is_boolean(annotation)
    listed = set(flags) | {"--no-" + name.removeprefix("--") for name, boolean in flags.items() if boolean}
    version = "unknown"
    for name in ("vllm/_version.py", "vllm/version.py"):
        for node in ast.walk(ast.parse(sources.get(name, ""))):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("__version__", "version") for t in node.targets):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    version = node.value.value
                    break
        if version != "unknown":
            break
    return version, sorted(listed)


def flags_listing(location: Path) -> str:
    """The shipped list's text (vllm_serve_flags/vllm-VERSION.txt): a header, then one option a line."""
    version, flags = serve_flags(location)
    header = [
        f"# Long options of `vllm serve` in vLLM {version}, read from its source by `autotune vllm-flags`",
        f"# (source: {location.name}; regenerate: autotune vllm-flags PATH_TO_VLLM_WHEEL_OR_SOURCE)",
        "# One per line; boolean options are listed with their --no- form too.",
    ]
    return "\n".join([*header, *flags]) + "\n"
