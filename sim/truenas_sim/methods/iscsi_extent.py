"""``iscsi.extent.*``: query, get_instance, disk_choices, create, update, delete."""

from __future__ import annotations

import errno
import hashlib
import uuid

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationErrors
from ..state import NasState, Tables, zfs_human, zvol_name, zvol_path
from .common import ISCSI_R, ISCSI_W

req, opt = S.req, S.opt


def _spec(p) -> dict:
    pyd = p.pydantic
    ext_spec = {
        "name": req("str", max_length=p.extent_name_max, min_length=1 if pyd else None),
        "type": opt("str", "DISK", enum=("DISK", "FILE")),
        "disk": opt("str", None, null=True),
        "serial": opt("str", None, null=True),
        "path": opt("str", None, null=True),
        "filesize": opt("int", 0),
        "blocksize": opt("int", 512, enum=(512, 1024, 2048, 4096)),
        "pblocksize": opt("bool", False),
        "avail_threshold": opt("int", None, null=True, range=(1, 99)),
        "comment": opt("str", ""),
        "insecure_tpc": opt("bool", True),
        "xen": opt("bool", False),
        "rpm": opt("str", "SSD", enum=("UNKNOWN", "SSD", "5400", "7200", "10000", "15000")),
        "ro": opt("bool", False),
        "enabled": opt("bool", True),
    }
    if p.extent_product_id:
        ext_spec["product_id"] = opt("str", None, null=True, max_length=16)
    return ext_spec


def _entry(nas: NasState, r: dict) -> dict:
    p = nas.p
    e = {
        "id": r["id"],
        "name": r["name"],
        "type": r["type"],
        "disk": r["path"] if r["type"] == "DISK" else None,
        "serial": r["serial"],
        "path": r["path"],
        "filesize": str(r["filesize"]),
        "blocksize": r["blocksize"],
        "pblocksize": r["pblocksize"],
        "avail_threshold": r["avail_threshold"],
        "comment": r["comment"],
        "naa": r["naa"],
        "insecure_tpc": r["insecure_tpc"],
        "xen": r["xen"],
        "rpm": r["rpm"],
        "ro": r["ro"],
        "enabled": r["enabled"],
        "vendor": "TrueNAS",
    }
    if p.extent_product_id:
        e["product_id"] = r.get("product_id")
    if p.extent_dataset_fields:  # 26: read-only, null for DISK extents (plugins/iscsi_/extents.py extend)
        e["dataset"], e["relative_path"] = _file_dataset(nas, r) if r["type"] == "FILE" else (None, None)
    if p.extent_locked:  # not on 11.3 (the lockable SharingService came in 12)
        e["locked"] = False
    return e


def _file_dataset(nas: NasState, r: dict) -> tuple:
    path = r["path"] or ""
    best = None
    for name in nas.datasets:
        mp = "/mnt/" + name
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(name) > len(best)):
            best = name
    if best is None:
        return None, None
    return best, path[len("/mnt/" + best):].lstrip("/")


def _gen_serial(nas: NasState) -> str:
    used = {e["serial"] for e in nas.tables["extent"].values()}
    while True:
        s = "%015x" % nas.rng.getrandbits(60)
        if s not in used:
            return s


def _gen_naa(nas: NasState) -> str:
    return (
        "0x6589cfc000000"
        + hashlib.sha256(str(uuid.UUID(int=nas.rng.getrandbits(128))).encode()).hexdigest()[0:19]
    )


