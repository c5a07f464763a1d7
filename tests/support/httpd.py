"""A plain HTTP server inside a lab namespace: Python's ``http.server`` serving one directory.

    web = Httpd.start(lab.ns_srv, "10.99.0.1", docroot, log_dir)
    web.url                     # "http://10.99.0.1"
    web.requests()              # [("10.99.0.80", "GET", "/netprov/boot.ipxe", 200), ...]
    web.stop()

It is what a PXE server's web server is to netprov's ``http`` setting: a docroot the scripts (and an
installer's kernel and initrd) are served from. Like a real web server it runs as an unprivileged
user (``user``, default ``www-data``, with only that user's group, via ``setpriv``), so it reads only
what that user or group may read (a CHAP-bearing script is ``0640``, group ``secret_group``), and so
it listens on an unprivileged port (default 8080). The access log (one line per request) goes to
``<log_dir>/httpd.log``. Started and stopped by its PID.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import kill_pid, register_pid

_LINE = re.compile(r'^(\S+) - - \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3})', re.MULTILINE)


@dataclass
class Httpd:
    netns: str
    address: str
    port: int
    docroot: Path
    log: Path
    proc: subprocess.Popen

    @classmethod
    def start(cls, netns: str, address: str, docroot: Path | str, log_dir: Path | str,
              port: int = 8080, user: str = "www-data") -> Httpd:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / "httpd.log"
        drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
        # the system's python (stdlib only): the test's interpreter may live under /root, out of reach
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        cmd = ["ip", "netns", "exec", netns, *drop, python, "-u", "-m", "http.server",
               "--bind", address, "--directory", str(docroot), str(port)]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        register_pid(proc.pid)
        web = cls(netns, address, port, Path(docroot), log, proc)
        deadline = time.monotonic() + 10
        while not web._listening():
            if proc.poll() is not None or time.monotonic() > deadline:
                web.stop()
                raise RuntimeError(f"http.server did not start in {netns}: {log.read_text()[-500:]}")
            time.sleep(0.05)
        return web

    def _listening(self) -> bool:
        probe = (f"import socket; s = socket.create_connection(({self.address!r}, {self.port}), 1); "
                 "s.close()")
        r = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", probe],
                           capture_output=True, check=False, timeout=10)
        return r.returncode == 0

    @property
    def url(self) -> str:
        return f"http://{self.address}" + ("" if self.port == 80 else f":{self.port}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def requests(self) -> list[tuple[str, str, str, int]]:
        """(client address, method, path, status) of every request so far."""
        return [(m.group(1), m.group(2), m.group(3), int(m.group(4)))
                for m in _LINE.finditer(self.log_text())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            kill_pid(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


__all__ = ["Httpd"]
