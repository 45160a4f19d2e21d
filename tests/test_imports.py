"""Import structure: no import circles between the project's modules, and a light start.

The graph is read from the source (every `import` statement, those inside functions included, so a circle
hidden behind a lazy import is still found). A module importing its own parent package is the registry
pattern (`bench.models.convnet` registers into `bench.models`) and not a circle: the parent is always
initialised first.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "attacks", "baselines")
# imported only where they are used: none of them is needed to parse arguments or list the registries
HEAVY = ("timm", "lpips", "matplotlib", "scipy", "skimage", "sklearn", "torchvision", "torch._dynamo", "sympy")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement in the file refers to (`from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in imported_names(path) if m in modules and m != name and m not in ancestors}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_lazy_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "bench.distributed.client" in import_graph()["bench.client"]  # the edges are really read


def test_no_import_circles():
    assert cycles(import_graph()) == []


def _modules_after(code: str) -> dict:
    """Run `code` in a fresh interpreter (repository root first on the path) and list what it imported."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


def test_parsing_arguments_imports_no_numerical_library():
    modules = _modules_after("import bench.cli\nbench.cli.build_parser().parse_args(['ls', 'attacks'])")
    assert _loaded(modules, ("torch", "numpy", "tabulate", "yaml") + HEAVY) == []


def test_listing_imports_no_numerical_library():
    """Every `bench ls` reads the index (bench/listing.json): no registering module, no torch."""
    modules = _modules_after(
        "import contextlib, io\nfrom bench.cli import main\nfrom bench.listing import LISTS\n"
        "for what in LISTS:\n    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n        assert main(['ls', what]) == 0\n"
        "    assert len(out.getvalue().splitlines()) > 2, what"
    )
    assert "bench.listing" in modules and "tabulate" in modules  # the listings really ran
    assert _loaded(modules, ("torch", "numpy", "bench.attack", "attacks", "baselines") + HEAVY) == []
