"""Canonical forms for the values users spell many ways: sizes, MACs, block sizes.

Pure functions; each raises ``ValueError`` with a message fit for a user.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

#: volblocksize values TrueNAS accepts (``512B`` is SCALE-only and normalised to ``512``).
VOLBLOCKSIZES = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096, "8K": 8192,
                 "16K": 16384, "32K": 32768, "64K": 65536, "128K": 131072}


def parse_size(value: int | str) -> int:
    """``64G``, ``1T``, ``512M``, ``1.5T``, ``68719476736`` -> bytes (binary units, as ZFS uses).

    >>> parse_size("64G")
    68719476736
    """
    if isinstance(value, bool):
        raise ValueError("a size is a number with an optional unit, like 64G or 1T")
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise ValueError(f"cannot parse size {str(value)!r}: use a number with a unit, like 64G or 1T")
        number, unit, _ = m.groups()
        n_float = float(number) * (1024 ** _POWERS[unit.lower()])
        if n_float != int(n_float):
            raise ValueError(f"size {value!r} is not a whole number of bytes")
        n = int(n_float)
    if n <= 0:
        raise ValueError("size must be greater than zero")
    return n


def format_size(n: int) -> str:
    """Bytes -> the shortest exact binary-unit spelling (``68719476736`` -> ``64G``)."""
    for unit in ("E", "P", "T", "G", "M", "K"):
        factor = 1024 ** _POWERS[unit.lower()]
        if n % factor == 0 and n >= factor:
            return f"{n // factor}{unit}"
    return str(n)


def parse_volblocksize(value: int | str) -> str:
    """``16K``, ``16k``, ``16384``, ``512B`` -> the canonical TrueNAS spelling (``16K``)."""
    text = str(value).strip().upper()
    if text.endswith("B") and text != "B":
        text = text[:-1]
    if text.isdigit():
        for name, size in VOLBLOCKSIZES.items():
            if size == int(text):
                return name
    if text in VOLBLOCKSIZES:
        return text
    raise ValueError(f"volblocksize {value!r} is not one of {', '.join(VOLBLOCKSIZES)}")


_MAC_HEX = re.compile(r"^[0-9a-f]{12}$")
_CANONICAL = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def normalise_mac(value: str) -> str:
    """Any common MAC spelling -> lower-case colon form.

    Accepts ``52:54:00:12:34:56``, ``52-54-00-12-34-56``, ``5254.0012.3456``, ``525400123456``,
    in any case.
    """
    text = str(value).strip().lower()
    if _CANONICAL.fullmatch(text):  # fast path: already canonical (most inventories)
        if int(text[0:2], 16) & 1:
            raise ValueError(f"MAC address {value!r} is a multicast address, not a NIC's")
        return text
    seps = {c for c in text if not c.isalnum()}
    if len(seps) > 1:
        raise ValueError(f"malformed MAC address {value!r}")
    raw = re.sub(r"[:\-.]", "", text)
    groups_ok = (
        re.fullmatch(r"([0-9a-f]{2}[:\-]){5}[0-9a-f]{2}", text)
        or re.fullmatch(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}", text)
        or _MAC_HEX.fullmatch(text)
    )
    if not groups_ok or not _MAC_HEX.fullmatch(raw):
        raise ValueError(f"malformed MAC address {value!r}: expected six hex pairs like 52:54:00:12:34:56")
    mac = ":".join(raw[i:i + 2] for i in range(0, 12, 2))
    if int(raw[0:2], 16) & 1:
        raise ValueError(f"MAC address {value!r} is a multicast address, not a NIC's")
    return mac


def mac_hexhyp(mac: str) -> str:
    """Canonical MAC -> iPXE's ``${mac:hexhyp}`` form (``52-54-00-12-34-56``)."""
    return mac.replace(":", "-")
