"""The import graph of ``detectors/`` and ``streams/``: no cycles, and a pure core.

The graph is read from the source with :mod:`ast` (nothing is imported): every ``import``
and ``from … import`` counts, wherever it stands (module level, inside a function, under
``if TYPE_CHECKING``), with relative imports resolved against the importing module. An
edge goes to the longest project module that prefixes the imported name, so
``from streams.live.app import create_app`` is an edge to ``streams.live.app`` and
``from streams.live import app`` one to ``streams.live.app`` too. Importing a submodule
also runs its package's ``__init__``; that implicit edge is not counted, since a package
importing its own submodules is the usual layout and not a cycle.

``detectors/`` is the pure core: it must not import ``streams``, Faust, aiokafka, aiohttp
or asyncio.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("detectors", "streams")
CORE = "detectors"
FORBIDDEN_IN_CORE = ("streams", "faust", "aiokafka", "aiohttp", "asyncio")


@dataclass(frozen=True)
class Import:
    name: str  # absolute dotted name as imported (a module, or a module's attribute)
    line: int


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[-1] == "__init__"
    if package:
        parts.pop()
    return ".".join(parts), package


def _imports(source: str, module: str, package: bool) -> list[Import]:
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if package else module.split(".")[:-1]
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            # ``from p import x``: x is a submodule of p, or a name in p (the edge then goes to p).
            out += [Import(base_name if alias.name == "*" else f"{base_name}.{alias.name}", node.lineno)
                    for alias in node.names]
    return out


def read_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, list[Import]]:
    """Every project module under ``root/<package>`` and what it imports."""
    graph: dict[str, list[Import]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module, is_package = _module_name(path, root)
            graph[module] = _imports(path.read_text(encoding="utf-8"), module, is_package)
    return graph


def project_edges(graph: dict[str, list[Import]]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}."""
    edges: dict[str, dict[str, int]] = {m: {} for m in graph}
    for module, imports in graph.items():
        for imp in imports:
            parts = imp.name.split(".")
            target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in graph),
                          None)
            if target is not None and target != module:
                edges[module].setdefault(target, imp.line)
    return edges


def find_cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """One cycle (``[a, b, …, a]``) per strongly connected component with more than one module."""
    edges = project_edges(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan, iteratively (no recursion limit on a long chain)
        work = [(v, iter(sorted(edges[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, successors = work[-1]
            for w in successors:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_a_cycle(component, edges) for component in sorted(components)]


def _a_cycle(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """The shortest cycle through the component's first module (breadth first, within it)."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start] + path[::-1][1:] + [start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {component}")  # pragma: no cover


def find_forbidden(graph: dict[str, list[Import]], core: str = CORE,
                   forbidden: tuple[str, ...] = FORBIDDEN_IN_CORE) -> list[str]:
    """``module:line imports name`` for every import in ``core`` of a forbidden top-level package."""
    out = []
    for module, imports in sorted(graph.items()):
        if module != core and not module.startswith(core + "."):
            continue
        for imp in imports:
            if imp.name.split(".")[0] in forbidden:
                out.append(f"{module}:{imp.line} imports {imp.name}")
    return sorted(set(out))


def check_no_cycles(graph: dict[str, list[Import]]) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def check_pure_core(graph: dict[str, list[Import]]) -> None:
    bad = find_forbidden(graph)
    assert not bad, "detectors/ must stay pure:\n" + "\n".join("  " + b for b in bad)


# --- the project -----------------------------------------------------------------------------

def test_the_graph_is_read():
    graph = read_graph()
    assert "detectors.gate" in graph and "streams.live.app" in graph
    assert "streams.live.runtime" in project_edges(graph)["streams.live.app"]


def test_no_import_cycles():
    check_no_cycles(read_graph())


def test_the_core_imports_no_streams_faust_aiokafka_aiohttp_or_asyncio():
    check_pure_core(read_graph())


# --- the checks themselves can fail -----------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, list[Import]]:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return read_graph(tmp_path, ("detectors", "streams"))


def test_a_cycle_is_found_and_reported(tmp_path):
    graph = _tree(tmp_path, {
        "detectors/__init__.py": "",
        "streams/__init__.py": "",
        "streams/live/__init__.py": "",
        "streams/live/app.py": "def create_app():\n    from .agents import register\n",
        "streams/live/agents.py": "from streams.live.app import create_app\n",
        "streams/live/ok.py": "from streams.live import app\n",  # into the cycle, not part of it
        "streams/cli/__init__.py": "from . import live\n",
        "streams/cli/live.py": "from .. import cli\n",  # relative, two levels, resolved
    })
    cycles = find_cycles(graph)
    assert cycles == [["streams.cli", "streams.cli.live", "streams.cli"],
                      ["streams.live.agents", "streams.live.app", "streams.live.agents"]]
    with pytest.raises(AssertionError, match="streams.live.agents -> streams.live.app -> streams.live.agents"):
        check_no_cycles(graph)


def test_a_longer_cycle_is_reported_in_order(tmp_path):
    graph = _tree(tmp_path, {
        "detectors/__init__.py": "",
        "streams/__init__.py": "",
        "streams/a.py": "import streams.b\n",
        "streams/b.py": "from streams.c import f\n",
        "streams/c.py": "import os\n\ndef f():\n    import streams.a\n",
    })
    assert find_cycles(graph) == [["streams.a", "streams.b", "streams.c", "streams.a"]]


def test_no_cycle_in_a_tree(tmp_path):
    graph = _tree(tmp_path, {
        "detectors/__init__.py": "",
        "detectors/x.py": "from . import y\n",
        "detectors/y.py": "import math\n",
        "streams/__init__.py": "",
        "streams/s.py": "from detectors.x import thing\nfrom streams import t\n",
        "streams/t.py": "import detectors\n",
    })
    assert find_cycles(graph) == []
    assert find_forbidden(graph) == []


def test_a_forbidden_import_in_the_core_is_found(tmp_path):
    graph = _tree(tmp_path, {
        "detectors/__init__.py": "",
        "detectors/pipeline/__init__.py": "",
        "detectors/pipeline/run.py": "def go():\n    import asyncio\n",
        "detectors/gate.py": "from streams.live.app import create_app\n",
        "detectors/ok.py": "import asynciox\nfrom detectors import gate\nimport os.path\n",
        "streams/__init__.py": "import faust\n",  # streams may use Faust
    })
    assert find_forbidden(graph) == ["detectors.gate:1 imports streams.live.app.create_app",
                                     "detectors.pipeline.run:2 imports asyncio"]
    with pytest.raises(AssertionError, match="detectors.pipeline.run:2 imports asyncio"):
        check_pure_core(graph)


def test_relative_imports_resolve(tmp_path):
    graph = _tree(tmp_path, {
        "detectors/__init__.py": "",
        "detectors/pipeline/__init__.py": "from .judge import Judge\n",
        "detectors/pipeline/judge.py": "from ..gate import Gate\nfrom . import aggregate\n",
        "detectors/pipeline/aggregate.py": "",
        "detectors/gate.py": "",
        "streams/__init__.py": "",
    })
    edges = project_edges(graph)
    assert edges["detectors.pipeline"] == {"detectors.pipeline.judge": 1}
    # ``from . import aggregate`` is the submodule, not the package (no cycle with its __init__)
    assert edges["detectors.pipeline.judge"] == {"detectors.gate": 1, "detectors.pipeline.aggregate": 2}
    assert find_cycles(graph) == []
