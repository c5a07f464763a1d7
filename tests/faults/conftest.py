"""The fault matrix's worlds and cells (issue 10 item 10).

NAS cells are generated from a clean apply: its NAS calls are counted when the tests are collected, so
every call k of today's apply gets a cell, whatever netprov's call sequence becomes. Which cells run:

    NETPROV_FAULT_MATRIX=rotate (default)  every k on both protocols, the fault rotating with k and differing
                                           between the protocols (every k gets two of the three faults; a
                                           third of the cells, so the default suite stays within its budget)
    NETPROV_FAULT_MATRIX=full              every k x every fault (fail, drop, lose-reply) x both protocols
                                           (benchmarks/fault_matrix.py runs this and prints the table)

At the end of the session the closing table of the issue is printed for the cells that ran.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.faults import matrix as fm

PROFILES = ("25.04", "13")          # JSON-RPC /api/current, legacy /websocket
_BASE = Path(tempfile.mkdtemp(prefix="netprov-faults-"))
_WORLDS: dict[str, fm.World | Exception] = {}
RESULTS: list[fm.CellResult] = []


def _cleanup() -> None:
    for w in _WORLDS.values():
        if isinstance(w, fm.World):
            w.close()
    _WORLDS.clear()
    shutil.rmtree(_BASE, ignore_errors=True)


atexit.register(_cleanup)


def nas_world(profile: str) -> fm.World | Exception:
    """One world per protocol, built once (at collection: its clean apply sizes the matrix)."""
    if profile not in _WORLDS:
        try:
            _WORLDS[profile] = fm.World(_BASE / f"nas-{profile}", profile)
        except Exception as exc:  # noqa: BLE001 - reported by the cell that needs it
            _WORLDS[profile] = exc
    return _WORLDS[profile]


def nas_cells() -> list[tuple[str, str, int]]:
    mode = os.environ.get("NETPROV_FAULT_MATRIX", "rotate")
    cells = []
    for p, profile in enumerate(PROFILES):
        w = nas_world(profile)
        if isinstance(w, Exception):
            cells.append((profile, "setup", 0))
            continue
        for k in range(1, w.calls + 1):
            for f, fault in enumerate(fm.NAS_FAULTS):
                if mode == "full" or (k + p) % len(fm.NAS_FAULTS) == f:
                    cells.append((profile, fault, k))
    return cells


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "nas_cell" in metafunc.fixturenames:
        cells = nas_cells()
        ids = []
        for profile, fault, k in cells:
            w = _WORLDS.get(profile)
            method = w.call_log[k - 1] if isinstance(w, fm.World) and k else "setup"
            ids.append(f"{'jsonrpc' if profile != '13' else 'legacy'}-{fault}-k{k:02d}-{method}")
        metafunc.parametrize("nas_cell", cells, ids=ids)


@pytest.fixture
def record():
    """Collects each cell's result for the closing table."""
    def add(res: fm.CellResult) -> fm.CellResult:
        RESULTS.append(res)
        return res
    return add


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not RESULTS:
        return
    table = fm.cell_report(RESULTS)
    tr = terminalreporter
    tr.section("fault matrix (issue 10)")
    tr.write_line(f"cells run: {len(RESULTS)}, failing: {sum(1 for r in RESULTS if r.problems)}")
    for k, v in table.items():
        tr.write_line(f"  {k:<18} {v}")
