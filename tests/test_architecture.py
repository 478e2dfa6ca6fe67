"""The core knows no method: bench/ imports no module of defenses/, attacks/, purifiers/ or
metrics/ (plugins are reached through the registry), and no two modules of the project import
each other, directly or round a loop (module-level or inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "defenses", "attacks", "purifiers", "metrics", "leaderboard")
METHODS = ("defenses", "attacks", "purifiers", "metrics")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            parts = f.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module name an import statement in the file names (relative ones resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {target, *(f"{target}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t in _imports(m, f) if t in mods and t != m} for m, f in mods.items()}


def test_core_imports_no_method_module():
    bad = sorted((m, t) for m, targets in _graph().items() if m.split(".")[0] == "bench"
                 for t in targets if t.split(".")[0] in METHODS)
    assert not bad, f"bench/ imports method modules directly (use the registry): {bad}"


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_violation(tmp_path):
    """The scanner itself: a relative import and a function-level import are both found."""
    f = tmp_path / "mod.py"
    f.write_text("from .zoo import x\ndef f():\n    from defenses.rid import RID\n")
    assert {"bench.zoo", "defenses.rid"} <= _imports("bench.mod", f)
