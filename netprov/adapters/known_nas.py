"""Pinned NAS certificates: a known-hosts file for TrueNAS's TLS, like SSH's ``known_hosts``.

A fresh TrueNAS serves a self-signed certificate that no CA vouches for. ``netprov trust STORAGE``
shows its SHA-256 fingerprint and, once the user confirms it, pins it here; from then on netprov
talks to that NAS only if it presents exactly that certificate (``TrueNASClient.connect(pin=...)``).

The file (default ``~/.config/netprov/known_nas``; setting ``known_nas`` / ``NETPROV_KNOWN_NAS``)
holds one line per NAS, ``HOST:PORT SHA256:AB:CD:...`` (the fingerprint as ``openssl x509
-fingerprint -sha256`` prints it), optionally followed by ``# a comment`` (netprov writes the
certificate's subject and validity there). Blank lines and lines starting with ``#`` are ignored.
It is written whole under a temporary name and renamed into place, mode 0600.

Only the exact certificate is trusted: its hash covers the public key, and the TLS handshake proves
the peer holds the matching private key, so no CA and no host-name check are needed for it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from urllib.parse import urlsplit

from netprov.adapters.local import write_atomic
from netprov.errors import NetprovError

__all__ = [
    "CertInfo",
    "Pin",
    "default_path",
    "describe",
    "format_fingerprint",
    "host_port",
    "lookup",
    "parse_fingerprint",
    "read_pins",
    "write_pin",
]

_LINE = re.compile(r"^(\S+)\s+(\S+)\s*(?:#\s*(.*))?$")


def default_path() -> Path:
    """``~/.config/netprov/known_nas``, beside the default config file."""
    return Path.home() / ".config" / "netprov" / "known_nas"


def format_fingerprint(digest: bytes) -> str:
    """``SHA256:AB:CD:...``: the form ``openssl x509 -noout -fingerprint -sha256`` and browsers show."""
    return "SHA256:" + ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint as a user may paste it: ``SHA256:AB:CD:..``, plain hex, openssl's
    ``sha256 Fingerprint=AB:CD:...`` or SSH-style base64 (``SHA256:q83v...``). ValueError if not."""
    s = text.strip()
    if "=" in s and s.lower().split("=", 1)[0].strip().endswith("fingerprint"):
        s = s.split("=", 1)[1].strip()
    if s.lower().startswith("sha256:"):
        s = s[7:]
    hexed = re.sub(r"[\s:]", "", s)
    if re.fullmatch(r"[0-9a-fA-F]{64}", hexed):
        return bytes.fromhex(hexed)
    with contextlib.suppress(binascii.Error, ValueError):
        raw = base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
        if len(raw) == 32:
            return raw
    raise ValueError(
        f"{text.strip()[:80]!r} is not a SHA-256 fingerprint (expected SHA256: and 32 bytes in hex, "
        "e.g. SHA256:AB:CD:...)"
    )


def host_port(url: str) -> str:
    """The key a NAS is pinned under: ``host:port`` of its URL (``[v6]:port``; port 443 by default)."""
    raw = url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 80 if parts.scheme.lower() in ("ws", "http") else 443
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Pin:
    """One pinned certificate: where it is pinned, its SHA-256 and the comment (subject, validity)."""

    key: str
    sha256: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        return format_fingerprint(self.sha256)


def read_pins(path: Path) -> dict[str, Pin]:
    """Every pin in ``path`` (none if it does not exist); a malformed line fails naming file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise NetprovError(f"cannot read pinned NAS certificates {path}: {getattr(e, 'strerror', None) or e}") from None
    pins: dict[str, Pin] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise NetprovError(f"{path}:{n}: expected 'HOST:PORT SHA256:...' (a pinned NAS certificate)")
        try:
            digest = parse_fingerprint(m.group(2))
        except ValueError as e:
            raise NetprovError(f"{path}:{n}: {e}") from None
        pins[m.group(1).lower()] = Pin(m.group(1).lower(), digest, (m.group(3) or "").strip())
    return pins


def lookup(path: Path, url: str) -> Pin | None:
    """The pin for the NAS at ``url``, if any."""
    return read_pins(path).get(host_port(url))


def write_pin(path: Path, key: str, digest: bytes, comment: str = "") -> None:
    """Pin ``digest`` for ``key`` (replacing its old pin; other lines kept), atomically, mode 0600."""
    try:
        old = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        old = ["# NAS TLS certificates pinned by `netprov trust` (HOST:PORT SHA256-fingerprint # comment)"]
    kept = []
    for raw in old:
        m = _LINE.match(raw.strip())
        if m is not None and not raw.strip().startswith("#") and m.group(1).lower() == key:
            continue
        kept.append(raw)
    comment = " ".join(comment.replace("#", "").split())
    kept.append(f"{key} {format_fingerprint(digest)}" + (f"  # {comment}" if comment else ""))
    data = ("\n".join(kept) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data)


@dataclass(frozen=True)
class CertInfo:
    """What a user checks before pinning: the fingerprint, who it names, who signed it, when valid."""

    sha256: bytes
    subject: str
    issuer: str
    not_before: str
    not_after: str
    self_signed: bool

    @property
    def fingerprint(self) -> str:
        return format_fingerprint(self.sha256)

    def summary(self) -> str:
        """One line for the pin file's comment and for messages."""
        return f"{self.subject or '(no subject)'}, valid {self.not_before} to {self.not_after}"


def describe(der: bytes) -> CertInfo:
    """Read a DER certificate (``cryptography``, which paramiko already requires)."""
    digest = hashlib.sha256(der).digest()
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - a certificate we cannot parse is still pinnable by its hash
        return CertInfo(digest, "(unreadable certificate)", "", "?", "?", False)

    def when(attr: str) -> str:
        t = getattr(cert, attr + "_utc", None) or getattr(cert, attr).replace(tzinfo=timezone.utc)
        return t.strftime("%Y-%m-%d %H:%M UTC")

    subject = cert.subject.rfc4514_string()
    issuer = cert.issuer.rfc4514_string()
    return CertInfo(digest, subject, issuer, when("not_valid_before"), when("not_valid_after"), subject == issuer)
