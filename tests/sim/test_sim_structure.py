"""The simulator's shape: one method module per API namespace.

Its other rules are checked with netprov's: no import cycle and no function over 150 lines in
tests/architecture/test_structure.py, nothing of netprov imported in the import-linter contracts."""

from __future__ import annotations

import pkgutil

import pytest

from truenas_sim import methods
from truenas_sim.nas import Nas
from truenas_sim.profiles import PROFILES


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
