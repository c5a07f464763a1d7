"""NAS faults at every call k of an apply (A -> B), on both wire protocols (issue 10 item 10).

fail: call k answers with an error (whose text looks like rich markup, as real NAS messages do);
drop: the connection is cut when call k arrives (it never runs); lose: call k runs, its reply is lost
and the connection cut. After each: the failed apply ends with a one-line error and exit 1, DHCP serves
a complete generation, a machine whose storage failed keeps its old boot files, no two targets share a
credential; then a plain rerun converges with no duplicate, orphan or lost object. See matrix.py.
"""

from __future__ import annotations

from tests.faults import matrix as fm
from tests.faults.conftest import nas_world


def test_nas_fault(nas_cell, record) -> None:
    profile, fault, k = nas_cell
    world = nas_world(profile)
    assert isinstance(world, fm.World), f"the {profile} world could not be set up: {world}"
    res = record(fm.nas_fault_cell(world, fault, k))
    assert res.fault_fired and not res.problems, res.message()
