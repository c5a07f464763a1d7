"""Ownership: the marks netprov writes on what it makes, and an index of what the NAS holds by machine.

* zvol: ZFS user properties ``netprov:managed=true`` and ``netprov:machine=<name>`` on SCALE
  (22.02+); CORE/FreeNAS have no ``user_properties``, so the ``comments`` property holds
  ``netprov:managed zvol=<path>`` there. Either mark is accepted on read (a box upgraded from
  CORE keeps its marks).
* extent and initiator group: their ``comment`` is ``netprov:managed zvol=<path>``.
* target: TrueNAS targets have no comment field, and ``alias`` is visible to initiators and must
  be unique, so a target is netprov's when its group references a netprov initiator group of the
  same machine, or it maps a netprov extent of that machine. netprov creates the initiator group
  before the target, so every target it created carries that link from its first moment.
* CHAP auth group: no comment field either; an auth tag is netprov's when a netprov target of the
  machine uses it (the rules for leftovers and shared tags are in ``auth.py``).
* portal: netprov creates one (comment ``netprov:managed``) only when none listens on
  ``storage.portal_listen``; it never changes or deletes a portal.

Only objects whose mark points directly under the inventory's ``parent`` count.
"""

from __future__ import annotations

import hashlib
import re

from netprov.core.storage.model import ActualStorage, DesiredStorage

MARK = "netprov:managed"
PROP_MANAGED = "netprov:managed"
PROP_MACHINE = "netprov:machine"
_MARK_RE = re.compile(r"^netprov:managed(?:\s+zvol=(?P<zvol>.+?))?\s*$")


def mark_comment(zvol_path: str) -> str:
    """The ownership comment netprov writes on extents, initiator groups (and CORE zvols)."""
    return f"{MARK} zvol={zvol_path}"


def parse_mark(comment: str | None) -> tuple[bool, str | None]:
    """``(is_managed, zvol_path_or_None)`` from a comment."""
    if not comment:
        return False, None
    m = _MARK_RE.match(comment.strip())
    if not m:
        return False, None
    return True, m.group("zvol")


