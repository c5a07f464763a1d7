"""``pool.dataset.*``: query, create, get_instance, update, delete (with the iSCSI attachment cascade),
promote."""

from __future__ import annotations

import copy
import errno
from functools import partial

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationErrors
from ..filters import check_options
from ..state import FS_ONLY_FIELDS, RE_DS_COMPONENT, VOLBLOCKSIZES, NasState, zvol_name, zvol_path
from .common import clones_of, descendants, make_dataset, snapshots_of, target_delete
from .dataset_read import dataset_read_plan, flatten, limit_props, wanted_keys

req, opt = S.req, S.opt
_PROPS = ("sync", "compression", "deduplication", "readonly", "snapdev", "checksum", "copies")
_NOT_UPDATABLE = ("name", "type", "sparse", "volblocksize", "casesensitivity", "share_type", "encryption",
                  "encryption_options", "inherit_encryption", "create_ancestors", "user_properties")


def _specs(p) -> tuple[dict, dict]:
    """The create and update argument specs of profile ``p``'s release."""
    create = {
        "name": req("str"),
        "type": opt("str", "FILESYSTEM", enum=("FILESYSTEM", "VOLUME")),
        "volsize": opt("int", None, null=True),
        "volblocksize": opt("str", None, enum=tuple(k for k in VOLBLOCKSIZES if p.core is False or k != "512B")),
        "sparse": opt("bool", False),
        "force_size": opt("bool", False),
        "comments": opt("str", None),
        "managedby": opt("str", None),
        "sync": opt("str", None),
        "compression": opt("str", None),
        "deduplication": opt("str", None),
        "readonly": opt("str", None),
        "snapdev": opt("str", None),
        "copies": opt("any", None),
        "checksum": opt("str", None),
        "refreservation": opt("any", None),
        "reservation": opt("any", None),
        "encryption": opt("bool", False),
        "encryption_options": opt("dict", None),
        "inherit_encryption": opt("bool", True),
        "exec": opt("str", None),
        "share_type": opt("str", "GENERIC"),
        "special_small_block_size": opt("any", None),
    }
    for f in FS_ONLY_FIELDS:
        create[f] = opt("any", None)
    # accepted by every release's pool_dataset_create (plugins/pool.py on CORE, plugins/pool_/dataset.py on SCALE)
    for f in ("quota_warning", "quota_critical", "refquota_warning", "refquota_critical", "snapdir"):
        create[f] = opt("any", None)
    if p.core:
        create.pop("snapdev")  # SCALE-only: middleware TS-24.10.2.2 plugins/pool_/dataset.py:452
    if p.name == "13":
        create["xattr"] = opt("any", None)  # middleware TN-13.0-U6.1 plugins/pool.py:2943; not on SCALE
    if p.name == "11.3":
        # TN-11.3-U5 plugins/pool.py pool_dataset_create: no managedby, checksum, special_small_block_size,
        # acltype or encryption fields yet (all arrived in 12)
        for k in ("managedby", "checksum", "special_small_block_size", "encryption", "encryption_options",
                  "inherit_encryption", "acltype"):
            create.pop(k)
    if p.user_properties:
        create["user_properties"] = opt("list", list, items={"key": req("str"), "value": req("str")})
    if p.create_ancestors:
        create["create_ancestors"] = opt("bool", False)
    update = {k: v for k, v in create.items() if k not in _NOT_UPDATABLE}
    if p.user_properties:
        update["user_properties_update"] = opt(
            "list", list, items={"key": req("str"), "value": opt("str", None), "remove": opt("bool", False)}
        )
    return create, update


def _ds_pydantic(p) -> bool:
    return p.name in ("25.10", "26")  # 25.10+: pydantic dataset model; up to 25.04 legacy schema


