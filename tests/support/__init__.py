"""Real-server test fixtures shared by netprov's integration and end-to-end tests.

- ``sshd``:        a real OpenSSH server on 127.0.0.1:<free port> with throwaway keys.
- ``netns``:       network namespaces (``np-`` + random suffix) and veth pairs, always cleaned up.
- ``dnsmasq``:     dnsmasq inside a namespace, with a restart helper script and SIGHUP.
- ``dhcp_client``: a stdlib-only DHCPDISCOVER client (raw socket) run inside a namespace.

Every process is started and stopped by its PID; every namespace is deleted, also on
failure (context managers / fixture finalizers) and at interpreter exit (``cleanup``).
``require_root()`` / ``require_binary()`` turn missing privileges or packages into a
pytest skip with a reason.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time

__all__ = ["cleanup", "kill_pid", "require_binary", "require_root"]

_PIDS: set[int] = set()
_NETNS: set[str] = set()


def register_pid(pid: int) -> None:
    _PIDS.add(pid)


def unregister_pid(pid: int) -> None:
    _PIDS.discard(pid)


def register_netns(name: str) -> None:
    _NETNS.add(name)


def unregister_netns(name: str) -> None:
    _NETNS.discard(name)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM ``pid``, wait, then SIGKILL. Reaps it if it is our child."""
    if pid > 1:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if _wait_gone(pid, timeout):
                break
    unregister_pid(pid)


def cleanup() -> None:
    """Stop every registered process and delete every registered namespace."""
    for pid in list(_PIDS):
        kill_pid(pid)
    for ns in list(_NETNS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        unregister_netns(ns)


atexit.register(cleanup)


def require_root() -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces / sshd as root)")


def require_binary(*names: str) -> dict[str, str]:
    """Paths of the named programs (PATH plus /usr/sbin, /sbin); skip the test if one is missing."""
    import pytest

    found = {}
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    for n in names:
        p = shutil.which(n, path=path)
        if not p:
            pytest.skip(f"needs {n} (Debian: "
                        f"{ {'dnsmasq': 'dnsmasq-base', 'sshd': 'openssh-server', 'ip': 'iproute2'}.get(n, n)})")
        found[n] = p
    return found
