"""Boot files as values: what netprov wants on a PXE server.

A ``BootFile`` is one file under one of a PXE server's configured roots. The
renderer produces them (pure), the file planner compares them with what the
server holds (pure), and the PXE adapter writes them (effect). Paths are always
relative to a named root, POSIX, and never contain ``..``: the adapter joins
them under the root it was configured with, so nothing can land outside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum

#: The first-line marker of every file netprov writes (after ``#!ipxe`` in iPXE scripts).
HEADER_MARKER = "Managed by netprov"


class Root(str, Enum):
    """The configured directories a boot file may live under."""

    TFTP = "tftp"          # tftp_root: iPXE binaries, boot.ipxe, per-machine scripts (TFTP serving)
    DNSMASQ = "dnsmasq"    # dnsmasq_dir: the drop-in config (read at start; change => restart)
    HOSTS = "hosts"        # hosts_dir: dhcp-hostsdir files (re-read on SIGHUP)
    HTTP = "http"          # http_root: iPXE scripts when served over HTTP


class Kind(str, Enum):
    """What activating a changed file requires."""

    CONFIG = "config"      # dnsmasq drop-in: validate with dnsmasq --test, then restart
    HOSTS = "hosts"        # dhcp-host lines: validate (inlined), then SIGHUP
    SCRIPT = "script"      # iPXE script: served on next request, nothing to reload
    BINARY = "binary"      # iPXE binary copied from a source on the server


@dataclass(frozen=True, order=True)
class BootFile:
    """One desired file on one PXE server.

    ``content`` is the exact bytes to write (for BINARY files: empty, with
    ``source`` naming the file on the server to copy from). ``secret`` marks
    files holding a CHAP secret: written 0640 (group dnsmasq), and every diff of
    them is masked. ``secrets`` lists the literal secret strings to mask.
    ``machine`` names the machine a per-machine file belongs to (its host line
    file or its iPXE script); None for the server's shared files.
    """

    server: str
    root: Root
    path: str
    content: bytes = b""
    kind: Kind = Kind.SCRIPT
    mode: int = 0o644
    secret: bool = False
    source: str | None = None
    secrets: tuple[str, ...] = field(default=(), compare=False, repr=False)
    machine: str | None = None

    @property
    def address(self) -> str:
        return f"pxe.{self.root.value}[{self.server}:{self.path}]"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()
