"""``zfs.snapshot.*``: query, create, clone, delete (the handlers pool_snapshot.py registers again as
``pool.snapshot.*`` from 25.10 on)."""

from __future__ import annotations

import errno
import time
from functools import partial

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationError, ValidationErrors
from ..state import NasState, zfs_human, zvol_path
from .common import clones_of, make_dataset

req, opt = S.req, S.opt
SPARSE_REF = 57344


def snap_entry(nas: NasState, sid: str) -> dict:
    s = nas.snapshots[sid]
    ds, _, sname = sid.partition("@")
    vs = s.get("volsize")
    props = {
        "creation": nas._prop({"$date": s["creation"] * 1000}, str(s["creation"]), None, "NONE"),
        "used": nas._prop(0, "0", "0B", "NONE"),
        "referenced": nas._prop(SPARSE_REF, str(SPARSE_REF), zfs_human(SPARSE_REF), "NONE"),
    }
    if vs is not None:
        props["volsize"] = nas._prop(vs, str(vs), zfs_human(vs), "LOCAL")
    vbs = s.get("volblocksize")
    if vbs is not None:  # a zvol snapshot has the zvol's volblocksize; the query returns every property
        props["volblocksize"] = nas._prop(vbs, str(vbs), zfs_human(vbs), "NONE")
    return {
        "id": sid,
        "name": sid,
        "pool": sid.split("/")[0],
        "type": "SNAPSHOT",
        "snapshot_name": sname,
        "dataset": ds,
        "createtxg": str(s["createtxg"]),
        "properties": props,
        "holds": {},
        "retention": None,
    }


def query(nas: NasState, ctx, filters=None, options=None):
    return nas.query(
        [snap_entry(nas, s) for s in sorted(nas.snapshots)], filters, options, "pool_snapshot_query"
    )


def create(nas: NasState, ctx, data):
    p = nas.p
    sch = "snapshot_create" if p.core else "pool_snapshot_create"
    data = S.check_dict(
        False,
        sch,
        {
            "dataset": req("str"),
            "name": opt("str", None),
            "naming_schema": opt("str", None),
            "recursive": opt("bool", False),
            "exclude": opt("list", list),
            "suspend_vms": opt("bool", False),
            "vmware_sync": opt("bool", False),
            "properties": opt("dict", dict),
        },
        data,
    )
    if not data["name"]:
        raise ValidationError(f"{sch}.name", "You must specify either name or naming schema")
    if data["dataset"] not in nas.datasets:
        # not in the middleware at any profile's tag ('This dataset does not exist'): the middleware
        # lets libzfs fail on a missing dataset; the simulator refuses it up front with its own text
        raise ValidationError(f"{sch}.dataset", "This dataset does not exist", errno.ENOENT)
    sid = f"{data['dataset']}@{data['name']}"
    if sid in nas.snapshots:
        # mw: plugins/zfs_/snapshot.py:200 @ TS-25.10.1 | Failed to snapshot {
        raise CallError(f"Failed to snapshot {sid}: dataset already exists", errno.EEXIST)
    d = nas.datasets[data["dataset"]]
    nas.snapshots[sid] = {
        "creation": int(time.time()),
        "createtxg": nas.next_txg(),
        "volsize": d.get("volsize"),
        "volblocksize": d.get("volblocksize"),
        "data": d.get("data"),
    }
    return snap_entry(nas, sid)


