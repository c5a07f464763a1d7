"""``iscsi.targetextent.*`` (target <-> extent mappings, LUN ids): query, get_instance, create, update,
delete."""

from __future__ import annotations

import errno

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationErrors
from ..state import NasState, Tables
from .common import ISCSI_R, ISCSI_W

req, opt = S.req, S.opt


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method

    te_spec = {"target": req("int"), "lunid": opt("int", None, null=True), "extent": req("int")}
    lun_map_size = 1024 if p.core else 16383

    def _te_validate(sch, data, old=None):
        old = old or {}
        verrors = ValidationErrors()
        if data["target"] not in T["target"]:
            verrors.add(f"{sch}.target", f"Target {data['target']} not found", errno.ENOENT)
        if data["extent"] not in T["extent"]:
            verrors.add(f"{sch}.extent", f"Extent {data['extent']} not found", errno.ENOENT)
        verrors.check()
        target = data["target"]
        if data.get("lunid") is None:
            lunids = sorted(te["lunid"] for te in T["targetextent"].values() if te["target"] == target)
            if not lunids:
                lunid = 0
            else:
                diff = sorted(set(range(lunids[-1] + 1)).difference(lunids))
                lunid = diff[0] if diff else max(lunids) + 1
            data["lunid"] = lunid
        lunid = data["lunid"]
        if lunid < 0 or lunid > lun_map_size - 1:
            verrors.add(
                f"{sch}.lunid", f"LUN ID must be a positive integer and lower than {lun_map_size - 1}"
            )
        if (old.get("lunid") != lunid or old.get("target") != target) and any(
            te["lunid"] == lunid and te["target"] == target and te["id"] != old.get("id")
            for te in T["targetextent"].values()
        ):
            verrors.add(f"{sch}.lunid", "LUN ID is already being used for this target.")
        if p.extent_single_target:
            if old.get("extent") != data["extent"] and any(
                te["extent"] == data["extent"] for te in T["targetextent"].values()
            ):
                verrors.add(f"{sch}.extent", "Extent is already in use.")
        else:
            if (old.get("extent") != data["extent"] or old.get("target") != target) and any(
                te["extent"] == data["extent"] and te["target"] == target and te["id"] != old.get("id")
                for te in T["targetextent"].values()
            ):
                verrors.add(f"{sch}.extent", "Extent is already in this target.")
        verrors.check()

    @m("iscsi.targetextent.query", max_args=2, roles=ISCSI_R)
    def iscsi_targetextent_query(ctx, filters=None, options=None):
        return nas.query(
            [dict(r) for _, r in sorted(T["targetextent"].items())],
            filters,
            options,
            "iscsi_targetextent_query",
        )

    @m("iscsi.targetextent.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_targetextent_get_instance(ctx, id_, options=None):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        return dict(T["targetextent"][id_])

    @m("iscsi.targetextent.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_create(ctx, data):
        data = S.check_dict(
            pyd, "iscsi_target_to_extent_create" if pyd else "iscsi_targetextent_create", te_spec, data
        )
        _te_validate("iscsi_targetextent_create", data)
        tid = nas._next_id("targetextent")
        r = {"id": tid, "target": data["target"], "lunid": data["lunid"], "extent": data["extent"]}
        T["targetextent"][tid] = r
        nas.service_reload()
        return dict(r)

    @m("iscsi.targetextent.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_update(ctx, id_, data):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        spec = dict(te_spec)
        spec["lunid"] = opt("int", None)
        data = S.check_dict(
            pyd,
            "iscsi_target_to_extent_update" if pyd else "iscsi_targetextent_update",
            spec,
            data,
            update=True,
        )
        old = T["targetextent"][id_]
        new = {**old, **data}
        _te_validate("iscsi_targetextent_update", new, old)
        T["targetextent"][id_] = new
        nas.service_reload()
        return dict(new)

    @m("iscsi.targetextent.delete", max_args=2, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_delete(ctx, id_, force=False):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        te = T["targetextent"][id_]
        active = nas.active_sessions_for_targets([te["target"]])
        if active and not force:
            raise CallError(f"Associated target {active[0]} is in use.")
        del T["targetextent"][id_]
        nas.service_reload()
        return True
