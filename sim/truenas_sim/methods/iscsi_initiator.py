"""``iscsi.initiator.*`` (initiator groups): query, get_instance, create, update, delete."""

from __future__ import annotations

import ipaddress

from .. import schema as S
from ..errors import InstanceNotFound, ValidationErrors
from ..state import NasState, Tables
from .common import ISCSI_R, ISCSI_W

opt = S.opt


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method

    ini_spec = {"initiators": opt("list", list, items=S.Field("str")), "comment": opt("str", "")}
    if p.initiator_tag:
        ini_spec["tag"] = opt("int", 0)
    if p.initiator_auth_network:
        ini_spec["auth_network"] = opt("list", list, items=S.Field("str"))

    def _ini_entry(r):
        e = {"id": r["id"], "initiators": list(r["initiators"])}
        if p.initiator_tag:  # middleware TN-11.3-U5 plugins/iscsi.py:971 Int('tag', default=0)
            e["tag"] = r["tag"]
        if p.initiator_auth_network:
            e["auth_network"] = list(r.get("auth_network", []))
        e["comment"] = r["comment"]
        return e

    def _ini_validate(sch, data):
        verrors = ValidationErrors()
        for i, net in enumerate(data.get("auth_network") or []):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:  # CORE: IPAddr(network=True) reports Python's ipaddress error
                # mw: plugins/iscsi.py:1016 @ TN-13.0-U6.1 | IPAddr('ip', network=True)
                # mw: schema.py:333 @ TN-13.0-U6.1 | raise Error(self.name, str(e))
                verrors.add(f"{sch}.auth_network.{i}", str(e))
        verrors.check()

    @m("iscsi.initiator.query", max_args=2, roles=ISCSI_R)
    def iscsi_initiator_query(ctx, filters=None, options=None):
        return nas.query(
            [_ini_entry(r) for _, r in sorted(T["initiator"].items())],
            filters,
            options,
            "iscsi_initiator_query",
        )

    @m("iscsi.initiator.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_initiator_get_instance(ctx, id_, options=None):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        return _ini_entry(T["initiator"][id_])

    @m("iscsi.initiator.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_create(ctx, data):
        data = S.check_dict(pyd, "iscsi_initiator_create", ini_spec, data)
        _ini_validate("iscsi_initiator_create", data)
        iid = nas._next_id("initiator")
        # stored newline-joined / split on whitespace when read back
        data["initiators"] = " ".join(data["initiators"]).split()
        if p.initiator_tag and not data.get("tag"):
            # 11.3 do_create: tag 0 => the first free tag counting from len(groups) + 1
            used = {r.get("tag") for r in T["initiator"].values()}
            t = len(T["initiator"]) + 1
            while t in used:
                t += 1
            data["tag"] = t
        T["initiator"][iid] = {"id": iid, **data}
        nas.service_reload()
        return _ini_entry(T["initiator"][iid])

    @m("iscsi.initiator.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_update(ctx, id_, data):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        data = S.check_dict(pyd, "iscsi_initiator_update", ini_spec, data, update=True)
        new = {**T["initiator"][id_], **data}
        _ini_validate("iscsi_initiator_update", new)
        new["initiators"] = " ".join(new["initiators"]).split()
        T["initiator"][id_] = new
        nas.service_reload()
        return _ini_entry(new)

    @m("iscsi.initiator.delete", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_delete(ctx, id_):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        del T["initiator"][id_]
        for t in T["target"].values():  # FK ondelete SET NULL
            for g in t["groups"]:
                if g["initiator"] == id_:
                    g["initiator"] = None
        nas.service_reload()
        return True
