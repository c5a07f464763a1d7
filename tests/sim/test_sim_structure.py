"""The simulator's shape: no import cycle between its modules, no function over 150 lines, one method module
per API namespace, and nothing of netprov imported."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import grimp
import pytest

import truenas_sim
from truenas_sim import methods
from truenas_sim.nas import Nas
from truenas_sim.profiles import PROFILES

PACKAGE = Path(truenas_sim.__file__).parent
MAX_FUNCTION_LINES = 150


def _graph():
    return grimp.build_graph("truenas_sim", include_external_packages=True)


def test_no_import_cycle() -> None:
    graph = _graph()
    modules = sorted(m for m in graph.modules if m.startswith("truenas_sim"))
    assert "truenas_sim.nas" in modules and "truenas_sim.methods.pool_dataset" in modules  # the graph is real
    cycles = []
    for a in modules:
        for b in sorted(graph.find_modules_directly_imported_by(a)):
            if b.startswith("truenas_sim") and b != a:
                back = graph.find_shortest_chain(importer=b, imported=a)
                if back is not None:
                    cycles.append((a,) + back)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_check_sees_a_cycle() -> None:
    """The check above would fail on a cycle: add one to the graph and look for it the same way."""
    graph = _graph()
    graph.add_import(importer="truenas_sim.state", imported="truenas_sim.methods.pool_dataset")
    assert graph.find_shortest_chain(importer="truenas_sim.methods.pool_dataset", imported="truenas_sim.state")
    assert graph.find_shortest_chain(importer="truenas_sim.state", imported="truenas_sim.methods.pool_dataset")


def test_imports_nothing_of_netprov() -> None:
    graph = _graph()
    users = {m for m in graph.modules if m.startswith("truenas_sim")
             and any(i.split(".")[0] == "netprov" for i in graph.find_modules_directly_imported_by(m))}
    assert users == set()


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_over_150_lines() -> None:
    sizes = dict(_functions())
    assert len(sizes) > 100  # the walk found the simulator's functions
    long = {name: n for name, n in sizes.items() if n > MAX_FUNCTION_LINES}
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _namespace_module(method: str) -> str:
    return method.rpartition(".")[0].replace(".", "_")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_one_module_per_namespace(profile: str) -> None:
    """Each method served is registered by the module named after its namespace (``iscsi.extent.create`` by
    methods/iscsi_extent.py), and every namespace module is in the registry."""
    nas = Nas(PROFILES[profile])
    modules = {m.name for m in pkgutil.iter_modules(methods.__path__)}
    registered = {m.__name__.rpartition(".")[2] for m in methods.NAMESPACES}
    helpers = {"common", "dataset_read"}
    assert registered == modules - helpers
    for name, spec in nas.methods.items():
        func = getattr(spec.func, "func", spec.func)  # functools.partial or a closure
        assert func.__module__ == f"truenas_sim.methods.{_namespace_module(name)}" or (
            name.startswith("pool.snapshot.") and func.__module__ == "truenas_sim.methods.zfs_snapshot"), name