def secret_digest(secret: str) -> str:
    """How a CHAP secret is compared without being stored: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(b"netprov-chap\0" + secret.encode()).hexdigest()



class Index:
    """Lookups over what the NAS holds, built once (O(N)) by ``build_index``: rows by id, name and disk,
    and ownership by machine (``*_owner``: object id -> machine; ``*_of``: machine -> rows)."""

    def __init__(self, parent: str) -> None:
        self.prefix = parent + "/"
        self.zvols: dict[str, dict] = {}
        self.extent_by_id: dict[int, dict] = {}
        self.extent_by_name: dict[str, dict] = {}
        self.extents_by_disk: dict[str, list[dict]] = {}
        self.target_by_id: dict[int, dict] = {}
        self.target_by_name: dict[str, dict] = {}
        self.te_by_id: dict[int, dict] = {}
        self.te_by_target: dict[int, list[dict]] = {}
        self.te_by_extent: dict[int, list[dict]] = {}
        self.auths_by_tag: dict[int, list[dict]] = {}
        self.portal_by_id: dict[int, dict] = {}
        self.sessions_by_target: dict[str, list[str]] = {}
        self.zvol_owner: dict[str, str] = {}
        self.extent_owner: dict[int, str] = {}
        self.extents_of: dict[str, list[dict]] = {}
        self.initiator_owner: dict[int, str] = {}
        self.initiators_of: dict[str, list[dict]] = {}
        self.target_owner: dict[int, str] = {}
        self.targets_of: dict[str, list[dict]] = {}
        self.tag_users: dict[int, list[int]] = {}          # auth tag -> ids of the targets using it
        self.unused_auths_by_user: dict[str, list[dict]] = {}
        self.renamed: dict[str, str] = {}                    # new machine name -> old (``renamed_from``)

    def in_scope(self, path: str | None) -> str | None:
        """The machine name if ``path`` is a zvol directly under parent."""
        if path and path.startswith(self.prefix) and "/" not in path[len(self.prefix):]:
            return path[len(self.prefix):]
        return None

    def machines_with_objects(self) -> set[str]:
        out = set(self.zvol_owner.values())
        out.update(self.extents_of)
        out.update(self.initiators_of)
        out.update(self.targets_of)
        return out

    def sessions_of(self, targets: list[dict]) -> list[str]:
        return sorted({s for t in targets for s in self.sessions_by_target.get(t["name"], [])})


def build_index(d: DesiredStorage, a: ActualStorage) -> Index:
    ix = Index(d.parent)
    _index_rows(ix, a, (a.global_ or {}).get("basename") or d.basename)
    _index_marked(ix, a)
    _index_targets(ix, a)
    _index_auths(ix)
    _index_renames(ix, d)
    return ix


def _index_rows(ix: Index, a: ActualStorage, basename: str) -> None:
    ix.zvols = {z["name"]: z for z in a.zvols}
    ix.extent_by_id = {e["id"]: e for e in a.extents}
    ix.extent_by_name = {e["name"]: e for e in a.extents}
    for e in a.extents:
        if e.get("disk"):
            ix.extents_by_disk.setdefault(e["disk"], []).append(e)
    ix.target_by_id = {t["id"]: t for t in a.targets}
    ix.target_by_name = {t["name"]: t for t in a.targets}
    ix.te_by_id = {te["id"]: te for te in a.targetextents}
    for te in a.targetextents:
        ix.te_by_target.setdefault(te["target"], []).append(te)
        ix.te_by_extent.setdefault(te["extent"], []).append(te)
    for au in a.auths:
        ix.auths_by_tag.setdefault(au["tag"], []).append(au)
    ix.portal_by_id = {p["id"]: p for p in a.portals}
    for s in a.sessions:
        t = s.get("target") or ""
        tname = t[len(basename) + 1:] if t.startswith(basename + ":") else t
        ix.sessions_by_target.setdefault(tname, []).append(s.get("initiator") or "?")


def _index_marked(ix: Index, a: ActualStorage) -> None:
    """Ownership of zvols, extents and initiator groups: by their marks (pointing under parent)."""
    for z in a.zvols:
        m = ix.in_scope(z["name"])
        if m is None:
            continue
        props = z.get("props") or {}
        managed = str(props.get(PROP_MANAGED, "")).lower() == "true"
        if not managed:
            ok, zp = parse_mark(z.get("comments"))
            managed = ok and (zp is None or zp == z["name"])
        if managed:
            ix.zvol_owner[z["name"]] = m
    for e in a.extents:
        ok, zp = parse_mark(e.get("comment"))
        m = ix.in_scope(zp) if ok else None
        if m is not None:
            ix.extent_owner[e["id"]] = m
            ix.extents_of.setdefault(m, []).append(e)
    for i in sorted(a.initiators, key=lambda r: r["id"]):
        ok, zp = parse_mark(i.get("comment"))
        m = ix.in_scope(zp) if ok else None
        if m is not None:
            ix.initiator_owner[i["id"]] = m
            ix.initiators_of.setdefault(m, []).append(i)


def _index_targets(ix: Index, a: ActualStorage) -> None:
    """A target is a machine's when its group uses the machine's initiator group, or it maps its extent."""
    for t in sorted(a.targets, key=lambda r: r["id"]):
        owner = None
        for g in t.get("groups") or []:
            owner = ix.initiator_owner.get(g.get("initiator"))
            if owner:
                break
        if owner is None:
            for te in ix.te_by_target.get(t["id"], []):
                owner = ix.extent_owner.get(te["extent"])
                if owner:
                    break
        if owner is not None:
            ix.target_owner[t["id"]] = owner
            ix.targets_of.setdefault(owner, []).append(t)
    for t in a.targets:
        for g in t.get("groups") or []:
            if g.get("auth") is not None:
                ix.tag_users.setdefault(g["auth"], []).append(t["id"])


def _index_auths(ix: Index) -> None:
    """Auth rows no target uses, by user, where every row of the tag has that one user and no peer user
    (candidates for a machine's leftovers; the auth planner also requires the machine's secret)."""
    for tag, rows in ix.auths_by_tag.items():
        users = {r.get("user") for r in rows}
        if tag in ix.tag_users or len(users) != 1 or any(r.get("peeruser") for r in rows):
            continue
        ix.unused_auths_by_user.setdefault(rows[0].get("user"), []).extend(rows)
    for rows in ix.unused_auths_by_user.values():
        rows.sort(key=lambda r: r["id"])


def _index_renames(ix: Index, d: DesiredStorage) -> None:
    """Declared renames (``renamed_from``): the old name's objects become the new name's, so they are
    planned as updates of the new machine, never as an orphan delete plus a create."""
    for new, dm in d.machines.items():
        old = dm.renamed_from
        if not old or old in d.machines or old == new:
            continue
        ix.renamed[new] = old
        for owners in (ix.zvol_owner, ix.extent_owner, ix.initiator_owner, ix.target_owner):
            for k, v in owners.items():
                if v == old:
                    owners[k] = new
        for of in (ix.extents_of, ix.initiators_of, ix.targets_of):
            if old in of:
                of[new] = of.get(new, []) + of.pop(old)