# ------------------------------------------------------------------------------------------------ query
def query(nas: NasState, ctx, filters=None, options=None):
    options = dict(check_options(options, "pool_dataset_query", nas.p.pydantic))
    extra = options.get("extra") or {}
    if not isinstance(extra, dict):
        extra = {}
    plan = dataset_read_plan(nas.p, filters if isinstance(filters, list) else [], extra, nas.datasets)
    wanted = wanted_keys(filters, options)
    if wanted is not None and "children" in wanted:
        wanted = None  # children come whole: every key of every nested entry
    elif wanted is not None and plan.children:
        wanted = wanted | {"children"}  # built to be flattened; select drops them again
    if plan.everything:  # 25.10+: every dataset is read, whatever the filter
        names = sorted(nas.datasets)
        if plan.children:
            roots = nas.ds_entries([n for n in names if "/" not in n], children=True, wanted=wanted)
            rows = flatten(roots) if (plan.flat or filters) else roots
        else:
            rows = nas.ds_entries(names, children=False, wanted=wanted)
    else:
        rows = nas.ds_entries(plan.starts, children=plan.children, wanted=wanted)
        if plan.flat:
            rows = flatten(rows)
    rows = [limit_props(r, plan) for r in rows]
    ctx.work = {"datasets": plan.read_count(nas.datasets), "properties": plan.props_read(nas.datasets)}
    nas.dataset_reads.append(
        {"filters": copy.deepcopy(filters), "options": copy.deepcopy(options), **ctx.work})
    return nas.query(rows, filters, options, "pool_dataset_query")


def get_instance(nas: NasState, ctx, id_, options=None):
    if id_ not in nas.datasets:
        raise InstanceNotFound("PoolDataset", id_)
    return nas.ds_entries([id_])[0]


# ----------------------------------------------------------------------------------------------- create
def _valid_ds_name(name: str) -> bool:
    if not name or name.startswith("/") or name.endswith("/") or name.endswith(" "):
        return False
    return all(c and c not in (".", "..") and RE_DS_COMPONENT.match(c) for c in name.split("/"))


def _check_name(nas: NasState, sch: str, data: dict, verrors: ValidationErrors) -> None:
    p, name = nas.p, data["name"]
    if "/" not in name:
        verrors.add(f"{sch}.name", "You need a full name, e.g. pool/newdataset")
    elif not _valid_ds_name(name):
        verrors.add(f"{sch}.name", "Invalid dataset name")
    elif len(name) > p.dataset_name_max and p.name in ("24.10", "25.04"):
        # only middleware TS-24.10.2.2 / TS-25.04.2.4 plugins/pool_/dataset.py:539,547 check it; CORE leaves it to ZFS
        # and TS-25.10.1 defines ZFS_MAX_DATASET_NAME_LEN (api/v25_10_1/pool_dataset.py:42) without using it
        verrors.add(f"{sch}.name", f"Dataset name length should be less than or equal to {p.dataset_name_max}")
    elif name in nas.datasets:
        verrors.add(f"{sch}.name", "Path already exists")
    else:
        parent = name.rsplit("/", 1)[0]
        if parent not in nas.datasets:
            if data.get("create_ancestors"):
                if name.split("/")[0] not in nas.datasets:
                    verrors.add(f"{sch}.name",
                                "Please specify a pool which exists for the dataset/volume to be created")
                else:
                    cur = name.split("/")[0]
                    for comp in name.split("/")[1:-1]:
                        cur = f"{cur}/{comp}"
                        if cur in nas.datasets and nas.datasets[cur]["type"] == "VOLUME":
                            verrors.add(f"{sch}.name", f"{cur}: parent may not be a ZFS volume")
                            break
            elif p.name in ("25.10", "26"):
                # middleware TS-25.10.1 plugins/pool_/dataset.py:211: "zpool (x) does not exist." / "Parent dataset (x)"
                what = "zpool" if "/" not in parent else "Parent dataset"
                verrors.add(f"{sch}.name", f"{what} ({parent}) does not exist.")
            else:
                verrors.add(f"{sch}.name", "Parent dataset does not exist for specified name")
        elif nas.datasets[parent]["type"] == "VOLUME":
            verrors.add(f"{sch}.name", f"{parent}: parent may not be a ZFS volume")
        elif nas.datasets[parent]["props"].get("readonly") == "ON":
            # not in the middleware at any profile's tag ('parent dataset is read-only'): ZFS
            # refuses a child of a readonly=on dataset; the simulator words that refusal itself
            verrors.add(f"{sch}.name", f"{parent}: parent dataset is read-only")


