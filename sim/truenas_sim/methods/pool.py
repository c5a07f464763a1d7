"""``pool.*``: pool.query (one pool, ``tank``; the dataset methods are in pool_dataset.py)."""

from __future__ import annotations

from ..state import POOL_SIZE, NasState

POOL_ENTRY = {
    "id": 1,
    "name": "tank",
    "guid": "1234567890123456789",
    "status": "ONLINE",
    "path": "/mnt/tank",
    "healthy": True,
    "warning": False,
    "status_code": "HEALTHY",
    "status_detail": None,
    "size": POOL_SIZE,
    "is_upgraded": True,
    "topology": {"data": [], "log": [], "cache": [], "spare": [], "special": [], "dedup": []},
}


def register(nas: NasState) -> None:
    m = nas.method

    @m("pool.query", max_args=2, roles=("POOL_READ",))
    def pool_query(ctx, filters=None, options=None):
        e = dict(POOL_ENTRY)
        e["allocated"] = nas.ds_used("tank")
        e["free"] = nas.ds_available()
        return nas.query([e], filters, options, "pool_query")