def clone(nas: NasState, ctx, data):
    sch = "snapshot_clone" if nas.p.core else "pool_snapshot_clone"
    data = S.check_dict(
        False,
        sch,
        {"snapshot": req("str"), "dataset_dst": req("str"), "dataset_properties": opt("dict", dict)},
        data,
    )
    snap, dst = data["snapshot"], data["dataset_dst"]
    if snap not in nas.snapshots:
        # not in the middleware at any profile's tag ('Snapshot does not exist'): the middleware
        # lets libzfs fail on a missing snapshot; the simulator refuses it up front with its own
        # text
        raise ValidationError(f"{sch}.snapshot", "Snapshot does not exist", errno.ENOENT)
    if dst in nas.datasets:
        # mw: plugins/zfs_/snapshot_actions.py:37 @ TS-25.10.1 | Failed to clone snapshot: {
        raise CallError(
            f"Failed to clone snapshot: cannot create '{dst}': dataset already exists", errno.EEXIST
        )
    parent = dst.rsplit("/", 1)[0]
    if "/" not in dst or parent not in nas.datasets:
        # mw: plugins/zfs_/snapshot_actions.py:37 @ TS-25.10.1 | Failed to clone snapshot: {
        raise CallError(
            f"Failed to clone snapshot: cannot create '{dst}': parent does not exist", errno.ENOENT
        )
    if nas.datasets[parent]["type"] == "VOLUME":
        raise CallError(
            f"Failed to clone snapshot: cannot create '{dst}': parent may not be a ZFS volume"
        )
    src = nas.datasets.get(snap.split("@")[0])
    s = nas.snapshots[snap]
    rec = make_dataset(nas, dst, src["type"] if src else ("VOLUME" if s.get("volsize") else "FILESYSTEM"))
    rec["origin"] = snap
    rec["data"] = s.get("data")
    if rec["type"] == "VOLUME":
        rec["volsize"] = s["volsize"]
        rec["volblocksize"] = s["volblocksize"]
        rec["sparse"] = True
        rec["device_pending"] = nas.device_lag_default
    nas.on_event("pool.dataset.query", "added", dst, nas.ds_entries([dst])[0])
    return True


def delete(nas: NasState, ctx, id_, options=None):
    if id_ not in nas.snapshots:
        raise InstanceNotFound("ZFSSnapshot" if nas.p.core else "PoolSnapshot", id_)
    clones = clones_of(nas, id_)
    if clones and nas.p.snapshot_clones_defer_error and not (options or {}).get("defer"):
        # SCALE 24.10..25.10: libzfs's "snapshot has dependent clones" becomes an options.defer validation
        # error (26 moved snapshot deletion to zfs.resource; not modelled, it keeps the CallError below)
        # mw: plugins/zfs_/snapshot.py:306 @ TS-24.10.2.2 | f'Please set this attribute as {snap.name!r} snapshot has dependent clones: '
        # mw: plugins/zfs_/snapshot.py:282 @ TS-25.04.2.4 | f'Please set this attribute as {snap.name!r} snapshot has dependent clones: '
        # mw: plugins/zfs_/snapshot.py:256 @ TS-25.10.1 | f'Please set this attribute as {snap.name!r} snapshot has dependent clones: '
        v = ValidationErrors()
        v.add("options.defer", f"Please set this attribute as {id_!r} snapshot has dependent clones: {', '.join(clones)}")
        v.check()
    if clones:
        # CORE 13 (no such check), 26, or defer=True: the libzfs error as a CallError
        raise CallError(
            f"Failed to delete snapshot: cannot destroy '{id_}': snapshot has dependent clones\n"
            f"use '-R' to destroy the following datasets:\n" + "\n".join(clones),
            errno.EBUSY,
        )
    # extents on the snapshot itself (zvol/<ds>@snap) are attachments too
    path = zvol_path(id_)
    for e in [e for e in nas.tables["extent"].values() if e["path"] == path]:
        for te in [te for te in nas.tables["targetextent"].values() if te["extent"] == e["id"]]:
            del nas.tables["targetextent"][te["id"]]
        del nas.tables["extent"][e["id"]]
    del nas.snapshots[id_]
    return True


def register_namespace(nas: NasState, ns: str) -> None:
    """``<ns>.query/create/clone/delete``: the same handlers under ``zfs.snapshot`` and ``pool.snapshot``."""
    m = nas.method
    m(f"{ns}.query", max_args=2, roles=("SNAPSHOT_READ", "DATASET_READ"))(partial(query, nas))
    m(f"{ns}.create", max_args=1, min_args=1, roles=("SNAPSHOT_WRITE", "DATASET_WRITE"), mutating=True)(
        partial(create, nas))
    m(f"{ns}.clone", max_args=1, min_args=1, roles=("SNAPSHOT_WRITE", "DATASET_WRITE"), mutating=True)(
        partial(clone, nas))
    m(f"{ns}.delete", max_args=2, min_args=1, roles=("SNAPSHOT_DELETE", "DATASET_DELETE"), mutating=True)(
        partial(delete, nas))


def register(nas: NasState) -> None:
    # 11.3 .. 25.04 have only zfs.snapshot.* (private in 25.10, still callable: kept here)
    register_namespace(nas, "zfs.snapshot")
