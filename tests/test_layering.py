"""The import graph of ``agent/`` has no cycle and never climbs a layer.

Layers, from the bottom: core; settings and formats; rules; store; connectors; tick;
views and queue; web; app. A module imports modules of its own layer or lower. Every import counts:
at the top, inside functions, under ``if TYPE_CHECKING:``; and a string naming an
``agent`` module (the provider registry's, loaded with importlib) counts as an import
for the layers too. The rules layer is pure: besides itself it imports only
``agent.core``, the pure ``agent.formats``, the standard library and a few pure libraries.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "agent"

LAYERS = {
    "core": 0,
    "settings": 1,
    "formats": 1,
    "rules": 2,
    "store": 3,
    "connectors": 4,
    "tick": 5,
    "views": 6,
    "queue": 6,
    "web": 7,
    "app": 8,
}

#: Import cycles allowed. THIS SET MUST STAY EMPTY: never add one (the test also fails
#: while a listed cycle no longer occurs).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

#: Imports from a lower layer to a higher one that exist today, as (importer, imported).
#: THIS SET MUST STAY EMPTY: the same rules as for KNOWN_CYCLES.
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()

#: Libraries the rules may use besides the standard library: pure computation, no I/O.
RULES_LIBRARIES = frozenset({"jinja2", "markupsafe", "holidays"})
#: Standard modules for files, processes, databases and the network: not in the rules.
RULES_FORBIDDEN = frozenset(
    {
        "asyncio", "ftplib", "glob", "http", "imaplib", "io", "multiprocessing", "os",
        "pathlib", "poplib", "select", "selectors", "shutil", "smtplib", "socket",
        "sqlite3", "ssl", "subprocess", "tempfile", "urllib",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    #: the importing file and line, as ``agent/rules/messages.py:12``
    where: str
    #: a string naming the module (importlib), not an import statement
    dynamic: bool = False


def modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Map every module name of ``package`` under ``root`` to its file."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The known module ``name`` refers to: itself, or its nearest known package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def absolute(node: ast.ImportFrom, source: str, path: Path) -> str:
    """The module a ``from`` import names, with a relative one resolved."""
    if not node.level:
        return node.module or ""
    anchor = source.split(".")
    if path.name != "__init__.py":
        anchor.pop()
    anchor = anchor[: max(0, len(anchor) - (node.level - 1))]
    return ".".join([*anchor, node.module] if node.module else anchor)


def imports(
    known: Mapping[str, Path], root: Path = ROOT, package: str = PACKAGE
) -> Iterator[Import]:
    """Every import of one ``package`` module by another, wherever it is written."""
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        file = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            targets: list[str] = []
            dynamic = False
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node, source, path)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in known else base)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in known
                and node.value.startswith(f"{package}.")
            ):
                targets, dynamic = [node.value], True
            for target in targets:
                if target != package and not target.startswith(f"{package}."):
                    continue
                resolved = _resolve(target, known)
                if resolved is not None and resolved != source:
                    yield Import(source, resolved, f"{file}:{getattr(node, 'lineno', 0)}", dynamic)


def layer_of(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return parts[1], LAYERS[parts[1]]


def upward(found: list[Import]) -> dict[tuple[str, str], str]:
    """Imports that climb a layer, each with the message that names it."""
    out: dict[tuple[str, str], str] = {}
    for imp in found:
        low, high = layer_of(imp.source), layer_of(imp.target)
        if low is None or high is None or high[1] <= low[1]:
            continue
        how = "names" if imp.dynamic else "imports"
        out.setdefault(
            (imp.source, imp.target),
            f"{imp.where}: {imp.source} (layer {low[0]}={low[1]}) {how} "
            f"{imp.target} (layer {high[0]}={high[1]})",
        )
    return out


def cycles(found: list[Import]) -> dict[frozenset[str], str]:
    """The import cycles: each strongly connected set of modules, with one cycle in it
    spelled out (``a -> b -> a``, with the lines of the imports)."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in found:
        if not imp.dynamic:
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return {frozenset(g): _spell(graph, g) for g in groups}


