"""How a machine's name becomes the names of its NAS objects and files.

One function per derived name, so the storage plan, the iPXE scripts and the
tests all agree. Pure.
"""

from __future__ import annotations

import hashlib
import re

#: Machine names are DNS host labels: they become zvol names, iSCSI target and
#: extent names, dnsmasq host names and file names, so the strictest of those rules wins.
MACHINE_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # fullmatch: no trailing "\n"
#: SCST device-name limit for extents; targets use the same budget so names stay identical.
ISCSI_NAME_MAX = 64
_HASH_PREFIX_MAX = 24
_ISCSI_MAP = str.maketrans({"/": ":", "@": ":", ":": "-", ".": "-", "_": "-"})


def check_machine_name(name: str) -> str | None:
    """Return why ``name`` can't be a machine name, or None if it can."""
    if not name:
        return "a machine name must not be empty"
    if len(name) > 63:
        return f"machine name is {len(name)} characters; at most 63 (a DNS label)"
    if name != name.lower():
        return ("machine names must be lower-case: they become iSCSI target names, "
                "which TrueNAS allows only in lower case")
    if not MACHINE_NAME_RE.fullmatch(name):
        return ("machine names may use only a-z, 0-9 and '-' (not first or last): they become "
                "zvol, iSCSI target and file names")
    return None


def iscsi_name(path: str) -> str:
    """A TrueNAS-safe iSCSI target/extent name for ``path``.

    Same scheme as democratic-csi's sibling TIC: ``/`` and ``@`` become ``:``;
    ``:``, ``.`` and ``_`` become ``-``; lower-cased. Over 64 characters, the name
    becomes a prefix of at most 24 characters plus a hash of the whole, so it stays
    unique, valid and within SCST's limit. Extent names never contain ``.`` or
    ``/`` this way, so SCST's flattening cannot make two of them collide.
    """
    name = path.lower().translate(_ISCSI_MAP)
    if len(name) <= ISCSI_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    prefix = name[:_HASH_PREFIX_MAX].rstrip("-:")
    return f"{prefix}-{digest[:ISCSI_NAME_MAX - len(prefix) - 1]}"


def target_name(machine: str, prefix: str = "") -> str:
    """The iSCSI target name (without basename) for a machine."""
    return iscsi_name(f"{prefix}{machine}")


def target_iqn(basename: str, machine: str, prefix: str = "") -> str:
    """The full target IQN iPXE logs into: ``<basename>:<target name>`` (as SCST/ctld expose it)."""
    return f"{basename}:{target_name(machine, prefix)}"


def zvol_path(parent: str, machine: str) -> str:
    """The zvol dataset path ``<parent>/<machine>``."""
    return f"{parent.rstrip('/')}/{machine}"


def zvol_device(parent: str, machine: str) -> str:
    """The extent ``disk`` value: ``zvol/<path>`` with spaces as ``+`` (TrueNAS' device naming)."""
    return "zvol/" + zvol_path(parent, machine).replace(" ", "+")


def initiator_iqn(basename: str, machine: str) -> str:
    """The initiator IQN the machine's iPXE script sets and its initiator group admits."""
    return f"{basename}:{machine}"


def extent_serial(parent: str, machine: str) -> str:
    """A stable extent serial (15 hex chars: within CORE's 15 and SCALE's 20 limits)."""
    return hashlib.sha256(zvol_path(parent, machine).encode()).hexdigest()[:15]
