"""This machine as a PXE server: the same PxeHost logic, with commands run by a local shell.

``netprov demo`` uses it so a newcomer's first run needs no SSH server: the very
scripts that run on a real PXE server over SSH (read, stage, validate, commit)
run here through ``sh``, against roots under a local directory. Only the subset of
paramiko's channel API that ``PxeHost`` uses is provided.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator

from netprov.adapters.pxe.ssh import CommandResult, SshDeadline, collect


class LocalChannel:
    """A paramiko.Channel look-alike over a local ``sh -c`` process."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._stdout_done = False

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def shutdown_write(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def recv(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        return os.read(self.proc.stdout.fileno(), n)

    def recv_stderr(self, n: int) -> bytes:
        assert self.proc.stderr is not None
        return os.read(self.proc.stderr.fileno(), n)

    def recv_exit_status(self) -> int:
        return self.proc.wait()

    def makefile(self, mode: str = "rb"):  # noqa: ANN201
        return self.proc.stdout

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalConnection:
    """Same interface as ``SshConnection``; every command is one local ``sh`` process."""

    def __init__(self, display: str = "localhost") -> None:
        self.display = display
        self.user = "root" if os.geteuid() == 0 else (os.environ.get("USER") or "user")
        self.round_trips = 0
        self.bytes_sent = 0
        self.lost = False
        self._open: list[LocalChannel] = []

    def open_channel(self, command: str, timeout: float | None = 300) -> LocalChannel:
        self.round_trips += 1
        ch = LocalChannel(command)
        self._open = [c for c in self._open if c.proc.poll() is None] + [ch]
        return ch

    @contextlib.contextmanager
    def deadline(self, seconds: float | None, what: str) -> Iterator[None]:
        """Like SshConnection.deadline: past ``seconds`` the running commands are killed."""
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            for ch in list(self._open):
                with contextlib.suppress(OSError):
                    ch.proc.kill()
        timer = threading.Timer(seconds, fire) if seconds else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            yield
        except Exception:
            if fired.is_set():
                raise SshDeadline(f"{self.display}: no answer within {seconds:g} s while {what}") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if fired.is_set():
            raise SshDeadline(f"{self.display}: no answer within {seconds:g} s while {what}")

    def run(self, command: str, stdin: bytes | None = None, timeout: float | None = 300,
            what: str = "running a command") -> CommandResult:
        with self.deadline(timeout, what):
            ch = self.open_channel(command, timeout)
            try:
                if stdin:
                    ch.sendall(stdin)
                    self.bytes_sent += len(stdin)
                ch.shutdown_write()
                return collect(ch)
            finally:
                ch.close()

    def close(self) -> None:
        return None
