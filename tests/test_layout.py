"""The layout's promises, checked on the source: imports go one way only
(kernels < core < sources, models < engine < backends < loader < gate < driver
< integrations < tools < the CLI), no module imports itself back through
others (lazy imports inside functions count), backends never import the
Loader, and `import augpipe` stays the core only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "augpipe"

# group -> rank; a module may import its own group or a lower rank, nothing else
RANKS = {"kernels": 0, "_version": 0, "_files": 0, "core": 1, "sources": 2, "models": 2, "engine": 3, "backends": 4,
         "loader": 5, "gate": 6, "driver": 7, "integrations": 8, "tools": 9, "cli": 10, "__main__": 11,
         "__init__": 10}


def modules() -> dict[str, Path]:
    found = {}
    for path in PKG.rglob("*.py"):
        parts = ["augpipe", *path.relative_to(PKG).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(name: str, path: Path) -> set[str]:
    """Every augpipe module `name` imports, at any depth of its code."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "augpipe"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "augpipe":
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            out |= set(subs) if len(subs) == len(node.names) else {target, *subs}
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def group(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {group(m) for m in MODULES} <= set(RANKS), {group(m) for m in MODULES} - set(RANKS)


def test_imports_point_down_only():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if group(t) != group(m) and RANKS[group(t)] >= RANKS[group(m)]]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])
    # a package's __init__ re-exporting its modules is not a circle unless a module imports the package back
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_backends_never_import_the_loader():
    assert not [m for m in GRAPH if group(m) == "backends" and "augpipe.loader" in GRAPH[m]]


def test_nothing_but_the_cli_imports_tools():
    assert not [f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts
                if group(t) == "tools" and group(m) not in ("tools", "cli")]


@pytest.mark.parametrize("banned", ["ffcv", "nvidia.dali", "litdata", "lightning", "augpipe.gate", "augpipe.driver",
                                    "augpipe.tools", "torchvision"])  # torchvision: ~110 MB, loaded on use
def test_import_augpipe_loads_the_core_only(banned):
    code = f"import sys, augpipe; print(any(m == {banned!r} or m.startswith({banned!r} + '.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    """The parser must find imports inside functions, or the tests above could not fail."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from ..driver.train import train\n")
    assert "augpipe.driver.train" in imports("augpipe.core.mod", path)