def _check_type_fields(nas: NasState, sch: str, data: dict, verrors: ValidationErrors) -> None:
    """The VOLUME/FILESYSTEM field rules; fills in the default volblocksize of a volume."""
    p = nas.p
    if data["type"] != "VOLUME":
        for f in ("volsize", "volblocksize"):
            if data.get(f) is not None:
                verrors.add(f"{sch}.{f}", "This field is not valid for FILESYSTEM")
        return
    if data["volsize"] is None:
        verrors.add(f"{sch}.volsize", "This field is required for VOLUME")
    for f in FS_ONLY_FIELDS:
        if data.get(f) is not None:
            verrors.add(f"{sch}.{f}", "This field is not valid for VOLUME")
    vbs_given = data["volblocksize"] is not None
    if data["volblocksize"] is None:
        data["volblocksize"] = p.default_volblocksize or "8K"
    vbs = VOLBLOCKSIZES[data["volblocksize"]]
    if data["volsize"] is not None:
        if (vbs_given or not p.volblocksize_check_only_if_given) and data["volsize"] % vbs:
            verrors.add(f"{sch}.volsize", "Volume size should be a multiple of volume block size")
        elif data["volsize"] <= 0:
            # not in the middleware at any profile's tag ('Volume size should be greater than
            # 0'): a zero volsize is refused by ZFS ('volume size cannot be zero'); the
            # simulator's wording
            verrors.add(f"{sch}.volsize", "Volume size should be greater than 0")
        elif not data["force_size"] and data["volsize"] > nas.ds_available() * 0.80:
            verrors.add(f"{sch}.volsize",
                        "It is not recommended to use more than 80% of your available space for VOLUME")


def create(nas: NasState, spec: dict, ctx, data):
    p, sch = nas.p, "pool_dataset_create"
    data = S.check_dict(_ds_pydantic(p), sch, spec, data)
    verrors = ValidationErrors()
    _check_name(nas, sch, data, verrors)
    _check_type_fields(nas, sch, data, verrors)
    for i, up in enumerate(data.get("user_properties") or []):
        if ":" not in up.get("key", ""):
            # not in the middleware at any profile's tag ('Key must contain a'): a user property
            # without ':' is refused by ZFS (invalid property name); the simulator's wording
            verrors.add(f"{sch}.user_properties.{i}.key", "Key must contain a ':'")
    verrors.check()
    name = data["name"]
    if data.get("create_ancestors"):
        cur = name.split("/")[0]
        for comp in name.split("/")[1:-1]:
            cur = f"{cur}/{comp}"
            if cur not in nas.datasets:
                make_dataset(nas, cur, "FILESYSTEM")
    rec = make_dataset(nas, name, data["type"])
    if data["type"] == "VOLUME":
        rec["volsize"] = data["volsize"]
        rec["volblocksize"] = VOLBLOCKSIZES[data["volblocksize"]]
        rec["sparse"] = data["sparse"]
        rec["device_pending"] = nas.device_lag_default
    for k in _PROPS:
        if data.get(k) not in (None, "INHERIT"):
            rec["props"][k] = data[k]
    rec["comments"] = data.get("comments")
    managedby = data.get("managedby")
    if managedby is not None and p.name in ("13", "24.10") and ctx.peer_ip:
        managedby = f"{managedby}@{ctx.peer_ip}"
    rec["managedby"] = managedby
    for up in data.get("user_properties") or []:
        rec["user_properties"][up["key"]] = up["value"]
    entry = nas.ds_entries([name])[0]
    nas.on_event("pool.dataset.query", "added", name, entry)
    return entry


# ----------------------------------------------------------------------------------------------- update
def _check_update(nas: NasState, sch: str, rec: dict, data: dict) -> None:
    verrors = ValidationErrors()
    if "volsize" in data and data["volsize"] is not None:
        if rec["type"] != "VOLUME":
            verrors.add(f"{sch}.volsize", "This field is not valid for FILESYSTEM")
        elif data["volsize"] < rec["volsize"]:
            verrors.add(f"{sch}.volsize", "You cannot shrink a zvol from GUI, this may lead to data loss.")
        elif data["volsize"] % rec["volblocksize"]:
            verrors.add(f"{sch}.volsize", "Volume size should be a multiple of volume block size")
        elif (
            not data.get("force_size")
            and not rec.get("sparse")
            and data["volsize"] - rec["volsize"] > nas.ds_available() * 0.80
        ):
            verrors.add(f"{sch}.volsize",
                        "It is not recommended to use more than 80% of your available space for VOLUME")
    for i, up in enumerate(data.get("user_properties_update") or []):
        if ":" not in up.get("key", ""):
            verrors.add(f"{sch}.user_properties_update.{i}.key", "Key must contain a ':'")
        elif not up.get("remove") and up.get("value") is None:
            verrors.add(f"{sch}.user_properties_update.{i}.value", "This field is required")
    verrors.check()


