"""The import graph of autotune/ and serving/: no circles, and each layer imports only the layers below it.

Imports are read from the source (ast), at module level and inside functions alike (a function-level import is
still a dependency). Layering counts `if TYPE_CHECKING:` imports too; circles are looked for among the imports that
run (a module that types an argument with a class whose module imports it, such as the space's checks taking a
`SearchSpace`, has no load-order circle). Layers, ground first (docs/architecture.md):

    ground (errors, base_models) < observe < base (config, redact, hub, ...) < bench < space < serving < tune
    < report < cli

A module may import its own layer and any layer below. An import running up the layers is allowed only when named
in ALLOWED_UPWARD (at most one), or in PENDING: upward imports that another change of the same refactor removes
(the list is pruned once they are gone; a PENDING entry that no longer exists fails the test, so it cannot rot).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("autotune", "serving")

# (layer name, module prefixes), ground first. The longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("autotune.errors", "autotune.base_models")),
    ("observe", ("autotune.observe",)),
    (
        "base",
        (
            "autotune", "autotune.config", "autotune.redact", "autotune.hub", "autotune.model_files",
            "autotune.memory_model", "autotune.cache", "autotune.workloads", "autotune.profiles",
        ),
    ),
    ("bench", ("autotune.bench",)),
    ("limits", ("autotune.limits",)),
    ("space", ("autotune.space",)),
    ("serving", ("serving",)),
    ("tune", ("autotune.tune", "autotune.tracking", "autotune.calibrate")),
    ("report", ("autotune.report", "autotune.deploy")),
    ("cli", ("autotune.cli",)),
]

# The one import allowed to run up the layers (importer, imported), with why.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("autotune.bench.dataset", "serving.schemas"): "a dataset line is what our server accepts: one wire format",
}

# Upward imports that another change removes; empty once the refactor has landed (an entry that no longer exists
# fails the test, so the list cannot rot).
PENDING: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The project module that `name` (a module, or a name inside one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _typing_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return found


def _imported_names(module: str, path: Path, *, runtime_only: bool = False) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _typing_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_owner(name) for name in _imported_names(module, path, runtime_only=runtime_only)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    assert best is not None, f"{module}: in no layer (add it to LAYERS)"
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    }


def test_the_graph_reads_the_known_edges() -> None:
    graph = import_graph()
    assert "autotune.tune.samplers" in graph["autotune.tune.screen"]  # a module-level import
    assert "autotune.config" in graph["autotune.tune.study"]
    # a typing-only import (`if TYPE_CHECKING:`) counts for the layers, not for circles
    assert "autotune.space.search_space" in graph["autotune.space.checks"]
    assert "autotune.space.search_space" not in import_graph(runtime_only=True)["autotune.space.checks"]


def test_no_import_circles() -> None:
    circles = strongly_connected(import_graph(runtime_only=True))
    assert circles == [], "import circles (strongly connected components):\n" + "\n".join(map(str, circles))


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_run_down_the_layers() -> None:
    assert len(ALLOWED_UPWARD) <= 1
    upward = upward_imports(import_graph())
    unexpected = sorted(upward - set(ALLOWED_UPWARD) - PENDING)
    names = [name for name, _ in LAYERS]
    assert unexpected == [], "imports running up the layers (" + " < ".join(names) + "):\n" + "\n".join(
        f"{a} ({names[layer_of(a)]}) -> {b} ({names[layer_of(b)]})" for a, b in unexpected
    )
    stale = sorted((set(ALLOWED_UPWARD) | PENDING) - upward)
    assert stale == [], f"listed upward imports that are gone (remove them from the list): {stale}"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # A name imported from a module that no longer defines it passes the static checks above and fails only when
    # the import runs (a moved function behind `autotune serve`'s command registration once crashed every server).
    skipped = {name for name in MODULES if name.endswith("__main__") or name == "serving.autostart.sitecustomize"}
    names = sorted(set(MODULES) - skipped)
    script = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
