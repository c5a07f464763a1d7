"""The zvol of a machine: create (or clone), grow, adopt, replace (shrink / volblocksize), the declared
rename (``renamed_from``), and the net kept under a destroyed disk (ADR 0006)."""

from __future__ import annotations

from dataclasses import dataclass

from netprov.core import names
from netprov.core.plan import Action, Address, Change
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import DesiredMachine, net_names, retired_comment
from netprov.core.storage.ownership import PROP_MANAGED
from netprov.core.storage.payloads import (
    ExtentRef,
    MappingRef,
    Net,
    ZvolCreate,
    ZvolRename,
    ZvolReplace,
    ZvolUpdate,
    extent_address,
    mapping_address,
    size_text,
    target_address,
    zvol_address,
)


@dataclass
class ZvolStep(Step):
    replaced: bool = False    # the zvol is re-created: its extent and mapping are created again
    exists: bool = False      # a zvol of that name is on the NAS


def plan_zvol(cx: Ctx, m: DesiredMachine) -> ZvolStep:
    ix = cx.ix
    z = ix.zvols.get(m.zvol)
    snap = cx.a.snapshots.get(m.clone_from) if m.clone_from else None
    want_size = m.volsize
    if m.clone_from and snap is not None and not want_size:
        want_size = int(snap.get("volsize") or 0)
    create = ZvolCreate(path=m.zvol, machine=m.name, volsize=want_size, volblocksize=m.volblocksize,
                        sparse=m.sparse, clone_from=m.clone_from,
                        grow_to=(m.volsize or None) if m.clone_from else None)
    renamed_old = ix.renamed.get(m.name)
    old_path = names.zvol_path(cx.d.parent, renamed_old) if renamed_old else None
    oz = ix.zvols.get(old_path) if old_path and ix.zvol_owner.get(old_path) == m.name else None
    step = ZvolStep(exists=z is not None)
    if not cx.a.parent_exists or (cx.a.parent_type or "FILESYSTEM") != "FILESYSTEM":
        why = (f"parent dataset {cx.d.parent} does not exist on the NAS; create it first"
               if not cx.a.parent_exists else
               f"parent {cx.d.parent} is a {str(cx.a.parent_type).lower()}, not a filesystem; zvols "
               "cannot be created under it")
        refused: str | None = why
        change = _create(cx, m, create, "zvol does not exist", why)
    elif oz is not None:
        change = _plan_rename(cx, m, z, oz, want_size)
        refused = change.refused
    elif z is None and renamed_old:
        refused = (f"renamed_from: {renamed_old}: there is no netprov zvol {old_path} on storage "
                   f"{cx.d.storage_name}, so nothing to rename; remove renamed_from to create a new disk")
        change = _create(cx, m, create, "zvol does not exist", refused)
    elif z is None:
        refused = None
        reason = "zvol does not exist"
        if m.clone_from:
            reason = f"zvol does not exist; clone it from {m.clone_from}"
            if snap is None:
                refused = f"golden snapshot {m.clone_from} does not exist on the NAS"
            elif m.volsize and m.volsize < int(snap.get("volsize") or 0):
                refused = (f"disk.size {size_text(m.volsize)} is smaller than the golden snapshot's volume "
                           f"({size_text(snap.get('volsize'))}); a clone cannot shrink")
        change = _create(cx, m, create, reason, refused)
    else:
        change = _plan_existing(cx, m, z, create, want_size)
        refused = change.refused
        step.replaced = change.action is Action.REPLACE
    step.changes.append(change)
    step.ok = refused is None
    return step


def _create(cx: Ctx, m: DesiredMachine, create: ZvolCreate, reason: str, refused: str | None) -> Change:
    return cx.change("zvol", zvol_address(m.zvol), Action.CREATE, reason, create, machine=m.name, refused=refused)


