"""A checkout needs nothing beside it, and the README names every command."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import typer.main

from autotune.cli.main import app  # every command registered (the _app module alone has those imported so far)

ROOT = Path(__file__).resolve().parents[2]
# Ways of reaching the folder that lies beside the developers' checkouts (and CI's), never beside a user's.
OUTSIDE = re.compile(r"\.\./shared/|/work/shared|\"shared\" */ *\"models\"|parents\[3\] */ *\"shared\"")
TEXT_SUFFIXES = {".py", ".sh", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json"}
SKIPPED_FOLDERS = {".git", ".venv", "__pycache__", ".pytest_cache", ".gpu-stage", "node_modules"}


def _project_files() -> list[Path]:
    """Code, scripts, docs and configs; recorded experiment output (logs, results) is history, not instructions,
    but the scripts kept with it are run again."""
    found: list[Path] = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if parts & SKIPPED_FOLDERS or not path.is_file():
            continue
        if path.relative_to(ROOT).parts[0] == "experiments" and path.suffix not in (".sh", ".py"):
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in ("Dockerfile", "run"):
            found.append(path)
    return found


def test_nothing_reaches_outside_the_checkout() -> None:
    files = _project_files()
    assert ROOT / "search_spaces" / "simulated-quick.yaml" in files and ROOT / ".ci" / "run" in files
    reaching = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files if path != Path(__file__)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)
    ]
    assert reaching == []


def test_the_staging_script_reads_the_package_list_beside_it() -> None:
    stage = runpy.run_path(str(ROOT / "scripts" / "gpu" / "stage.py"))
    host = stage["host_packages"]()
    assert {"torch", "numpy"} <= host.keys()  # preinstalled on the GPU host: never staged


def test_the_readme_command_table_names_every_command() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `autotune ")]
    named = {match for line in table for match in re.findall(r"`autotune ([a-z-]+)", line)}
    assert set(commands) - named == set()
