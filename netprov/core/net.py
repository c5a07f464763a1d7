"""Network facts as pure functions."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets or port) is this machine's loopback:
    ``localhost`` in any case, 127.0.0.0/8 or ::1. Plain ws:// is allowed only there."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
