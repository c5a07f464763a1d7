"""Fixtures for the PXE adapter tests: a real sshd on loopback, dnsmasq in a namespace."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# `python -m pytest` puts the repo root on sys.path; plain `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.core.bootfiles import BootFile, Root
from netprov.core.fileplan import check_ready, plan_files
from netprov.core.plan import Change
from tests.support import cleanup, kill_pid
from tests.support.dnsmasq import Dnsmasq, basic_conf
from tests.support.netns import Lab
from tests.support.sshd import SshServer

SERVER = "pxe1"


def plan_on(host: PxeHost, files: list[BootFile]) -> tuple[Change, ...]:
    """What the engine does for one server: read it, plan with the core planner, refuse a server that
    is not ready for an apply."""
    manifest = host.read(files)
    changes = plan_files(files, manifest)
    check_ready(manifest, changes)
    return changes


def file_changes(changes) -> list[Change]:
    return [c for c in changes if c.kind == "file"]


def by_path(changes) -> dict[str, Change]:
    return {c.payload.path: c for c in file_changes(changes)}


def has_changes(changes) -> bool:
    return any(c.is_change for c in changes)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    srv = SshServer.start(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.stop()


def make_roots(base: Path) -> dict[Root, str]:
    roots = {Root.TFTP: base / "tftp", Root.DNSMASQ: base / "dnsmasq.d", Root.HOSTS: base / "hosts"}
    return {r: str(p) for r, p in roots.items()}


@pytest.fixture
def roots(tmp_path) -> dict[Root, str]:
    return make_roots(tmp_path / "srv")


@pytest.fixture
def settings(sshd, roots, tmp_path) -> PxeSettings:
    """Settings for a PXE server without a dnsmasq (activation commands just log)."""
    log = tmp_path / "activations.log"
    return PxeSettings(server=SERVER, roots=roots, lock_path=str(tmp_path / "netprov.lock"),
                       dnsmasq="/usr/sbin/dnsmasq",
                       restart_command=f"echo restart >> {log}", reload_command=f"echo sighup >> {log}",
                       **sshd.settings_kwargs())


@pytest.fixture
def host(settings):
    h = PxeHost(settings)
    yield h
    h.close()


@dataclass
class DhcpEnv:
    lab: Lab
    dm: Dnsmasq
    settings: PxeSettings
    roots: dict[Root, str]

    def host(self) -> PxeHost:
        return PxeHost(self.settings)


@pytest.fixture
def dhcp_env(sshd, tmp_path):
    """A PXE server whose dnsmasq runs in a namespace (conf-dir + hostsdir = the roots),
    restarted/SIGHUPed by netprov over SSH, with a client namespace on the same link."""
    from tests.support import require_binary

    require_binary("dnsmasq", "ip")
    roots = make_roots(tmp_path / "srv")
    for d in roots.values():
        os.makedirs(d, exist_ok=True)
    lab = Lab.create()
    dm = None
    try:
        dm = Dnsmasq.start(lab.server_ns, tmp_path / "dnsmasq",
                           basic_conf(lab.subnet, lab.server_if, dnsmasq_dir=roots[Root.DNSMASQ],
                                      hosts_dir=roots[Root.HOSTS]))
        settings = PxeSettings(server=SERVER, roots=roots, lock_path=str(tmp_path / "netprov.lock"),
                               dnsmasq=dm.binary, restart_command=dm.restart_command,
                               reload_command=dm.reload_command, **sshd.settings_kwargs())
        yield DhcpEnv(lab, dm, settings, roots)
    finally:
        if dm is not None:
            dm.stop()
        for ns in (lab.server, lab.client):
            for pid in ns.pids():       # anything still inside (e.g. restarted by a test)
                kill_pid(pid)
        lab.delete()


def pytest_sessionfinish(session, exitstatus):
    cleanup()
