"""Structure a newcomer can read (issue 11): no netprov function over 100 lines, no simulator function over 150,
no import cycle between netprov's modules or the simulator's.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
NETPROV = ROOT / "netprov"
#: The TrueNAS simulator: its own top-level package (sim/truenas_sim), not part of the netprov wheel.
SIM_DIRS = [d for d in (ROOT / "sim" / "truenas_sim",) if d.is_dir()]
NETPROV_LIMIT, SIM_LIMIT = 100, 150


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function and method, nested ones too (``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _in_sim(path: Path) -> bool:
    return any(path.is_relative_to(d) for d in SIM_DIRS)


def _lengths() -> dict[tuple[str, str], tuple[int, int]]:
    """(file, function) -> (lines, its limit), for netprov and the simulator."""
    out = {}
    for path in sorted({*NETPROV.rglob("*.py"), *(p for d in SIM_DIRS for p in d.rglob("*.py"))}):
        limit = SIM_LIMIT if _in_sim(path) else NETPROV_LIMIT
        for name, lines in _functions(ast.parse(path.read_text(), str(path))):
            out[(path.relative_to(ROOT).as_posix(), name)] = (lines, limit)
    return out


LENGTHS = _lengths()


def test_the_scan_sees_every_function() -> None:
    assert SIM_DIRS, "sim/truenas_sim is missing"
    assert LENGTHS[("netprov/core/text.py", "one_line")] == (5, NETPROV_LIMIT)
    assert ("netprov/core/inventory_load.py", "Locator.__call__") in LENGTHS
    assert any(limit == SIM_LIMIT for _, limit in LENGTHS.values())
    assert len(LENGTHS) > 500


@pytest.mark.parametrize("limit", [NETPROV_LIMIT, SIM_LIMIT], ids=["netprov", "simulator"])
def test_no_function_over_the_limit(limit: int) -> None:
    over = {key: lines for key, (lines, lim) in LENGTHS.items() if lim == limit and lines > limit}
    assert not over, f"over {limit} lines: split them\n" + "\n".join(
        sorted(f"{f}: {name} is {lines} lines" for (f, name), lines in over.items()))


def _cycles(graph: grimp.ImportGraph) -> set[tuple[str, ...]]:
    """The import cycles: strongly connected groups of two or more modules (Tarjan), each as sorted names."""
    adjacent = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = set()
    for start in adjacent:              # iterative Tarjan: no recursion limit on a long import chain
        if start in index:
            continue
        work = [(start, iter(adjacent[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(adjacent.get(child, ()))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.add(tuple(sorted(group)))
    return cycles


def _graph() -> grimp.ImportGraph:
    packages = ["netprov"] + (["truenas_sim"] if importlib.util.find_spec("truenas_sim") else [])
    return grimp.build_graph(*packages)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == {("p.a", "p.b", "p.c")}


def test_no_import_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in sorted(cycles))