def _plan_existing(cx: Ctx, m: DesiredMachine, z: dict, create: ZvolCreate, want_size: int) -> Change:
    """A zvol of the machine's name exists: no-op, grow, adopt, or replace (shrink, volblocksize)."""
    addr = zvol_address(m.zvol)
    managed = cx.ix.zvol_owner.get(m.zvol) == m.name
    before_full = {"volsize": size_text(z.get("volsize")), "volblocksize": z.get("volblocksize"),
                   "sparse": z.get("sparse")}
    if m.clone_from and not m.volsize:
        want_size = 0          # a clone without disk.size keeps whatever size it has
    after_full = {"volsize": size_text(want_size) if want_size else before_full["volsize"]}
    if not m.clone_from:
        after_full["volblocksize"] = m.volblocksize
    grow = bool(want_size) and want_size > int(z.get("volsize") or 0)
    shrink = bool(want_size) and want_size < int(z.get("volsize") or 0)
    vbs_change = (not m.clone_from) and z.get("volblocksize") != m.volblocksize
    if shrink or vbs_change:
        return _plan_replace(cx, m, z, create, managed, shrink, before_full, after_full)
    b, a = cx.diff(before_full, after_full, {"name": m.zvol})
    if not managed:
        b["managed"], a["managed"] = False, True
        if cx.p.adopt:
            return cx.change("zvol", addr, Action.UPDATE, "adopt: mark the existing zvol as netprov's"
                             + ("; grow it" if grow else ""), ZvolUpdate(m.zvol, m.name, want_size if grow else None,
                                                                         set_mark=True),
                             machine=m.name, before=b, after=a)
        return cx.change("zvol", addr, Action.UPDATE, "a zvol with this name exists", ZvolUpdate(m.zvol, m.name),
                         machine=m.name, before=b, after=a, refused=unmanaged_zvol_msg(m.zvol))
    notes = []
    if not m.clone_from and bool(z.get("sparse")) != m.sparse:
        notes.append(f"sparse is {str(bool(z.get('sparse'))).lower()} on the NAS (create-time only; not changed)")
    if m.clone_from and z.get("origin") != m.clone_from:
        notes.append(f"created from {z.get('origin') or 'no snapshot'}, not {m.clone_from} (clone_from "
                     "applies at creation only)")
    if grow:
        return cx.change("zvol", addr, Action.UPDATE, f"grow volsize {b['volsize']} -> {a['volsize']}"
                         + ("; " + "; ".join(notes) if notes else ""), ZvolUpdate(m.zvol, m.name, want_size),
                         machine=m.name, before=b, after=a)
    reason = (f"zvol exists with volsize {before_full['volsize']}"
              + (f", volblocksize {z.get('volblocksize')}" if not m.clone_from else f", cloned from {z.get('origin')}"))
    if notes:
        reason += "; " + "; ".join(notes)
    return cx.change("zvol", addr, Action.NOOP, reason, ZvolUpdate(m.zvol, m.name), machine=m.name)


def _plan_replace(cx: Ctx, m: DesiredMachine, z: dict, create: ZvolCreate, managed: bool, shrink: bool,
                  before_full: dict, after_full: dict) -> Change:
    why = []
    if shrink:
        why.append(f"volsize {before_full['volsize']} -> {after_full['volsize']} is a shrink")
    if (not m.clone_from) and z.get("volblocksize") != m.volblocksize:
        why.append(f"volblocksize {z.get('volblocksize')} -> {m.volblocksize} is fixed at creation")
    sessions = cx.ix.sessions_by_target.get(m.target, [])
    refused = None
    if not managed and not cx.p.adopt:
        refused = unmanaged_zvol_msg(m.zvol)
    elif sessions:
        refused = (f"target {m.target} has an active iSCSI session from {', '.join(sorted(sessions))}; "
                   "netprov never replaces a disk in use")
    elif not cx.p.allow_destroy:
        refused = ("replacing the zvol destroys its data (TrueNAS cannot shrink a zvol or change its "
                   "volblocksize); needs --allow-destroy")
    b, a = cx.diff(before_full, after_full, {"name": m.zvol})
    # the extents and mappings go first (explicitly), so the target survives the replace
    cascade = [c for c in zvol_cascade(cx, m.zvol) if c.kind != "target"]
    net, net_after, net_why = net_under(cx, m.zvol)
    payload = ZvolReplace(create, _pre_replace_deletes(cx, m), net)
    if refused:
        return cx.change("zvol", zvol_address(m.zvol), Action.REPLACE, "; ".join(why), payload, machine=m.name,
                         before=b, after=a, refused=refused, cascade=cascade)
    # one self-contained change: apply deletes the zvol's mappings and extents explicitly (TrueNAS refuses
    # while a session is logged in), then the zvol, then creates it again
    return cx.change("zvol", zvol_address(m.zvol), Action.REPLACE, "; ".join(why) + " (--allow-destroy); its "
                     "extent and mapping are deleted first and re-created after; " + net_why, payload,
                     machine=m.name, before=b, after={**a, **net_after}, cascade=cascade)


