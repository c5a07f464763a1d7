"""Fixtures for the end-to-end boot lab (real dnsmasq, tgtd, QEMU/TCG in network namespaces).

The boot cases (:mod:`tests.e2e.test_boot_cases`) build their labs through
:class:`tests.e2e.netprov_world.NetprovWorld` (lab + sshd + TrueNAS simulator, driven by
`netprov apply`); ``make_lab`` gives a bare lab (e.g. a tgtd to test the bridge against).

Tests skip (never pass) when not root or a binary/firmware is missing, and fail instead when
``NETPROV_REQUIRE_E2E=1`` (CI). Every lab is closed in
its fixture finalizer (PIDs stopped, namespaces deleted), again at exit (atexit in bootlab), and
leftovers of killed runs are swept before the first test here. Set ``NETPROV_E2E_KEEP=1`` to keep the
work directories (logs, serial output) of the tests.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.support import bootlab


@pytest.fixture(scope="session", autouse=True)
def _boot_lab_session():
    """Once per session, before the first test here (a session-scoped autouse fixture rather than
    ``pytest_sessionstart``, which a conftest below the rootdir only gets when named on the
    command line): sweep leftovers of killed runs, and make SIGTERM unwind like Ctrl-C."""
    if os.geteuid() == 0 and shutil.which("ip"):
        gone = bootlab.sweep_leftovers()
        if gone:
            print(f"boot lab: removed leftovers of killed runs: {', '.join(gone)}")
    # A SIGTERM (CI cancel) should stop the session like Ctrl-C does, through the fixture
    # finalizers, instead of killing pytest and leaving VMs and namespaces behind.
    installed = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if installed:
        signal.signal(signal.SIGTERM, _sigterm)
    yield
    if installed and signal.getsignal(signal.SIGTERM) is _sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture
def workdir(request):
    """A world-traversable work directory (dnsmasq drops to its own user and must read it)."""
    d = bootlab.new_workdir()
    yield d
    if os.environ.get("NETPROV_E2E_KEEP") == "1":
        print(f"\nboot lab work directory kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_lab(workdir):
    """``make_lab(mode="full"|"proxy", uefi=False) -> BootLab`` (started; closed after the test)."""
    labs: list[bootlab.BootLab] = []

    def make(mode: str = "full", uefi: bool = False) -> bootlab.BootLab:
        bootlab.require_lab(uefi=uefi)
        lab = bootlab.BootLab(workdir / f"lab{len(labs)}", mode=mode)
        labs.append(lab)
        return lab.start()

    yield make
    for lab in labs:
        lab.close()
