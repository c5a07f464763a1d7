"""Which TrueNAS releases netprov drives, and what it may call on each.

Parses a NAS's version string, refuses one older than FreeNAS 11.3 (warns about one newer than it knows), and
lists every API method netprov may call on a release. It makes no call itself: the backend asks the client
for the version and uses these answers.
"""

from __future__ import annotations

import re

from netprov.errors import NetprovError


def version_tuple(version: str) -> tuple[int, int]:
    """``TrueNAS-25.04.2.4`` -> (25, 4); ``TrueNAS-SCALE-24.10.2`` -> (24, 10); ``TrueNAS-13.0-U6.1`` -> (13, 0)."""
    m = re.search(r"(?:FreeNAS|TrueNAS)(?:-SCALE)?-(\d+)\.(\d+)", version or "")
    if not m:
        m = re.search(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (25, 4)


#: the oldest release netprov supports (FreeNAS 11.3) and the newest it knows (TrueNAS 26): the simulator has a
#: profile for each release in between that netprov's calls depend on (sim/truenas_sim/profiles.py)
OLDEST_SUPPORTED = (11, 3)
NEWEST_KNOWN = (26, 99)


def version_support(version: str) -> str | None:
    """None for a release netprov knows; a one-line warning for a newer one (it is driven like the newest
    known release); a NetprovError naming the version for one older than FreeNAS 11.3."""
    v = version_tuple(version)
    if v < OLDEST_SUPPORTED:
        raise NetprovError(
            f"the NAS runs {version or 'an unknown version'}, older than FreeNAS 11.3, the oldest release "
            "netprov supports: upgrade it (its API lacks the calls netprov makes)"
        )
    if v > NEWEST_KNOWN:
        return (f"the NAS runs {version}, newer than the newest release netprov knows (TrueNAS 26): "
                "driving it like TrueNAS 26")
    return None


def client_methods(version: tuple[int, int], *, jsonrpc: bool | None = None) -> frozenset[str]:
    """Every method netprov may call on a NAS of ``version`` (rpc.py's login and job calls, backend.py's
    read, steps.py's apply, the demo). tests/sim/test_sim_sources.py checks each against the middleware
    source table (sim/truenas_sim/sources.py) for the profile of that version, and against the calls a real run makes.
    ``auth.login_with_api_key`` is tried with an API key on every release; FreeNAS 11.3 answers "method not
    found" and rpc.py turns that into a clear error."""
    snap = "pool.snapshot" if version >= (25, 10) else "zfs.snapshot"
    out = {
        "system.version", "core.ping", "core.get_jobs", "core.bulk", "auth.login",
        "pool.dataset.query", "pool.dataset.create", "pool.dataset.update", "pool.dataset.delete",
        "pool.dataset.promote",
        f"{snap}.query", f"{snap}.create", f"{snap}.clone", f"{snap}.delete",
        "iscsi.extent.query", "iscsi.extent.create", "iscsi.extent.update", "iscsi.extent.delete",
        "iscsi.target.query", "iscsi.target.create", "iscsi.target.update", "iscsi.target.delete",
        "iscsi.targetextent.query", "iscsi.targetextent.create", "iscsi.targetextent.update",
        "iscsi.targetextent.delete",
        "iscsi.initiator.query", "iscsi.initiator.create", "iscsi.initiator.update", "iscsi.initiator.delete",
        "iscsi.auth.query", "iscsi.auth.create", "iscsi.auth.update", "iscsi.auth.delete",
        "iscsi.portal.query", "iscsi.portal.create", "iscsi.global.config", "iscsi.global.sessions",
        "service.query", "service.update",
        "service.control" if version >= (25, 10) else "service.start",
    }
    if version >= (12, 0):
        out.add("auth.login_with_api_key")
    if version >= (25, 4) and jsonrpc is not False:
        out.add("auth.login_ex")
    return frozenset(out)