def update(nas: NasState, spec: dict, ctx, id_, data):
    if id_ not in nas.datasets:
        raise InstanceNotFound("PoolDataset", id_)
    sch = "pool_dataset_update"
    data = S.check_dict(_ds_pydantic(nas.p), sch, spec, data, update=True)
    rec = nas.datasets[id_]
    _check_update(nas, sch, rec, data)
    if data.get("volsize") is not None and rec["type"] == "VOLUME":
        rec["volsize"] = data["volsize"]
    for k in _PROPS:
        if k in data and data[k] is not None:
            if data[k] == "INHERIT":
                rec["props"].pop(k, None)
            else:
                rec["props"][k] = data[k]
    if "comments" in data:
        rec["comments"] = data["comments"] if data["comments"] not in (None, "") else None
    if "managedby" in data:
        rec["managedby"] = data["managedby"]
    for up in data.get("user_properties_update") or []:
        if up.get("remove"):
            rec["user_properties"].pop(up["key"], None)
        else:
            rec["user_properties"][up["key"]] = up["value"]
    entry = nas.ds_entries([id_])[0]
    nas.on_event("pool.dataset.query", "changed", id_, entry)
    return entry


# ----------------------------------------------------------------------------------------------- delete
def _cascade_zvol(nas: NasState, name: str) -> bool:
    """iSCSI fs-attachment delegate: drop DISK extents on the zvol, their mappings, orphaned targets."""
    p, T = nas.p, nas.tables
    path = zvol_path(name)
    extents = [
        e
        for e in T["extent"].values()
        # the delegate's query(path, enabled=True) (middleware TS-25.04.2.4
        # src/middlewared/middlewared/common/attachment/__init__.py:85 get_query_filters): a
        # disabled extent on the zvol survives the delete, on every release from 11.3 to 26
        if e["type"] == "DISK" and e.get("enabled", True)
        and (e["path"] == path or e["path"].startswith(path + "@"))
    ]
    if not extents:
        return False
    orphan = set()
    for e in extents:
        for te in list(T["targetextent"].values()):
            if te["extent"] == e["id"]:
                orphan.add(te["target"])
                del T["targetextent"][te["id"]]
        del T["extent"][e["id"]]
    for te in T["targetextent"].values():
        orphan.discard(te["target"])
    if not p.core or p.name != "11.3":
        for tid in sorted(orphan):
            target_delete(nas, tid, True, False)
    return True


def _check_delete(nas: NasState, id_: str, recursive: bool, victims: list[str]) -> None:
    if not recursive:
        if nas.ds_children(id_):
            raise CallError(
                f"Failed to delete dataset: cannot destroy '{id_}': filesystem has children", errno.ENOTEMPTY
            )
        if snapshots_of(nas, id_):
            kind = "volume" if nas.datasets[id_]["type"] == "VOLUME" else "filesystem"
            raise CallError(
                f"Failed to delete dataset: cannot destroy '{id_}': {kind} has children\n"
                f"use '-r' to destroy the following datasets:\n" + "\n".join(snapshots_of(nas, id_)),
                errno.ENOTEMPTY,
            )
    for v in victims:
        for s in snapshots_of(nas, v):
            clones = [c for c in clones_of(nas, s) if c not in victims]
            if clones:
                raise CallError(
                    f"Failed to delete dataset: cannot destroy '{v}': filesystem has dependent "
                    f"clones\nuse '-R' to destroy the following datasets:\n" + "\n".join(clones),
                    errno.EBUSY,
                )


