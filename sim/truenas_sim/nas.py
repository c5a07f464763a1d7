"""The simulated NAS: :class:`~.state.NasState` with every method of its profile's release registered.

The methods come from ``methods/`` (one module per API namespace); ``sources.py`` (generated from the
middleware source at each profile's release tag by scripts/trace_truenas_sources.py) then removes every
method the release does not have.
"""

from __future__ import annotations

from . import methods
from .profiles import Profile
from .sources import SOURCES
from .state import (
    FS_ONLY_FIELDS,
    REDACTED,
    VOLBLOCKSIZES,
    Ctx,
    JobRequest,
    MethodSpec,
    NasState,
    Session,
    dataset_record,
    sanitize_extent,
    zfs_human,
    zvol_name,
    zvol_path,
)

#: False only while scripts/trace_truenas_sources.py lists every method the simulator can serve
SOURCE_GATE = True


class Nas(NasState):
    def __init__(self, profile: Profile, seed: int = 1234):
        super().__init__(profile, seed)
        methods.register_all(self)
        if SOURCE_GATE:
            # serve only what the real release has: SOURCES says None where a method is not in that release
            for name in list(self.methods):
                row = SOURCES.get(name)
                if row is not None and self.p.name in row and row[self.p.name] is None:
                    del self.methods[name]


__all__ = [
    "FS_ONLY_FIELDS",
    "REDACTED",
    "SOURCE_GATE",
    "VOLBLOCKSIZES",
    "Ctx",
    "JobRequest",
    "MethodSpec",
    "Nas",
    "Session",
    "dataset_record",
    "sanitize_extent",
    "zfs_human",
    "zvol_name",
    "zvol_path",
]
