"""What more than one namespace module needs: role sets, and the dataset/snapshot/target relations that a
delete in one namespace follows into another."""

from __future__ import annotations

from ..errors import CallError
from ..state import NasState, dataset_record

ISCSI_R = ("SHARING_ISCSI_READ",)
ISCSI_W = ("SHARING_ISCSI_WRITE",)


def make_dataset(nas: NasState, name: str, type_: str) -> dict:
    rec = nas.datasets[name] = dataset_record(name, type_)
    return rec


def descendants(nas: NasState, name: str) -> list[str]:
    """Every dataset under ``name``, deepest first."""
    out = []
    for c in nas.ds_children(name):
        out.extend(descendants(nas, c))
        out.append(c)
    return out


def snapshots_of(nas: NasState, name: str) -> list[str]:
    return [s for s in nas.snapshots if s.split("@")[0] == name]


def clones_of(nas: NasState, snap: str) -> list[str]:
    return [n for n, d in nas.datasets.items() if d.get("origin") == snap]


def target_delete(nas: NasState, id_: int, force: bool, delete_extents: bool) -> None:
    """Delete target ``id_`` with its mappings (and their extents with ``delete_extents``): iscsi.target.delete,
    and the iSCSI attachment delegate of pool.dataset.delete (an orphaned target goes too)."""
    T = nas.tables
    t = T["target"][id_]
    if nas.active_sessions_for_targets([id_]) and not force:
        raise CallError(f"Target {t['name']} is in use.")
    ext_ids = []
    for te in [te for te in T["targetextent"].values() if te["target"] == id_]:
        ext_ids.append(te["extent"])
        del T["targetextent"][te["id"]]
    if delete_extents:
        for eid in ext_ids:
            T["extent"].pop(eid, None)
    del T["target"][id_]
    # the target disappears from the running config: its sessions go away with it
    iqn = nas.target_iqn(t["name"])
    nas.sessions[:] = [s for s in nas.sessions if s["target"] != iqn]