def delete(nas: NasState, ctx, id_, options=None):
    opts = S.check_dict(
        _ds_pydantic(nas.p),
        "pool_dataset_delete",
        {"recursive": opt("bool", False), "force": opt("bool", False)},
        options or {},
    )
    if id_ not in nas.datasets:
        raise InstanceNotFound("PoolDataset", id_)
    if "/" not in id_:
        # not in the middleware at any profile's tag ('Root dataset cannot be deleted'):
        # pool.dataset.delete of a pool's root dataset is left to libzfs/pool.export in the
        # middleware; the simulator refuses it
        raise CallError("Root dataset cannot be deleted", errno.EINVAL)
    victims = descendants(nas, id_) + [id_]
    _check_delete(nas, id_, opts["recursive"], victims)
    cascaded = False
    for v in victims:
        if nas.datasets[v]["type"] == "VOLUME":
            cascaded = _cascade_zvol(nas, v) or cascaded
    for v in victims:
        for s in snapshots_of(nas, v):
            del nas.snapshots[s]
        del nas.datasets[v]
        nas.on_event("pool.dataset.query", "removed", v, None)
    if cascaded:
        nas.service_reload()
    return True


# ---------------------------------------------------------------------------------------------- promote
def promote(nas: NasState, ctx, id_):
    """``zfs promote`` (public on 11.3 .. 26; middleware TS-25.04.2.4 plugins/pool_/dataset.py:1062): the clone
    takes over its origin snapshot and every older snapshot of the origin dataset; the origin dataset
    becomes a clone of the moved snapshot; clones of moved snapshots follow the new names."""
    if id_ not in nas.datasets:
        raise CallError(f'Dataset "{id_}" does not exist.', errno.ENOENT)
    rec = nas.datasets[id_]
    origin = rec.get("origin")
    if not origin:
        raise CallError("Only cloned datasets can be promoted.", errno.EBADMSG)
    src, _, sname = origin.partition("@")
    src_rec = nas.datasets.get(src)
    if src_rec is None or origin not in nas.snapshots:
        # mw: plugins/zfs_/dataset_actions.py:101 @ TS-25.10.1 | Failed to promote dataset: {
        raise CallError(f"Failed to promote dataset: cannot promote '{id_}': origin {origin} not found")
    cut = int(nas.snapshots[origin]["createtxg"])
    moved = [x for x in snapshots_of(nas, src) if int(nas.snapshots[x]["createtxg"]) <= cut]
    for x in moved:
        dst = f"{id_}@{x.partition('@')[2]}"
        if dst in nas.snapshots:
            # mw: plugins/zfs_/dataset_actions.py:101 @ TS-25.10.1 | Failed to promote dataset: {
            raise CallError(
                f"Failed to promote dataset: cannot promote '{id_}': snapshot name "
                f"'{x.partition('@')[2]}' from origin conflicts with '{dst}' from target",
                errno.EEXIST,
            )
    src_origin = src_rec.get("origin")
    renames = {x: f"{id_}@{x.partition('@')[2]}" for x in moved}
    for x, dst in renames.items():
        nas.snapshots[dst] = nas.snapshots.pop(x)
    for d in nas.datasets.values():
        if d.get("origin") in renames:
            d["origin"] = renames[d["origin"]]
    rec["origin"] = src_origin
    src_rec["origin"] = renames[origin]
    for e in nas.tables["extent"].values():   # extents on a moved snapshot follow its name
        if e["type"] == "DISK" and e["path"].startswith(zvol_path(src) + "@"):
            snap_name = zvol_name(e["path"])
            if snap_name in renames:
                e["path"] = zvol_path(renames[snap_name])
    nas.on_event("pool.dataset.query", "changed", id_, nas.ds_entries([id_])[0])
    return None


def register(nas: NasState) -> None:
    m = nas.method
    create_spec, update_spec = _specs(nas.p)
    m("pool.dataset.query", max_args=2, roles=("DATASET_READ",))(partial(query, nas))
    m("pool.dataset.create", max_args=1, min_args=1, roles=("DATASET_WRITE",), mutating=True)(
        partial(create, nas, create_spec))
    m("pool.dataset.get_instance", max_args=2, min_args=1, roles=("DATASET_READ",))(partial(get_instance, nas))
    m("pool.dataset.update", max_args=2, min_args=2, roles=("DATASET_WRITE",), mutating=True)(
        partial(update, nas, update_spec))
    m("pool.dataset.delete", max_args=2, min_args=1, roles=("DATASET_DELETE",), mutating=True)(
        partial(delete, nas))
    m("pool.dataset.promote", max_args=1, min_args=1, roles=("DATASET_WRITE",), mutating=True)(
        partial(promote, nas))