def _validate(nas: NasState, sch: str, data: dict, old: dict | None = None) -> None:
    p, T = nas.p, nas.tables
    verrors = ValidationErrors()
    name = data["name"]
    if '"' in name:
        verrors.add(f"{sch}.name", "Double quotes are not allowed")
    if old is None or name != old["name"]:
        if any(e["name"] == name for e in T["extent"].values()):
            verrors.add(f"{sch}.name", "Extent name must be unique")
    serial = data["serial"]
    if '"' in serial:
        verrors.add(f"{sch}.serial", "Double quotes are not allowed")
    if len(serial) > p.serial_max and p.serial_schema_max:
        verrors.add(f"{sch}.serial", f"Value greater than {p.serial_max} not allowed")  # 11.3 Str max_length
    elif len(serial) > p.serial_max:
        verrors.add(
            f"{sch}.serial",
            f"Maximum length of {p.serial_max} characters is allowed for extent serial"
            if p.core
            else f"Extent serial can not exceed {p.serial_max} characters",
        )
    if (old is None or serial != old["serial"]) and not p.core:   # SCALE extents.py only
        if any(e["serial"] == serial for e in T["extent"].values()):
            verrors.add(f"{sch}.serial", "Serial number must be unique")
    if data["type"] == "DISK":
        disk = data.get("disk")
        if not disk:
            verrors.add(f"{sch}.disk", "This field is required")
            raise verrors
        if not disk.startswith("zvol/"):
            verrors.add(f"{sch}.disk", 'Disk name must start with "zvol/"')
            raise verrors
        zname = zvol_name(disk)
        device = "/dev/" + disk
        if "@" in zname:
            exists = zname in nas.snapshots and nas.snapshots[zname].get("volsize") is not None
            pending = None
        else:
            ds = nas.datasets.get(zname)
            exists = ds is not None and ds["type"] == "VOLUME"
            pending = ds if exists and ds.get("device_pending", 0) > 0 and not p.core else None
        if " " in disk:
            exists = False  # the device node uses '+' for spaces: /dev/zvol/SSD+Pool/x
        if exists and pending is not None and old is None:
            pending["device_pending"] -= 1  # the zvol device node appears a little after the create
            exists = False
        if not exists:
            if p.zvol_missing_msg_11:  # 11.3: os.path.exists(f'/dev/{disk}')
                verrors.add(f"{sch}.disk", f"ZVOL {disk} does not exist")
            elif p.core:
                verrors.add(f"{sch}.disk", f"Zvol {zname} does not exist", errno.ENOENT)
            else:
                verrors.add(f"{sch}.disk", f"Device {device!r} for volume {zname!r} does not exist")
        if "@" in zname and not data["ro"] and not p.core:   # SCALE extents.py only
            verrors.add(f"{sch}.ro", "Must be set when disk is a ZFS Snapshot")
    else:
        path = data.get("path")
        if not path:
            verrors.add(f"{sch}.path", "This field is required")
            raise verrors
        if not any(
            path.startswith(f"/mnt/{n}/") for n, d in nas.datasets.items() if d["type"] == "FILESYSTEM"
        ):
            # mw: async_validators.py:16 @ TN-13.0-U6.1 | The path must reside within a volume mount point
            # mw: validators.py:193 @ TS-25.10.1 | The path must reside within a pool mount point
            verrors.add(f"{sch}.path", "The path must reside within a "
                        + ("volume" if p.core else "pool") + " mount point")
        if path.endswith("/"):
            verrors.add(f"{sch}.path", "You need to specify a filepath not a directory")
        size = data["filesize"]
        if size == 0:
            if path not in nas.files:
                verrors.add(f"{sch}.path", "The file must exist if the extent size is set to auto (0)")
        elif float(size) % data["blocksize"]:
            verrors.add(
                f"{sch}.filesize",
                f"File size ({size}) must be a multiple of block size ({data['blocksize']})",
            )
    verrors.check()


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method
    spec = _spec(p)

    @m("iscsi.extent.query", max_args=2, roles=ISCSI_R)
    def iscsi_extent_query(ctx, filters=None, options=None):
        return nas.query(
            [_entry(nas, r) for _, r in sorted(T["extent"].items())], filters, options, "iscsi_extent_query"
        )

    @m("iscsi.extent.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_extent_get_instance(ctx, id_, options=None):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        return _entry(nas, T["extent"][id_])

    @m("iscsi.extent.disk_choices", max_args=1, roles=ISCSI_R)
    def iscsi_extent_disk_choices(ctx, exclude=None):
        used = {e["path"] for e in T["extent"].values() if e["type"] == "DISK"}
        out = {}
        for n, d in sorted(nas.datasets.items()):
            if d["type"] == "VOLUME" and zvol_path(n) not in used:
                out[zvol_path(n)] = f"{n} ({zfs_human(d['volsize']).replace('G', ' GiB')})"
        return out

    @m("iscsi.extent.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_extent_create(ctx, data):
        sch = "iscsi_extent_create"
        data = S.check_dict(pyd, sch, spec, data)
        data["serial"] = data["serial"] or _gen_serial(nas)
        _validate(nas, sch, data)
        eid = nas._next_id("extent")
        r = dict(data)
        r["id"] = eid
        r["naa"] = _gen_naa(nas)
        if r["type"] == "DISK":
            r["path"] = r["disk"]
        else:
            nas.files.add(r["path"])
        r.pop("disk", None)
        T["extent"][eid] = r
        if p.name == "11.3":
            nas.service_reload()
        return _entry(nas, r)

    @m("iscsi.extent.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_extent_update(ctx, id_, data):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        data = S.check_dict(pyd, "iscsi_extent_update", spec, data, update=True)
        old = _entry(nas, T["extent"][id_])
        new = {**old, **data}
        if new["type"] == "DISK" and "disk" not in data and "path" in data:
            new["disk"] = data["path"]
        new["serial"] = new["serial"] or _gen_serial(nas)
        new["filesize"] = int(new["filesize"]) if str(new["filesize"]).isdigit() else 0
        _validate(nas, "iscsi_extent_update", new, old)
        r = {k: v for k, v in new.items() if k not in ("disk", "vendor", "locked")}
        if r["type"] == "DISK":
            r["path"] = new["disk"]
        T["extent"][id_] = r
        nas.service_reload()
        # update reloads twice on purpose: middleware TS-25.04.2.4
        # src/middlewared/middlewared/plugins/iscsi_/extents.py:179,182 ("scstadmin can have issues ...")
        nas.service_reload()
        return _entry(nas, r)

    @m("iscsi.extent.delete", max_args=3, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_extent_delete(ctx, id_, remove=False, force=False):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        tes = [te for te in T["targetextent"].values() if te["extent"] == id_]
        active = nas.active_sessions_for_targets([te["target"] for te in tes])
        if active and not force:
            raise CallError(
                f"Associated target(s) {','.join(active)} {'is' if len(active) == 1 else 'are'} in use."
            )
        data = T["extent"][id_]
        if remove and data["type"] == "FILE":
            nas.files.discard(data["path"])
        for te in tes:
            del T["targetextent"][te["id"]]
        del T["extent"][id_]
        nas.service_reload()
        return True
