"""PXE faults through a real sshd: the connection killed during staging, `dnsmasq --test`, commit and
restart; the test command and the restart failing (issue 10 item 10). See pxefaults.py."""

from __future__ import annotations

import pytest

from tests.faults import pxefaults as pf
from tests.support.sshd import SshServer


@pytest.fixture(scope="module")
def pxe_lab(tmp_path_factory):
    srv = SshServer.start(tmp_path_factory.mktemp("fm-sshd"))
    lab = None
    try:
        lab = pf.PxeLab(tmp_path_factory.mktemp("fm-pxe"), srv)
        yield lab
    finally:
        if lab is not None:
            lab.close()
        srv.stop()


@pytest.mark.parametrize("mode", pf.PXE_FAULTS)
def test_pxe_fault(pxe_lab, mode, record) -> None:
    res = record(pf.pxe_fault_cell(pxe_lab, mode))
    assert res.fault_fired and not res.problems, res.message()
