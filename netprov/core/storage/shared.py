"""What every machine of a NAS needs: the iSCSI basename (checked, never changed), a portal (created only
when none listens on ``storage.portal_listen``, never changed or deleted) and the iSCSI service (enabled,
and started only when it is not running)."""

from __future__ import annotations

from dataclasses import replace

from netprov.core.plan import Action, Change
from netprov.core.storage.context import Ctx
from netprov.core.storage.ownership import MARK
from netprov.core.storage.payloads import GLOBAL_ADDRESS, SERVICE_ADDRESS, IscsiGlobal, Kept, PortalCreate, Service


def plan_global(cx: Ctx) -> Change:
    actual = (cx.a.global_ or {}).get("basename")
    if actual and actual != cx.d.basename:
        return cx.change("iscsi_global", GLOBAL_ADDRESS, Action.UPDATE,
                         f"the NAS's iSCSI basename is {actual}, the inventory says {cx.d.basename}",
                         IscsiGlobal(cx.d.basename), before={"basename": actual}, after={"basename": cx.d.basename},
                         refused=(f"netprov does not change the NAS-wide basename (it renames every target "
                                  f"on the NAS); set storage.{cx.d.storage_name}.basename: {actual}"))
    return cx.change("iscsi_global", GLOBAL_ADDRESS, Action.NOOP, f"basename is {actual or cx.d.basename}",
                     IscsiGlobal(actual or cx.d.basename))


def plan_portal(cx: Ctx) -> Change:
    p = cx.portal
    if p is not None:
        listen = ", ".join(cx.listen_text(li) for li in p.get("listen") or [])
        return cx.change("portal", cx.portal_address, Action.NOOP,
                         f"portal {p.get('tag', p['id'])} listens on {listen}", Kept(p["id"]))
    refused = None
    if cx.global_port is not None and cx.global_port != cx.d.portal_port:   # (CORE has no global port)
        refused = (f"the NAS's iSCSI port is {cx.global_port} for every portal (SCALE has one global listen port); "
                   f"netprov does not change it: use portal port {cx.global_port}")
    return cx.change("portal", cx.portal_address, Action.CREATE,
                     f"no portal listens on {cx.d.portal_ip}:{cx.d.portal_port}",
                     PortalCreate(cx.d.portal_ip, cx.d.portal_port, MARK), refused=refused)


def plan_service(cx: Ctx) -> Change:
    s = cx.a.service
    if s is None:
        return cx.change("service", SERVICE_ADDRESS, Action.NOOP, "service state unknown (not read)", Service())
    before = {"enable": bool(s.get("enable")), "state": s.get("state")}
    if before["enable"] and before["state"] == "RUNNING":
        return cx.change("service", SERVICE_ADDRESS, Action.NOOP, "iSCSI service is enabled and running", Service())
    why = []
    if not before["enable"]:
        why.append("not enabled at boot")
    if before["state"] != "RUNNING":
        why.append(f"{str(before['state']).lower()}")
    b, a = cx.diff(before, {"enable": True, "state": "RUNNING"}, {})
    return cx.change("service", SERVICE_ADDRESS, Action.UPDATE, "iSCSI service is " + " and ".join(why),
                     Service(enable=not before["enable"], start=before["state"] != "RUNNING"), before=b, after=a)


def mark_shared(changes: list[Change], served: list[str] | None) -> list[Change]:
    """Mark the NAS-wide objects (basename check, portal, iSCSI service) as shared. Under --target
    (``served``: the targeted machines this NAS holds) a change to one is planned only when a
    targeted machine needs it, and says so; targeting only removed machines needs none."""
    out = []
    for c in changes:
        if served is not None and c.is_change:
            if not served:
                continue
            c = replace(c, reason=f"{c.reason}; shared by every machine on this NAS, planned for targeted "
                                  f"{', '.join(served)}")
        out.append(replace(c, shared=True))
    return out
