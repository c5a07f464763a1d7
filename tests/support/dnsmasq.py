"""dnsmasq running inside a test network namespace, driven like a real service.

    lab = Lab.create()
    dm = Dnsmasq.start(lab.server_ns, tmp_dir, conf_text, interface=lab.server_if)
    dm.pid                  # current PID (from its pid file)
    dm.restart_command      # "sh <dir>/restart.sh": stop by pid file, start again, exit code = dnsmasq's
    dm.reload_command       # "kill -HUP <pid from pid file>"
    dm.stop()

Each instance has its own ``--pid-file``, ``--dhcp-leasefile`` and log (several
dnsmasq instances share /run/dnsmasq.pid and the lease file otherwise), ``port=0``
(no DNS) and ``user=root`` (so it can read files in pytest's 0700 tmp dirs).

Why the restart script starts dnsmasq in daemon mode rather than with
``--keep-in-foreground``: a forking dnsmasq reports start-up failures (bad
config: exit 1, missing tftp-root: exit 3, …) through its exit code only after it
has parsed its config and bound its sockets — what ``systemctl restart`` relies
on — so the script's exit code is a faithful stand-in for a real restart command.
The script is plain sh and usable over SSH as a PXE server's ``restart_command``.
Processes are stopped by the PID in the pid file (zombies count as stopped).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support import kill_pid, pid_alive, register_pid, require_binary, unregister_pid

__all__ = ["Dnsmasq", "basic_conf"]

_RESTART = """#!/bin/sh
# Restart the test dnsmasq in network namespace {ns}. Exit code: dnsmasq's start-up result.
PIDF={pidf}
alive() {{ [ -r /proc/$1/stat ] && ! sed 's/.*) //' /proc/$1/stat | grep -q '^Z'; }}
if [ -s "$PIDF" ]; then
  old=$(cat "$PIDF")
  kill "$old" 2>/dev/null
  i=0; while alive "$old" && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done
  alive "$old" && kill -9 "$old" 2>/dev/null
fi
rm -f "$PIDF"
ip netns exec {ns} {binary} --conf-file={conf} --pid-file="$PIDF" --dhcp-leasefile={lease} \\
   --log-facility={log} </dev/null >>{out} 2>&1
rc=$?
if [ $rc -ne 0 ]; then echo "dnsmasq failed to start (exit $rc):" >&2; tail -n 3 {out} >&2; exit $rc; fi
i=0; while [ ! -s "$PIDF" ] && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done
[ -s "$PIDF" ] || {{ echo "dnsmasq wrote no pid file" >&2; exit 1; }}
"""


def basic_conf(lab_subnet: str, interface: str = "veth0", *, dnsmasq_dir: str | None = None,
               hosts_dir: str | None = None, extra: str = "") -> str:
    """A small DHCP-only main config for a namespace: range .100–.150 of the subnet,
    optional ``conf-dir`` (``*.conf``) and ``dhcp-hostsdir``. ``no-ping``: dnsmasq would
    otherwise ping each new address for up to 3 s before offering it."""
    lines = [
        "port=0", f"interface={interface}", "bind-interfaces", "user=root", "log-dhcp", "no-ping",
        f"dhcp-range={lab_subnet}.100,{lab_subnet}.150,255.255.255.0,1h",
        "dhcp-authoritative",
    ]
    if dnsmasq_dir:
        lines.append(f"conf-dir={dnsmasq_dir},*.conf")
    if hosts_dir:
        lines.append(f"dhcp-hostsdir={hosts_dir}")
    return "\n".join(lines) + "\n" + extra


@dataclass
class Dnsmasq:
    netns: str
    dir: Path
    conf: Path
    pid_file: Path
    lease_file: Path
    log_file: Path
    out_file: Path
    restart_script: Path
    binary: str

    @classmethod
    def start(cls, netns: str, tmp_dir: str | os.PathLike, conf_text: str | None = None, *,
              conf: str | os.PathLike | None = None, binary: str | None = None) -> Dnsmasq:
        """Write ``conf_text`` (or use ``conf``) and start dnsmasq in ``netns``. Raises
        RuntimeError with dnsmasq's message when it does not start."""
        binary = binary or require_binary("dnsmasq")["dnsmasq"]
        d = Path(tmp_dir)
        d.mkdir(parents=True, exist_ok=True)
        if conf is None:
            conf = d / "dnsmasq.conf"
            Path(conf).write_text(conf_text or "")
        dm = cls(netns, d, Path(conf), d / "dnsmasq.pid", d / "dnsmasq.leases", d / "dnsmasq.log",
                 d / "dnsmasq.out", d / "restart.sh", binary)
        dm.restart_script.write_text(_RESTART.format(
            ns=shlex.quote(netns), pidf=shlex.quote(str(dm.pid_file)), binary=shlex.quote(binary),
            conf=shlex.quote(str(dm.conf)), lease=shlex.quote(str(dm.lease_file)),
            log=shlex.quote(str(dm.log_file)), out=shlex.quote(str(dm.out_file))))
        dm.restart_script.chmod(0o755)
        res = dm.restart()
        if res.returncode != 0:
            raise RuntimeError(f"dnsmasq did not start in {netns}: {res.stderr.strip()}")
        return dm

    @property
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid is not None

    @property
    def restart_command(self) -> str:
        return f"sh {shlex.quote(str(self.restart_script))}"

    @property
    def reload_command(self) -> str:
        return f"kill -HUP \"$(cat {shlex.quote(str(self.pid_file))})\""

    def restart(self) -> subprocess.CompletedProcess:
        old = self.pid
        res = subprocess.run(["sh", str(self.restart_script)], capture_output=True, check=False, text=True)
        if old:
            unregister_pid(old)
        if self.pid:
            register_pid(self.pid)
        return res

    def sighup(self) -> None:
        pid = self.pid
        if pid is None:
            raise RuntimeError("dnsmasq is not running")
        os.kill(pid, signal.SIGHUP)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False

    def log_count(self, text: str) -> int:
        return self.log().count(text)

    def wait_log_count(self, text: str, at_least: int, timeout: float = 5.0) -> bool:
        """Wait until ``text`` occurs ``at_least`` times in the log. A SIGHUP logs
        ``read <file>`` once per dhcp-hostsdir file, so this tells when one was handled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_count(text) >= at_least:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        pid = self.pid
        if pid:
            kill_pid(pid)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
