"""Every simulated API method, one module per middleware namespace (``iscsi.extent`` -> ``iscsi_extent``).

Each module has ``register(nas)``, which adds that namespace's methods for ``nas.p`` (the profile) with
``nas.method(name, ...)``. :func:`register_all` runs them in :data:`NAMESPACES` order; ``nas.Nas`` calls it
and then drops what the profile's release does not have (sources.py).
"""

from __future__ import annotations

from ..state import NasState
from . import (
    auth,
    core,
    iscsi_auth,
    iscsi_extent,
    iscsi_global,
    iscsi_initiator,
    iscsi_portal,
    iscsi_target,
    iscsi_targetextent,
    pool,
    pool_dataset,
    pool_snapshot,
    service,
    system,
    zfs_snapshot,
)

#: the namespace modules, in registration order
NAMESPACES = (core, system, auth, pool, pool_dataset, zfs_snapshot, pool_snapshot, iscsi_global, iscsi_portal,
              iscsi_initiator, iscsi_auth, iscsi_extent, iscsi_target, iscsi_targetextent, service)


def register_all(nas: NasState) -> None:
    for module in NAMESPACES:
        module.register(nas)
