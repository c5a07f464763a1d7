"""A small lab for running `netprov` as a user does: the TrueNAS simulator in this process, the PXE
server as a local directory (``transport: local``), and the CLI as a real subprocess, in a pipe or
on a pseudo-terminal.

``FailOn`` is the real simulator whose ``fail_call`` knob is armed when the first call of a given
method arrives (``fail_call = (0, ...)`` fails the call being counted), so a test can make exactly
"the first target create" (or the third ``iscsi.global.config`` read) fail without counting the
calls before it.
"""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from truenas_sim import Simulator


class FailOn(Simulator):
    """The simulator, failing the ``nth`` call (from now) of ``method`` with ``message`` (one shot)."""

    method: str | None = None
    message: str = ""
    nth: int = 1

    def _count_call(self, method):
        n = super()._count_call(method)
        if self.method is not None and method == self.method:
            self.nth -= 1
            if self.nth <= 0:
                self.method, self.nth = None, 1
                self.knobs.fail_call = (0, errno.EBUSY, self.message)
        return n


def inventory_text(url: str, root: Path, *, machines: dict[str, str], chap: dict[str, str] | None = None,
                   test_command: str = "true", restart_command: str = "true",
                   parent: str = "tank/netboot", extra_storage: str = "api_key_env: NAS_KEY") -> str:
    chap = chap or {}
    lines = []
    for name, mac in machines.items():
        c = f", chap: {{{chap[name]}}}" if name in chap else ""
        lines.append(f"  {name}: {{mac: '{mac}'{c}}}\n")
    return f"""\
version: 1
storage:
  nas: {{url: {url}, {extra_storage}, parent: {parent}, portal: 10.99.3.10}}
pxe_servers:
  pxe:
    transport: local
    sudo: false
    lock_path: {root}/netprov.lock
    interface: lo
    address: 10.99.3.5
    subnet: 10.99.3.0/24
    tftp_root: {root}/pxe/tftp
    dnsmasq_dir: {root}/pxe/dnsmasq.d
    hosts_dir: {root}/pxe/hosts
    ipxe: {{source: null}}
    test_command: {_yaml_str(test_command)}
    reload_command: "true"
    restart_command: {_yaml_str(restart_command)}
defaults: {{disk: {{size: 16M}}}}
machines:
{''.join(lines)}"""


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def create_parent(sim: Simulator, parent: str = "tank/netboot") -> None:
    from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
    with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as c:
        c.call("pool.dataset.create", {"name": parent, "type": "FILESYSTEM"})


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[FailOn]:
    """The ``sim`` fixture: a TrueNAS 25.04 simulator (``FailOn``) with tank/netboot made. A test module
    takes it with ``from tests.support.cli_lab import sim_fixture``."""
    s = FailOn(profile="25.04").start()
    try:
        create_parent(s)
        yield s
    finally:
        s.stop()


#: The iPXE binaries a PXE server's ``ipxe.source`` holds (the inventory's defaults and ipxe.efi).
IPXE_BINARIES = ("undionly.kpxe", "snponly.efi", "ipxe.efi", "snponly-arm64.efi")


def stand_in_ipxe(folder: Path) -> Path:
    """``folder`` filled with stand-in iPXE binaries, for ``ipxe: {source: folder}``."""
    folder.mkdir()
    for name in IPXE_BINARIES:
        (folder / name).write_bytes(b"stand-in iPXE binary\n")
    return folder


def _storage(url: str) -> str:
    return f"""\
version: 1
storage:
  nas:
    url: {url}
    api_key_env: TEST_NAS_KEY
    parent: tank/netboot
    portal: 10.99.1.10
pxe_servers:
"""


def local_server_inventory(url: str, tmp: Path, *, machines: str, server: str = "pxe", server_keys: str = "") -> str:
    """One NAS (its key in $TEST_NAS_KEY) and one ``transport: local`` PXE server under ``tmp/pxe`` whose
    iPXE binaries are stand-ins in ``tmp/ipxe``. ``server_keys``: more of the server's keys (indented four
    spaces, one a line); ``machines``: the machines' lines (indented two)."""
    pxe, ipxe = tmp / "pxe", stand_in_ipxe(tmp / "ipxe")
    return _storage(url) + f"""\
  {server}:
{server_keys}    transport: local
    sudo: false
    interface: lo
    address: 10.99.1.5
    subnet: 10.99.1.0/24
    tftp_root: {pxe}/tftp
    dnsmasq_dir: {pxe}/dnsmasq.d
    hosts_dir: {pxe}/hosts
    lock_path: {pxe}/netprov.lock
    ipxe: {{source: {ipxe}}}
machines:
{machines}"""


def ssh_server_inventory(url: str, sshd, pxe: Path, *, machines: str, test_command: str = "true") -> str:
    """One NAS (its key in $TEST_NAS_KEY) and one PXE server in dhcp mode reached over SSH at ``sshd`` (a
    ``tests.support.sshd.SshServer``), its roots under ``pxe`` and its iPXE binaries from Debian's
    /usr/lib/ipxe; every disk 8G. ``machines``: the machines' lines (indented two)."""
    return _storage(url) + f"""\
  pxe:
    ssh: {{host: 127.0.0.1, port: {sshd.port}, user: {sshd.user}, identity_file: {sshd.identity_file},
          known_hosts: {sshd.known_hosts}, sudo: false}}
    mode: dhcp
    interface: lo
    address: 10.99.1.5
    subnet: 10.99.1.0/24
    range: {{start: 10.99.1.100, end: 10.99.1.150}}
    tftp_root: {pxe}/tftp
    dnsmasq_dir: {pxe}/dnsmasq.d
    hosts_dir: {pxe}/hosts
    ipxe: {{source: /usr/lib/ipxe}}
    test_command: {_yaml_str(test_command)}
    reload_command: "true"
    restart_command: "true"
defaults: {{disk: {{size: 8G}}}}
machines:
{machines}"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def netprov(*args: str, env: dict, cwd: Path, terminal: bool = False, timeout: float = 120) -> Result:
    """Run ``python -m netprov ARGS`` in a pipe, or on a pseudo-terminal (stdout+stderr together)."""
    if not terminal:
        p = subprocess.run([sys.executable, "-m", "netprov", *args], capture_output=True, text=True, env=env,
                           cwd=cwd, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    # Wide enough that no line of interest wraps.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "netprov", *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "TERM": "dumb"}, cwd=cwd, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return Result(proc.returncode, "", out.decode(errors="replace").replace("\r\n", "\n"))
