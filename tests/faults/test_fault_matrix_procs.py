"""netprov as a process: SIGINT in each phase of an apply, and two applies at once (issue 10 item 10).
See procfaults.py."""

from __future__ import annotations

import pytest

from tests.faults import matrix as fm
from tests.faults import procfaults as pf


@pytest.fixture(scope="module")
def sigint_world(tmp_path_factory):
    w = fm.World(tmp_path_factory.mktemp("fm-sigint"), test_command=pf.SLOW_TEST)
    yield w
    w.close()


@pytest.mark.parametrize("phase", pf.SIGINT_PHASES)
def test_sigint(sigint_world, phase, record, tmp_path) -> None:
    res = record(pf.sigint_cell(sigint_world, phase, tmp_path))
    assert res.fault_fired and not res.problems, res.message()


@pytest.mark.parametrize("kind", pf.CONCURRENT)
def test_two_applies_at_once(kind, record, tmp_path) -> None:
    res = record(pf.concurrent_cell(kind, tmp_path))
    assert not res.problems, res.message()
