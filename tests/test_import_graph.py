"""No import circle among the project's modules (issue 19 item 9).

Every import counts, the lazy ones inside functions included: a circle that only closes at run
time (search_int8 <-> rank, backends/trt <-> encoder, commands <-> cli before the fix) still makes
two modules one unit that cannot be understood, tested or moved alone. Imports are read with ast,
nothing is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "train", "export", "calib")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                # `from pkg import name`: the submodule pkg.name when it is one, else pkg itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # `import a.b.c` of a non-module name: its nearest module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    g = import_graph()
    assert "runtime.search.int8" in g["runtime.search.rank"]  # lazy, inside int8_searcher()
    assert "runtime.search.topk" in g["runtime.search.int8"]  # relative, module level
    assert "runtime.base.errors" in g["runtime.commands.match"]  # `from ..base.errors import UserError` in run()


def test_no_import_circle_among_project_modules() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]


def _folder(module: str) -> str:
    """runtime.gallery.store.local -> runtime.gallery: a package's first folder level below the root."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def folder_graph() -> dict[str, set[str]]:
    """Import edges between runtime's folders (runtime.base, runtime.search, runtime.gallery, ...);
    modules directly in runtime/ (api, cli, spec, ...) are the root and not folded together."""
    out: dict[str, set[str]] = {}
    for mod, targets in import_graph().items():
        if not mod.startswith("runtime.") or (mod.count(".") < 2 and not _is_folder(mod)):
            continue
        src = _folder(mod) if mod.count(".") >= 2 else mod
        for t in targets:
            if t.startswith("runtime.") and (t.count(".") >= 2 or _is_folder(t)):
                dst = _folder(t) if t.count(".") >= 2 else t
                if dst != src:
                    out.setdefault(src, set()).add(dst)
    return out


def _is_folder(module: str) -> bool:
    return (ROOT / Path(*module.split("."))).is_dir()


def test_runtime_folders_import_one_way() -> None:
    """issue 27 item 5: runtime/ is laid out by concept, and its folders form no import circle
    (base imports no other folder; search only base; gallery base and search; ...)."""
    g = folder_graph()
    assert {"runtime.base", "runtime.search", "runtime.gallery", "runtime.backends"} <= set(g) | {"runtime.base"}
    assert not g.get("runtime.base"), f"runtime.base imports {sorted(g['runtime.base'])}"
    assert g.get("runtime.search", set()) <= {"runtime.base"}, sorted(g["runtime.search"])
    cycles = _cycles({k: set(v) for k, v in g.items()} | {t: set() for v in g.values() for t in v if t not in g})
    assert not cycles, "folder import circles: " + "; ".join(" <-> ".join(c) for c in cycles)
