"""In-memory ports for offline plans: a ``netprov state pull`` snapshot (or an empty world).

``SnapshotStorage`` and ``SnapshotBootHost`` stand behind the same protocols as the live
TrueNAS and PXE adapters (``netprov.engine.run.StoragePort`` / ``BootHostPort``): their
``read`` answers from the snapshot, and their ``apply`` refuses, so the engine plans
offline exactly as it plans live, with no branch of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from netprov.core.bootfiles import BootFile, Root
from netprov.core.fileplan import RemoteManifest, manifest_from_json
from netprov.core.plan import Change
from netprov.core.storage import ActualStorage, DesiredStorage, state_fingerprint
from netprov.errors import NetprovError

#: The ``format`` of a state file written by ``netprov state pull``.
STATE_FORMAT = 1
OFFLINE_APPLY = "an offline plan cannot be applied: plan against the live systems"


def empty_actual(desired: DesiredStorage) -> ActualStorage:
    """A fresh NAS as the offline planner assumes it: the parent dataset, nothing else, iSCSI off."""
    return ActualStorage(parent=desired.parent, service={"enable": False, "state": "STOPPED"})


class SnapshotStorage:
    """One NAS as a snapshot saw it (``ActualStorage.to_json``), or a fresh NAS when ``state`` is None."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.state = state

    def read(self, desired: DesiredStorage) -> ActualStorage:
        return ActualStorage.from_json(self.state) if self.state else empty_actual(desired)

    def fingerprint(self, actual: ActualStorage) -> str:
        return state_fingerprint(actual)

    def apply(self, changes: list[Change], **_: Any) -> Any:
        raise NetprovError(OFFLINE_APPLY)


class SnapshotBootHost:
    """One PXE server as a snapshot saw it (``manifest_to_json``), or one holding nothing (its roots
    empty, every binary source present with an unknown hash) when ``state`` is None."""

    def __init__(self, server: str, roots: Mapping[Root, str], state: Mapping[str, Any] | None = None) -> None:
        self.server, self.roots, self.state = server, dict(roots), state

    def read(self, desired: Sequence[BootFile], *, host_text: bool = False) -> RemoteManifest:
        """The snapshot as the server was (it holds the host line files' text already), or an empty server."""
        if self.state:
            return manifest_from_json(self.state)
        return RemoteManifest(server=self.server, roots=self.roots,
                              sources={f.source: "unknown" for f in desired if f.source})

    def apply(self, changes: Iterable[Change], progress: Any = None) -> Any:
        raise NetprovError(OFFLINE_APPLY)


def snapshot_ports(state: Mapping[str, Any], storage: Iterable[str], pxe: Mapping[str, Mapping[Root, str]]
                   ) -> tuple[dict[str, SnapshotStorage], dict[str, SnapshotBootHost]]:
    """The ports of an offline world: ``state`` is a loaded state file (``{}``: an empty world),
    ``storage`` the inventory's NAS names, ``pxe`` its PXE servers and their roots."""
    nas = state.get("storage") or {}
    hosts = state.get("pxe") or {}
    return ({name: SnapshotStorage(nas.get(name)) for name in storage},
            {name: SnapshotBootHost(name, roots, hosts.get(name)) for name, roots in pxe.items()})
