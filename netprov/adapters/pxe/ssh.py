"""SSH to a PXE server: one paramiko connection per server per run.

- ``~/.ssh/config`` is honoured (HostName, User, Port, IdentityFile, UserKnownHostsFile);
  explicit arguments win over it.
- Authentication: the SSH agent and key files only (given ``identity_file``, the
  config's IdentityFile, else paramiko's default key names). Never passwords.
- Host keys are checked against known_hosts (default ``~/.ssh/known_hosts``). An
  unknown host is refused with its key type and SHA256 fingerprint and how to trust
  it, unless ``accept_new_host_key=True`` (trust on first use: the key is appended to
  the known_hosts file). A mismatch — including a host known only under another key
  type — is always refused.
- Every remote command and every streaming channel counts as one round trip
  (``round_trips``), so callers and benchmarks can check the adapter's chattiness.
- Nothing waits for ever: connect (TCP, banner, key exchange, auth) runs under one
  deadline, and every later step runs under ``deadline(seconds, what)``: when it
  expires the connection is closed, which wakes every wait paramiko has (some, like
  ``exec_command``, have no timeout of their own), and ``SshDeadline`` is raised.
  A silent peer (route dropped, host gone) is also found between steps: SSH
  keepalives go out every ``keepalive`` seconds and the socket's TCP_USER_TIMEOUT
  drops the connection when they stay unacknowledged for ``timeout`` seconds.

paramiko exceptions never leave this module: they become ConnectError, AuthError
or HostKeyError.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import paramiko

from netprov.errors import AuthError, ConnectError, HostKeyError

__all__ = ["CommandResult", "SshConnection", "SshDeadline", "connect", "fingerprint", "keepalive_interval"]


def keepalive_interval(keepalive: float | None, timeout: float) -> float:
    """Seconds between keepalives (SSH and the lock's heartbeat): the setting, else a third of the
    connect timeout, at most 10 s; never below 0.2 s."""
    return max(0.2, keepalive if keepalive else min(10.0, timeout / 3))


class SshDeadline(ConnectError):
    """A step did not finish within its deadline; the connection was closed."""


class _Watchdog:
    """Close ``close()`` once ``seconds`` pass unless cancelled; remembers that it fired."""

    def __init__(self, seconds: float | None, close) -> None:  # noqa: ANN001
        self.fired = False
        self._close = close
        self._timer = None
        if seconds is not None and seconds > 0:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(Exception):
            self._close()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _kill_socket(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _tune_socket(sock: socket.socket, timeout: float) -> None:
    """Linux: unacknowledged data (keepalives included) for ``timeout`` s drops the connection."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(timeout * 1000)))


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:…`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: str, accept_new: bool, display: str) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.display = display
        self.appended: str | None = None

    def missing_host_key(self, client, hostname, key):
        fp = fingerprint(key)
        known_other = client.get_host_keys().get(hostname)
        if known_other:
            types = ", ".join(sorted(known_other.keys()))
            raise HostKeyError(
                f"host key for {self.display} does not match known_hosts ({self.known_hosts} knows it "
                f"with {types}; the server offered {key.get_name()} {fp}). Refusing to connect: if the "
                f"server's key really changed, remove the old entry (ssh-keygen -R '{hostname}' -f "
                f"{self.known_hosts}) after checking the new fingerprint out of band.")
        if not self.accept_new:
            raise HostKeyError(
                f"unknown SSH host key for {self.display}: {key.get_name()} {fp}. Check this fingerprint "
                f"on the server (ssh-keygen -lf /etc/ssh/ssh_host_{key.get_name().split('-')[-1]}_key.pub), "
                f"then trust it by adding it to {self.known_hosts} (e.g. ssh-keyscan -p <port> <host> "
                f">> {self.known_hosts}) or run once with accept_new_host_key / --accept-new-host-key.")
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        d = os.path.dirname(self.known_hosts)
        if d:
            os.makedirs(d, mode=0o700, exist_ok=True)
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.appended = f"{key.get_name()} {fp}"


class SshConnection:
    """An open SSH connection. Use ``run`` for request/response commands and
    ``open_channel`` for streaming ones; both count one round trip."""

    def __init__(self, client: paramiko.SSHClient, display: str, user: str) -> None:
        self._client = client
        self.display = display
        self.user = user
        self.round_trips = 0
        self.bytes_sent = 0
        self.lost = False          # a deadline fired or the connection died: it is closed

    def _abort(self) -> None:
        """Close the connection from any thread: every blocked paramiko wait wakes up."""
        self.lost = True
        t = self._client.get_transport()
        if t is not None:
            _kill_socket(t.sock)
            with contextlib.suppress(Exception):
                t.close()

    @contextlib.contextmanager
    def deadline(self, seconds: float | None, what: str) -> Iterator[None]:
        """Run the block within ``seconds``; past that the connection is closed and
        ``SshDeadline`` raised (whatever error the block saw because of it)."""
        dog = _Watchdog(seconds, self._abort)
        try:
            yield
        except Exception as exc:
            if dog.fired or isinstance(exc, TimeoutError):    # a channel's own timeout: same verdict
                self._abort()
                raise SshDeadline(f"SSH to {self.display}: no answer within {seconds:g} s while {what}; "
                                  "the connection was closed") from None
            if isinstance(exc, (paramiko.SSHException, OSError, EOFError)):
                self.lost = True
                raise ConnectError(f"SSH to {self.display}: connection lost while {what}: "
                                   f"{str(exc) or type(exc).__name__}") from None
            raise
        finally:
            dog.cancel()
        if dog.fired:   # the block ended "normally" only because the connection was closed under it
            raise SshDeadline(f"SSH to {self.display}: no answer within {seconds:g} s while {what}; "
                              "the connection was closed")

    @property
    def transport(self) -> paramiko.Transport:
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise ConnectError(f"SSH connection to {self.display} is closed")
        return t

    def open_channel(self, command: str, timeout: float | None = 300) -> paramiko.Channel:
        """Open a session channel and start ``command`` (call within a ``deadline``: starting a
        command waits for the server's answer without a timeout of its own)."""
        self.round_trips += 1
        try:
            ch = self.transport.open_session(timeout=timeout)
            ch.settimeout(timeout)
            ch.exec_command(command)
            return ch
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.lost = self.lost or not self._client.get_transport() or \
                not self._client.get_transport().is_active()
            raise ConnectError(f"SSH to {self.display}: could not run a command: {str(exc) or type(exc).__name__}"
                               ) from None

    def run(self, command: str, stdin: bytes | None = None, timeout: float | None = 300,
            what: str = "running a command") -> CommandResult:
        """Run one command, feed ``stdin`` (then EOF), collect output and exit status, all
        within ``timeout`` seconds. One round trip. A channel that ends without an exit
        status (the server side was killed or the connection dropped) is a ConnectError."""
        with self.deadline(timeout, what):
            ch = self.open_channel(command, timeout)
            try:
                if stdin:
                    ch.sendall(stdin)
                    self.bytes_sent += len(stdin)
                ch.shutdown_write()
                res = collect(ch)
            finally:
                with contextlib.suppress(Exception):
                    ch.close()
        if res.rc < 0:
            self.lost = self.lost or not self._client.get_transport() or \
                not self._client.get_transport().is_active()
            raise ConnectError(f"SSH to {self.display}: the connection ended while {what} "
                               "(no exit status; the answer may be incomplete)")
        return res

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collect(ch: paramiko.Channel) -> CommandResult:
    """Read stdout to EOF, then stderr, then the exit status. Remote scripts keep stderr
    small (paramiko's window is shared by both streams)."""
    out, err = bytearray(), bytearray()
    while True:
        data = ch.recv(65536)
        if not data:
            break
        out += data
    while True:
        data = ch.recv_stderr(65536)
        if not data:
            break
        err += data
    rc = ch.recv_exit_status()
    return CommandResult(rc, bytes(out), bytes(err))


def connect(host: str, *, port: int | None = None, user: str | None = None,
            identity_file: str | None = None, known_hosts: str | None = None,
            accept_new_host_key: bool = False, ssh_config: str | None = None,
            timeout: float = 15.0, keepalive: float | None = None) -> SshConnection:
    """Open one SSH connection to ``host`` (an alias or name; ssh_config applies).

    The whole of it (TCP, banner, key exchange, authentication) runs within ``timeout``
    seconds. Once open, keepalives go out every ``keepalive`` seconds (default: a third
    of ``timeout``, at most 10 s) and a peer that stops acknowledging for ``timeout``
    seconds drops the connection."""
    cfg_path = os.path.expanduser(ssh_config or "~/.ssh/config")
    cfg: dict = {}
    if os.path.exists(cfg_path):
        try:
            cfg = paramiko.SSHConfig.from_path(cfg_path).lookup(host)
        except Exception as exc:  # noqa: BLE001 - paramiko raises assorted errors on bad configs
            raise ConnectError(f"cannot read SSH config {cfg_path}: {exc}") from None
    hostname = cfg.get("hostname", host)
    port = int(port or cfg.get("port") or 22)
    user = user or cfg.get("user") or getpass.getuser()
    keys: list[str] = []
    if identity_file:
        keys.append(os.path.expanduser(identity_file))
    for k in cfg.get("identityfile", []) or []:
        k = os.path.expanduser(k)
        if os.path.exists(k) and k not in keys:
            keys.append(k)
    kh = known_hosts
    if kh is None:
        ukh = cfg.get("userknownhostsfile")
        kh = ukh.split()[0] if ukh else "~/.ssh/known_hosts"
    kh = os.path.expanduser(kh)
    display = f"{user}@{hostname}:{port}"

    client = paramiko.SSHClient()
    if os.path.exists(kh):
        try:
            client.load_host_keys(kh)
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"cannot read known_hosts file {kh}: {exc}") from None
    policy = _Policy(kh, accept_new_host_key, display)
    client.set_missing_host_key_policy(policy)
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except OSError as exc:
        raise ConnectError(f"SSH to {display}: {str(exc) or type(exc).__name__}") from None
    _tune_socket(sock, timeout)
    dog = _Watchdog(timeout, lambda: _kill_socket(sock))
    try:
        client.connect(hostname, port=port, username=user, key_filename=keys or None,
                       allow_agent=True, look_for_keys=not keys, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                       password=None, passphrase=None, sock=sock)
    except HostKeyError:
        dog.cancel()
        client.close()
        raise
    except Exception as exc:
        dog.cancel()
        client.close()
        _kill_socket(sock)
        if dog.fired:
            raise SshDeadline(f"SSH to {display}: no answer within {timeout:g} s while connecting "
                              "and logging in") from None
        if not isinstance(exc, (paramiko.SSHException, EOFError, OSError)):
            raise
        return _connect_error(exc, display, kh, hostname, port, keys)
    dog.cancel()
    if dog.fired:
        client.close()
        raise SshDeadline(f"SSH to {display}: no answer within {timeout:g} s while connecting and logging in")
    t = client.get_transport()
    if t is not None:
        t.set_keepalive(keepalive_interval(keepalive, timeout))
    return SshConnection(client, display, user)


def _connect_error(exc: BaseException, display: str, kh: str, hostname: str, port: int,
                   keys: list[str]):  # noqa: ANN202 - always raises
    try:
        raise exc
    except paramiko.BadHostKeyException as exc:
        raise HostKeyError(
            f"host key for {display} does NOT match {kh}: the server offered {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}. Refusing to "
            f"connect (possible man-in-the-middle). If the key really changed, remove the old entry "
            f"with ssh-keygen -R '{_host_entry(hostname, port)}' -f {kh}.") from None
    except paramiko.AuthenticationException as exc:
        raise AuthError(f"SSH to {display}: key authentication failed ({exc}); netprov uses the SSH agent "
                        f"and key files only (tried: {', '.join(keys) or 'agent and default keys'})") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise ConnectError(f"SSH to {display}: {str(exc) or type(exc).__name__}") from None
