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

paramiko exceptions never leave this module: they become ConnectError, AuthError
or HostKeyError.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
from dataclasses import dataclass
from typing import Self

import paramiko

from netprov.errors import AuthError, ConnectError, HostKeyError

__all__ = ["CommandResult", "SshConnection", "connect", "fingerprint"]


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

    @property
    def transport(self) -> paramiko.Transport:
        t = self._client.get_transport()
        if t is None or not t.is_active():
            raise ConnectError(f"SSH connection to {self.display} is closed")
        return t

    def open_channel(self, command: str) -> paramiko.Channel:
        self.round_trips += 1
        try:
            ch = self.transport.open_session()
            ch.exec_command(command)
            return ch
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"SSH to {self.display}: could not run a command: {exc}") from None

    def run(self, command: str, stdin: bytes | None = None, timeout: float | None = 300) -> CommandResult:
        """Run one command, feed ``stdin`` (then EOF), collect output. One round trip."""
        ch = self.open_channel(command)
        try:
            ch.settimeout(timeout)
            if stdin:
                ch.sendall(stdin)
                self.bytes_sent += len(stdin)
            ch.shutdown_write()
            return collect(ch)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"SSH to {self.display}: connection lost while running a command: {exc}") from None
        finally:
            ch.close()

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
            timeout: float = 15.0) -> SshConnection:
    """Open one SSH connection to ``host`` (an alias or name; ssh_config applies)."""
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
        client.connect(hostname, port=port, username=user, key_filename=keys or None,
                       allow_agent=True, look_for_keys=not keys, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, password=None,
                       passphrase=None)
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"host key for {display} does NOT match {kh}: the server offered {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}. Refusing to "
            f"connect (possible man-in-the-middle). If the key really changed, remove the old entry "
            f"with ssh-keygen -R '{_host_entry(hostname, port)}' -f {kh}.") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise AuthError(f"SSH to {display}: key authentication failed ({exc}); netprov uses the SSH agent "
                        f"and key files only (tried: {', '.join(keys) or 'agent and default keys'})") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        client.close()
        raise ConnectError(f"SSH to {display}: {exc or type(exc).__name__}") from None
    return SshConnection(client, display, user)