def _spell(graph: Mapping[str, Mapping[str, Import]], group: set[str]) -> str:
    """One cycle through the group's first module, found by a breadth-first search."""
    start = min(group)
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt, imp in sorted(graph.get(node, {}).items()):
            if nxt == start:
                steps = [*paths[node], imp]
                return " -> ".join([start, *(f"{s.target} ({s.where})" for s in steps)])
            if nxt in group and nxt not in paths:
                paths[nxt] = [*paths[node], imp]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import]]:
    known = modules(ROOT)
    return known, list(imports(known))


def test_every_module_belongs_to_a_layer(graph: tuple[dict[str, Path], list[Import]]) -> None:
    known, _ = graph
    stray = [m for m in known if m != PACKAGE and layer_of(m) is None]
    assert not stray, f"modules outside the layers {sorted(LAYERS)}: {stray}"


def test_no_import_cycle(graph: tuple[dict[str, Path], list[Import]]) -> None:
    found = cycles(graph[1])
    new = [spelled for group, spelled in found.items() if group not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(new)
    gone = [sorted(group) for group in KNOWN_CYCLES if group not in found]
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_no_import_climbs_a_layer(graph: tuple[dict[str, Path], list[Import]]) -> None:
    found = upward(graph[1])
    new = [message for pair, message in found.items() if pair not in KNOWN_UPWARD]
    assert not new, "imports from a lower layer to a higher one:\n" + "\n".join(new)
    gone = sorted(KNOWN_UPWARD - found.keys())
    assert not gone, f"these imports are gone: remove them from KNOWN_UPWARD: {gone}"


def test_rules_import_only_core_the_standard_library_and_pure_libraries() -> None:
    bad = []
    for module, path in modules(ROOT).items():
        if module != f"{PACKAGE}.rules" and not module.startswith(f"{PACKAGE}.rules."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node, module, path)
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == PACKAGE:
                    # formats are pure encodings (iCalendar, MIME): an invitation is text
                    allowed = name.split(".")[1:2] in (["core"], ["formats"], ["rules"])
                else:
                    allowed = (
                        top == "__future__"
                        or top in RULES_LIBRARIES
                        or (top in sys.stdlib_module_names and top not in RULES_FORBIDDEN)
                    )
                if not allowed:
                    where = f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
                    bad.append(f"{where}: {module} imports {name}")
    assert not bad, (
        "the rules layer imports only agent.core, agent.formats, the standard library (no files, "
        f"processes, databases or network) and {sorted(RULES_LIBRARIES)}:\n" + "\n".join(bad)
    )


# --- the checker itself finds what it must ------------------------------------------


def _tree(tmp_path: Path, files: Mapping[str, str]) -> tuple[dict[str, Path], list[Import]]:
    for name, text in {"agent/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    known = modules(tmp_path)
    return known, list(imports(known, tmp_path))


def test_the_checker_names_a_cycle_through_relative_and_lazy_imports(tmp_path: Path) -> None:
    _, found = _tree(
        tmp_path,
        {
            "agent/tick/__init__.py": "",
            "agent/tick/a.py": "from .b import thing\n",
            "agent/tick/b.py": "def f():\n    from agent.tick import c\n",
            "agent/tick/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import agent.tick.a\n"
            ),
        },
    )
    (group, spelled), *rest = cycles(found).items()
    assert not rest and group == {"agent.tick.a", "agent.tick.b", "agent.tick.c"}
    assert spelled == (
        "agent.tick.a -> agent.tick.b (agent/tick/a.py:1) -> agent.tick.c (agent/tick/b.py:2)"
        " -> agent.tick.a (agent/tick/c.py:3)"
    )


def test_the_checker_names_an_upward_import_with_file_line_and_layers(tmp_path: Path) -> None:
    _, found = _tree(
        tmp_path,
        {
            "agent/core/__init__.py": "",
            "agent/core/model.py": "import os\n\nfrom agent.store import sqlite\n",
            "agent/store/__init__.py": "",
            "agent/store/sqlite.py": "from agent.core.model import x\n",
            "agent/rules/__init__.py": "",
            "agent/rules/pick.py": 'PLUGINS = {"x": "agent.app.cli"}\n',
            "agent/app/__init__.py": "",
            "agent/app/cli.py": "",
        },
    )
    assert sorted(upward(found).values()) == [
        "agent/core/model.py:3: agent.core.model (layer core=0) imports agent.store.sqlite"
        " (layer store=3)",
        "agent/rules/pick.py:1: agent.rules.pick (layer rules=2) names agent.app.cli (layer app=8)",
    ]
