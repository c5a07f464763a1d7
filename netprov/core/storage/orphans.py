"""A machine no longer in the inventory: its marked objects are deleted (mapping, target, auth, initiator
group, extent, zvol with the net), with --allow-destroy, and never while one of its targets is in use."""

from __future__ import annotations

from dataclasses import replace

from netprov.core.plan import Action, Change
from netprov.core.secrets import MASK
from netprov.core.storage.context import Ctx
from netprov.core.storage.extent import delete_extent
from netprov.core.storage.payloads import (
    AuthDelete,
    InitiatorDelete,
    MappingDelete,
    MappingRef,
    ZvolDelete,
    auth_address,
    initiator_address,
    mapping_address,
    size_text,
    zvol_address,
)
from netprov.core.storage.target import delete_target
from netprov.core.storage.zvol import net_under, zvol_cascade

REASON = "machine is no longer in the inventory"


def plan_orphan(cx: Ctx, name: str) -> list[Change]:
    ix = cx.ix
    targets = ix.targets_of.get(name, [])
    # the disk's own target also counts when it is not linked (session on a target we can't see as ours)
    refused = cx.delete_refusal(ix.sessions_of(targets), True, "the machine's target")
    out = _mappings(cx, name, targets, refused)
    tags = set()
    for t in targets:
        out.append(_refused(delete_target(cx, t, name, REASON, gated=True), refused))
        tags.update(g["auth"] for g in t.get("groups") or [] if g.get("auth") is not None)
    out += _auths(cx, name, tags, refused)
    many = len(ix.initiators_of.get(name, [])) > 1
    for i in ix.initiators_of.get(name, []):
        out.append(cx.change("initiator", initiator_address(name, i["id"] if many else None), Action.DELETE, REASON,
                             InitiatorDelete(i["id"], i.get("comment")), machine=name,
                             before={"initiators": sorted(i.get("initiators") or [])}, refused=refused))
    for e in ix.extents_of.get(name, []):
        out.append(_refused(delete_extent(cx, e, name, [], REASON, gated=False), refused))
    out += _zvol(cx, name, refused)
    return out


def _refused(c: Change, refused: str | None) -> Change:
    """The orphan's one refusal (sessions on any of its targets, or no --allow-destroy) holds for each delete."""
    return replace(c, refused=refused)


def _mappings(cx: Ctx, name: str, targets: list[dict], refused: str | None) -> list[Change]:
    ix = cx.ix
    ext_ids = {e["id"] for e in ix.extents_of.get(name, [])}
    tids = {t["id"] for t in targets}
    seen = {te["id"] for tid in tids for te in ix.te_by_target.get(tid, [])}
    seen |= {te["id"] for eid in ext_ids for te in ix.te_by_extent.get(eid, [])}
    out = []
    for te_id in sorted(seen):
        te = ix.te_by_id[te_id]
        t = ix.target_by_id.get(te["target"], {})
        e = ix.extent_by_id.get(te["extent"], {})
        r = refused
        if r is None and (te["target"] not in tids and te["extent"] not in ext_ids):
            r = "mapping joins objects netprov does not manage"
        out.append(cx.change("targetextent", mapping_address(t.get("name", te["target"]), e.get("name", te["extent"])),
                             Action.DELETE, REASON, MappingDelete(MappingRef(te["id"], te["target"], te["extent"])),
                             machine=name, before={"target": t.get("name"), "extent": e.get("name"),
                                                   "lunid": te.get("lunid")}, refused=r))
    return out


def _auths(cx: Ctx, name: str, tags: set[int], refused: str | None) -> list[Change]:
    ix = cx.ix
    out = []
    for tag in sorted(tags):
        if any(ix.target_owner.get(tid) != name for tid in ix.tag_users.get(tag, [])):
            continue   # shared with a target that stays
        rows = ix.auths_by_tag.get(tag, [])
        if rows:
            out.append(cx.change("auth", auth_address(name), Action.DELETE, REASON,
                                 AuthDelete(tuple(r["id"] for r in rows), tag, rows[0].get("user")), machine=name,
                                 before={"user": rows[0].get("user"), "secret": MASK}, refused=refused))
    # An earlier delete of this machine that stopped between its target and its auth group left the
    # group with no target to lead to it. It is still recognisable: unused, every row with the removed
    # machine's default CHAP user (its name), no peer user, and no machine of the inventory has that user.
    if not cx.chap_users.get(name):
        for r in ix.unused_auths_by_user.get(name, []):
            if r["tag"] in tags:
                continue
            out.append(cx.change("auth", auth_address(name, r["id"]), Action.DELETE,
                                 REASON + f"; leftover auth group tag {r['tag']} with its CHAP user, which no "
                                 "target uses (an interrupted delete left it)",
                                 AuthDelete((r["id"],), r["tag"], r.get("user"), unused=True), machine=name,
                                 before={"user": r.get("user"), "tag": r["tag"], "secret": MASK}, refused=refused))
    return out


def _zvol(cx: Ctx, name: str, refused: str | None) -> list[Change]:
    ix = cx.ix
    path = f"{cx.d.parent}/{name}"
    z = ix.zvols.get(path)
    if z is None or ix.zvol_owner.get(path) != name:
        return []
    # anything the cascade would take that netprov does not manage (and so does not delete first)
    disk = "zvol/" + path.replace(" ", "+")
    foreign = [e for e in ix.extents_by_disk.get(disk, []) if ix.extent_owner.get(e["id"]) != name]
    r = refused
    if r is None and foreign:
        r = f"deleting the zvol would also delete extent {foreign[0]['name']}, which netprov does not manage"
    net, net_after, net_why = net_under(cx, path)
    return [cx.change("zvol", zvol_address(path), Action.DELETE, REASON + "; " + net_why, ZvolDelete(path, net),
                      machine=name, before={"name": path, "volsize": size_text(z.get("volsize")),
                                            "volblocksize": z.get("volblocksize")}, after=net_after or None,
                      refused=r, cascade=zvol_cascade(cx, path))]
