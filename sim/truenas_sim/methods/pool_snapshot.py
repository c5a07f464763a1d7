"""``pool.snapshot.*``: the zfs.snapshot handlers under their public name, from 25.10 on (MW commit
5d42c5cfbd, first in TS-25.10-BETA.1)."""

from __future__ import annotations

from ..state import NasState
from .zfs_snapshot import register_namespace


def register(nas: NasState) -> None:
    if nas.p.pool_snapshot:
        register_namespace(nas, "pool.snapshot")
