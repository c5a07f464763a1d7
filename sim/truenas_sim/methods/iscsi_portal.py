"""``iscsi.portal.*``: query, get_instance, listen_ip_choices, create, update, delete."""

from __future__ import annotations

import errno

from .. import schema as S
from ..errors import InstanceNotFound, ValidationErrors
from ..state import NasState, Tables
from .common import ISCSI_R, ISCSI_W

req, opt = S.req, S.opt


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method

    def _portal_entry(r):
        e = {"id": r["id"], "tag": r["tag"], "comment": r["comment"]}
        if p.portal_port_per_ip:
            e["listen"] = [{"ip": x["ip"], "port": x["port"]} for x in r["listen"]]
        else:
            e["listen"] = [{"ip": x["ip"], "port": nas.global_cfg["listen_port"]} for x in r["listen"]]
        if p.portal_discovery_fields:
            e["discovery_authmethod"] = r.get("discovery_authmethod", "NONE")
            e["discovery_authgroup"] = r.get("discovery_authgroup")
        return e

    listen_item = {"ip": req("str")}
    if p.portal_port_per_ip:
        listen_item["port"] = opt("int", 3260, range=(1, 65535))
    portal_spec = {"comment": opt("str", ""), "listen": req("list", items=listen_item, min_length=1)}
    if p.portal_discovery_fields:
        portal_spec["discovery_authmethod"] = opt("str", "NONE", enum=("NONE", "CHAP", "CHAP_MUTUAL"))
        portal_spec["discovery_authgroup"] = opt("int", None, null=True)

    def _portal_validate(sch, data, old_id=None):
        verrors = ValidationErrors()
        for i, li in enumerate(data["listen"]):
            ip = li["ip"]
            if ip not in nas.listen_ip_choices:
                verrors.add(f"{sch}.listen.{i}.ip", f"IP {ip} not configured on this system.")
                continue
            for r in T["portal"].values():
                if p.portal_port_per_ip:
                    # CORE (middleware TN-13.0-U6.1 src/middlewared/middlewared/plugins/iscsi.py:125): (ip, port), on .listen
                    port = li.get("port", 3260)
                    if r["id"] != old_id and any(x["ip"] == ip and x.get("port", 3260) == port
                                                 for x in r["listen"]):
                        verrors.add(f"{sch}.listen", f"{ip}:{port} already in use.")
                elif r["id"] != old_id and any(x["ip"] == ip for x in r["listen"]):
                    verrors.add(f"{sch}.listen.{i}.ip", f"{ip!r} IP is already in use.")
        if p.portal_discovery_fields and data.get("discovery_authmethod") in ("CHAP", "CHAP_MUTUAL"):
            g = data.get("discovery_authgroup")
            if g is None:
                # mw: plugins/iscsi_/portal.py:141 @ TS-24.10.2.2 | This field is required if discovery method is 
                verrors.add(
                    f"{sch}.discovery_authgroup",
                    "This field is required if discovery method is set to CHAP or CHAP Mutual.",
                )
            elif not any(a["tag"] == g for a in T["auth"].values()):
                verrors.add(f"{sch}.discovery_authgroup", "Authentication group not found", errno.ENOENT)
        verrors.check()

    @m("iscsi.portal.query", max_args=2, roles=ISCSI_R)
    def iscsi_portal_query(ctx, filters=None, options=None):
        return nas.query(
            [_portal_entry(r) for _, r in sorted(T["portal"].items())], filters, options, "iscsi_portal_query"
        )

    @m("iscsi.portal.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_portal_get_instance(ctx, id_, options=None):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        return _portal_entry(T["portal"][id_])

    @m("iscsi.portal.listen_ip_choices", max_args=0, roles=ISCSI_R)
    def iscsi_portal_listen_ip_choices(ctx):
        return {ip: ip for ip in nas.listen_ip_choices}

    @m("iscsi.portal.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_portal_create(ctx, data):
        data = S.check_dict(pyd, "iscsi_portal_create" if pyd else "iscsiportal_create", portal_spec, data)
        _portal_validate("iscsiportal_create", data)
        pid = nas._next_id("portal")
        r = {"id": pid, "tag": len(T["portal"]) + 1, **data}
        r["listen"] = [dict(x) for x in data["listen"]]
        T["portal"][pid] = r
        nas.service_reload()
        return _portal_entry(r)

    @m("iscsi.portal.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_portal_update(ctx, id_, data):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        data = S.check_dict(
            pyd, "iscsi_portal_update" if pyd else "iscsiportal_update", portal_spec, data, update=True
        )
        new = {**T["portal"][id_], **data}
        _portal_validate("iscsiportal_update", new, old_id=id_)
        T["portal"][id_] = new
        nas.service_reload()
        return _portal_entry(new)

    @m("iscsi.portal.delete", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_portal_delete(ctx, id_):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        del T["portal"][id_]
        for t in T["target"].values():  # portal delete removes the target groups that used it
            t["groups"] = [g for g in t["groups"] if g["portal"] != id_]
        for i, (_, r) in enumerate(sorted(T["portal"].items()), start=1):  # tags renumbered
            r["tag"] = i
        nas.service_reload()
        return True
