"""`autotune.observe` is the ground floor: it imports nothing of the packages that read it (bench, tune, report, cli,
serving), only itself, `autotune.errors` and the pydantic base models (`autotune.base_models`). Read from the source (ast), so a local
import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

OBSERVE = Path(__file__).resolve().parents[2] / "autotune" / "observe"
ALLOWED_PROJECT = ("autotune.observe", "autotune.errors", "autotune.base_models")
PROJECT_ROOTS = ("autotune", "serving")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a module of the package, relative ones resolved."""
    package = ".".join(path.relative_to(OBSERVE.parents[1]).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _upward(module: str) -> bool:
    if module.split(".")[0] not in PROJECT_ROOTS:
        return False  # standard library or a third-party package
    return not any(module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_PROJECT)


def test_observe_imports_nothing_above_it() -> None:
    files = sorted(OBSERVE.rglob("*.py"))
    assert len(files) > 10, f"the observe package was not found at {OBSERVE}"
    upward = [
        f"{path.relative_to(OBSERVE.parents[1])}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if _upward(module)
    ]
    assert upward == [], "autotune.observe imports a layer above it:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    assert _upward("autotune.bench.schemas") and _upward("serving.app") and _upward("autotune.tune")
    assert _upward("autotune.config")  # the configs sit above the ground floor; their base models do not
    assert not _upward("autotune.observe.gpm") and not _upward("autotune.base_models") and not _upward("numpy")
