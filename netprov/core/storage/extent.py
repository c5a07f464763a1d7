"""The extent of a machine: the DISK extent exporting its zvol (create, adopt, drift, duplicates)."""

from __future__ import annotations

from dataclasses import dataclass

from netprov.core.plan import Action, Change
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import EXTENT_BLOCKSIZE, DesiredMachine
from netprov.core.storage.ownership import mark_comment, parse_mark
from netprov.core.storage.payloads import ExtentCreate, ExtentDelete, ExtentUpdate, Kept, extent_address


@dataclass
class ExtentStep(Step):
    extent_id: int | None = None      # the existing extent the machine keeps (None: created, or none)


def plan_extent(cx: Ctx, m: DesiredMachine, zvol_replaced: bool, zvol_exists: bool) -> ExtentStep:
    ix = cx.ix
    step = ExtentStep()
    addr = extent_address(m.target)
    create = ExtentCreate(name=m.target, disk=m.device, serial=m.serial, comment=mark_comment(m.zvol))
    e = ix.extent_by_name.get(m.target)
    mine = list(ix.extents_of.get(m.name, []))
    if e is not None and ix.extent_owner.get(e["id"]) != m.name and not (
            ix.extent_owner.get(e["id"]) is None and cx.p.adopt):       # (an unmanaged one is adopted below)
        other = ix.extent_owner.get(e["id"])
        step.changes.append(cx.change(
            "extent", addr, Action.UPDATE, "an extent with this name exists", ExtentUpdate(e["id"], e["name"]),
            machine=m.name, before={"name": e["name"], "disk": e.get("disk"), "managed": bool(other)},
            after={"name": m.target, "disk": m.device, "managed": True},
            refused=(f"extent {e['name']} (id {e['id']}) is not managed by netprov; rename it or plan with adopt"
                     if other is None else f"extent {e['name']} belongs to netprov machine {other}")))
        step.ok = False
        return step
    if e is None:
        e = next((x for x in mine if x["name"] != m.target), None)     # ours under another name (renamed by hand)?
    # an unmanaged extent already exporting this zvol
    foreign_on_disk = [x for x in ix.extents_by_disk.get(m.device, [])
                       if ix.extent_owner.get(x["id"]) is None and (e is None or x["id"] != e["id"])]
    if zvol_replaced:
        step.changes.append(cx.change("extent", addr, Action.CREATE, "re-created on the replaced zvol", create,
                                      machine=m.name))
        return step
    if foreign_on_disk and e is None and not cx.p.adopt:
        x = foreign_on_disk[0]
        step.changes.append(cx.change(
            "extent", addr, Action.CREATE, "zvol has no netprov extent", create, machine=m.name,
            refused=(f"zvol {m.zvol} is already exported by extent {x['name']} (id {x['id']}), not managed by "
                     "netprov; plan with adopt to take it over")))
        step.ok = False
        return step
    if e is None and foreign_on_disk:
        e = foreign_on_disk[0]
    if e is None:
        step.changes.append(cx.change("extent", addr, Action.CREATE,
                                      "extent does not exist" if zvol_exists else "new disk", create, machine=m.name))
    else:
        step.extent_id = e["id"]
        step.changes.append(_existing(cx, m, e))
    # other managed extents of this machine (duplicates): delete
    sessions = ix.sessions_by_target.get(m.target, [])
    for x in mine:
        if x["id"] != step.extent_id and x["name"] != m.target:
            step.deletes.append(delete_extent(cx, x, m.name, sessions, "a second netprov extent for this machine",
                                              gated=False))
    return step


def _existing(cx: Ctx, m: DesiredMachine, e: dict) -> Change:
    """An extent the machine keeps: no-op, drift fixed in place, adopted, or its mark following a rename."""
    ix = cx.ix
    addr = extent_address(m.target)
    want = {"name": m.target, "disk": m.device, "serial": m.serial, "blocksize": EXTENT_BLOCKSIZE, "ro": False,
            "enabled": True}
    before = {"name": e["name"], "disk": e.get("disk"), "serial": e.get("serial"),
              "blocksize": e.get("blocksize"), "ro": e.get("ro"), "enabled": e.get("enabled")}
    managed = ix.extent_owner.get(e["id"]) == m.name
    b, a = cx.diff(before, want, {"name": e["name"]})
    sets = {k: v for k, v in want.items() if before.get(k) != v}
    if not managed:
        b["managed"], a["managed"] = False, True
    if managed and m.name in ix.renamed and parse_mark(e.get("comment"))[1] != m.zvol:
        sets["comment"] = mark_comment(m.zvol)      # renamed_from: the mark follows the zvol
    if not sets and managed:
        return cx.change("extent", addr, Action.NOOP, f"extent {e['name']} exports {m.device}", Kept(e["id"]),
                         machine=m.name)
    if not managed:
        sets["comment"] = mark_comment(m.zvol)
    reason = ("adopt: mark the existing extent as netprov's" if not managed else
              (f"renamed from {ix.renamed[m.name]} (renamed_from): " if m.name in ix.renamed else "drift: ")
              + ", ".join(f"{k} {before.get(k, e.get(k))!r} -> {v!r}" for k, v in sets.items()))
    return cx.change("extent", addr, Action.UPDATE, reason, ExtentUpdate(e["id"], e["name"], **sets),
                     machine=m.name, before=b, after=a)


def delete_extent(cx: Ctx, e: dict, machine: str, sessions: list[str], reason: str, gated: bool) -> Change:
    refused = cx.delete_refusal(sessions, gated, f"target {e['name']}")
    return cx.change("extent", extent_address(e["name"]), Action.DELETE, reason, ExtentDelete(e["id"], e["name"]),
                     machine=machine, before={"name": e["name"], "disk": e.get("disk")}, refused=refused)
