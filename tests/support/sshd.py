"""A real OpenSSH server on 127.0.0.1:<free port> for tests (and benchmarks).

    with SshServer.start(tmp_dir) as srv:
        PxeSettings(host=srv.host, port=srv.port, user=srv.user,
                    identity_file=srv.identity_file, known_hosts=srv.known_hosts, ...)

Everything lives in ``tmp_dir``: a throwaway ed25519 host key and user key,
``authorized_keys``, a client ``known_hosts`` (``[127.0.0.1]:port``), an sshd
config (``UsePAM no``, ``StrictModes no``, key auth only, listen on 127.0.0.1
only) and the pid file. sshd runs as root with ``-D -e -f <config>`` and is
stopped by its PID. It logs in as the current user (root in CI) with ``HOME`` set to
an empty directory in ``tmp_dir``: bash sources ``~/.bashrc`` for sshd sessions, and
the invoking user's one made every remote command ~5x slower here (0.25 s vs 0.05 s).

``SshServer.start(..., trust=False)`` leaves ``known_hosts`` empty (for
unknown-host-key tests); ``srv.host_key_line`` is the line that would trust it.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from tests.support import kill_pid, register_pid, require_binary

__all__ = ["SshServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


@dataclass
class SshServer:
    dir: Path
    host: str
    port: int
    user: str
    identity_file: str
    known_hosts: str
    host_key_line: str          # "[127.0.0.1]:port ssh-ed25519 AAAA…"
    host_key_fingerprint: str   # "SHA256:…"
    pid: int
    log: Path
    proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, tmp_dir: str | os.PathLike, *, trust: bool = True, extra_config: str = "") -> SshServer:
        """Start sshd (skips the test when not root or sshd is missing)."""
        from tests.support import require_root

        require_root()
        bins = require_binary("sshd", "ssh-keygen")
        d = Path(tmp_dir)
        d.mkdir(parents=True, exist_ok=True)
        hk, uk = d / "host_ed25519", d / "user_ed25519"
        if not hk.exists():
            _keygen(hk, "netprov-test-host")
        if not uk.exists():
            _keygen(uk, "netprov-test-user")
        (d / "authorized_keys").write_text(uk.with_suffix(".pub").read_text())
        fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(hk) + ".pub"],
                            capture_output=True, text=True, check=True).stdout.split()[1]
        # sshd refuses to start without its privilege-separation directory (normally made by systemd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        home = d / "home"      # empty HOME: bash sources ~/.bashrc in sshd sessions (slow, not ours)
        home.mkdir(exist_ok=True)
        log = d / "sshd.log"
        for _attempt in range(5):
            port = free_port()
            cfg = d / "sshd_config"
            cfg.write_text(f"""\
ListenAddress 127.0.0.1:{port}
HostKey {hk}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 50
MaxStartups 50:30:100
Subsystem sftp internal-sftp
LogLevel INFO
SetEnv HOME={home}
{extra_config}
""")
            logf = open(log, "ab")  # noqa: SIM115 - handed to Popen, closed right after
            proc = subprocess.Popen([bins["sshd"], "-D", "-e", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=logf)
            logf.close()
            register_pid(proc.pid)
            if _wait_listening(port, proc):
                line = f"[127.0.0.1]:{port} " + " ".join(hk.with_suffix(".pub").read_text().split()[:2])
                kh = d / "known_hosts"
                kh.write_text(line + "\n" if trust else "")
                return cls(d, "127.0.0.1", port, user, str(uk), str(kh), line, fp, proc.pid, log, proc)
            kill_pid(proc.pid)
        raise RuntimeError(f"sshd did not start; log:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        kill_pid(self.pid)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings_kwargs(self) -> dict:
        """Connection fields for netprov's PxeSettings."""
        return {"host": self.host, "port": self.port, "user": self.user, "identity_file": self.identity_file,
                    "known_hosts": self.known_hosts, "ssh_config": str(self.dir / "no-ssh-config")}


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False