def _plan_rename(cx: Ctx, m: DesiredMachine, z: dict | None, oz: dict, want_size: int) -> Change:
    """``renamed_from``: move the old machine's zvol to the new name, keeping its data and its extent."""
    ix = cx.ix
    old = ix.renamed[m.name]
    old_path = oz["name"]
    on_disk = ix.extents_by_disk.get(names.zvol_device(cx.d.parent, old), [])
    sessions = sorted(set(ix.sessions_of(ix.targets_of.get(m.name, [])))
                      | set(ix.sessions_by_target.get(names.target_name(old, cx.d.target_prefix), [])))
    foreign = [e for e in on_disk if ix.extent_owner.get(e["id"]) != m.name]
    shrink = bool(want_size) and want_size < int(oz.get("volsize") or 0)
    vbs_change = not m.clone_from and oz.get("volblocksize") != m.volblocksize
    grow = bool(want_size) and want_size > int(oz.get("volsize") or 0)
    refused = None
    ours = z is not None and (ix.zvol_owner.get(m.zvol) == m.name
                              or str(z.get("origin") or "").startswith(old_path + "@"))   # an interrupted rename
    if z is not None and not ours:
        refused = f"renamed_from: {old}: " + unmanaged_zvol_msg(m.zvol)
    elif sessions:
        refused = (f"renamed_from: {old}: its target has an active iSCSI session from {', '.join(sessions)}; "
                   "netprov never renames a disk in use (shut the machine down first)")
    elif foreign:
        refused = (f"renamed_from: {old}: zvol {old_path} is also exported by extent {foreign[0]['name']}, "
                   "not managed by netprov; removing the old name would delete that extent")
    elif shrink or vbs_change:
        refused = (f"renamed_from: {old}: a rename and a shrink or volblocksize change at once; rename first "
                   "(keep disk.size and volblocksize as they are), then change them")
    snap, _ = net_names(old_path, cx.p.stamp)
    finish = z is not None
    reason = (f"renamed from {old} (renamed_from): the disk keeps its data"
              + (f"; the rename of {old_path} was interrupted: finish it" if finish else
                 f" (snapshot {snap}, cloned to the new name and promoted; then the old name is removed"
                 + ("" if cx.p.snapshot else "; --no-snapshot: the snapshot is deleted afterwards") + ")"))
    before: dict = {"name": old_path}
    after: dict = {"name": m.zvol}
    if grow:
        before["volsize"], after["volsize"] = size_text(oz.get("volsize")), size_text(want_size)
        reason += f"; grow volsize {before['volsize']} -> {after['volsize']}"
    payload = ZvolRename(path=m.zvol, machine=m.name, old_path=old_path, snapshot=snap, clone=not finish,
                         keep_snapshot=cx.p.snapshot, disk=m.device,
                         extents=tuple(ExtentRef(e["id"], e["name"]) for e in on_disk),
                         set_volsize=want_size if grow else None)
    return cx.change("zvol", zvol_address(m.zvol), Action.UPDATE, reason, payload, machine=m.name, before=before,
                     after=after, refused=refused)


def unmanaged_zvol_msg(path: str) -> str:
    return (f"zvol {path} exists and is not managed by netprov (no {PROP_MANAGED} property or comment); "
            "rename it or plan with adopt to take it over")


def zvol_cascade(cx: Ctx, path: str) -> list[Address]:
    """What TrueNAS deletes along with the zvol: its extents, their mappings, targets left without LUNs."""
    ix = cx.ix
    out = []
    on_disk = ix.extents_by_disk.get("zvol/" + path.replace(" ", "+"), [])
    tids = set()
    for e in on_disk:
        out.append(extent_address(e["name"]))
        for te in ix.te_by_extent.get(e["id"], []):
            t = ix.target_by_id.get(te["target"], {})
            out.append(mapping_address(t.get("name", te["target"]), e["name"]))
            tids.add(te["target"])
    ext_ids = {e["id"] for e in on_disk}
    for tid in sorted(tids):
        if all(te["extent"] in ext_ids for te in ix.te_by_target.get(tid, [])):
            out.append(target_address(ix.target_by_id[tid]["name"]))
    return out


def _pre_replace_deletes(cx: Ctx, m: DesiredMachine) -> tuple[MappingRef | ExtentRef, ...]:
    """What a zvol replace deletes before the zvol: every mapping of every extent on it, then the extent."""
    out: list[MappingRef | ExtentRef] = []
    for e in cx.ix.extents_by_disk.get(m.device, []):
        out += [MappingRef(te["id"], te["target"], te["extent"]) for te in cx.ix.te_by_extent.get(e["id"], [])]
        out.append(ExtentRef(e["id"], e["name"]))
    return tuple(out)


def net_under(cx: Ctx, path: str) -> tuple[Net | None, dict, str]:
    """The net under a zvol about to be destroyed: ``(payload part, plan fields, reason text)``.

    The zvol is snapshotted, the snapshot cloned to the retired name, the clone promoted (it takes
    the snapshot, and every older one, with it) and only then is the old zvol destroyed: a ZFS
    snapshot dies with its dataset, so a snapshot alone would be no net (ADR 0006).
    """
    if not cx.p.snapshot:
        return None, {}, "--no-snapshot: nothing is kept, the data is destroyed"
    snap, keep = net_names(path, cx.p.stamp)
    return (Net(snap, keep, retired_comment(path, cx.p.stamp)), {"snapshot": snap, "kept_as": keep},
            f"the old disk is snapshotted ({snap}) and kept as {keep} (docs/recovery.md)")
