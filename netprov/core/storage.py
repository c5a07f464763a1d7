"""The storage half of plan: desired iSCSI disks vs what the NAS holds -> ordered changes.

PURE: no I/O, no clock, no environment. ``desired_storage`` turns the resolved inventory into
``DesiredStorage``; the adapter reads the NAS into a normalised ``ActualStorage`` (JSON
round-trippable: offline ``--state`` plans and fingerprints use that form); ``plan_storage``
compares them under a ``StoragePolicy`` and returns ``list[Change]`` in execution order.

Per machine netprov keeps exactly one bootable disk: a zvol ``<parent>/<machine>``, a DISK
extent on it, an initiator group admitting only the machine's initiator IQN, a CHAP auth
group when CHAP is on, a target whose one group ties portal + initiator group (+ auth) together,
and the target->extent mapping at ``storage.lun``. Shared objects (global basename, a portal,
the iSCSI service) are read, created or started only when missing, never changed otherwise.

Ownership (``docs``: decided here, one place):

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
  machine uses it. A target's group must hold the machine's credential alone: a second row on its
  tag (whoever made it), or a tag other targets use, is drift and the machine moves to a fresh auth
  group; other rows are never adopted or deleted (the machine's own row in the group it leaves is
  deleted when its secret's digest proves it is the machine's). An auth row no target uses is
  netprov's leftover (an apply stopped between the auth create and the target create) only when
  every row on its tag has the machine's CHAP user and no peer user, no other machine of the
  inventory has that user, and the row's secret is readable and is the machine's (by digest): the
  machine reuses one such row and the others are deleted. Any other unused auth row is left alone
  (it cannot be told apart from one a person made). docs/adr/0005-chap-auth-tags.md.
* portal: netprov creates one (comment ``netprov:managed``) only when none listens on
  ``storage.portal_listen``; it never changes or deletes a portal.

Anything without the mark is never changed or deleted. A name clash with an unmanaged object is a
refused change (``adopt=True`` takes it over explicitly). The scope of an inventory's storage is
its ``parent``: orphans are marked objects whose zvol lies directly under ``parent`` and whose
machine is no longer in the inventory.

Ordering: shared objects that machines depend on first (global check, portal), then each machine's
chain (zvol, extent, initiator, auth, target, mapping; then that machine's deletes in reverse), then
orphan machines (mapping, target, auth, initiator, extent, zvol), then the service (enable/start
last, so the creates before it cause no reloads of a stopped service). Every DELETE is independent
of the forward changes of the same run, so an engine may run all non-deletes first and the deletes
later (it does: boot files are switched in between). A zvol REPLACE is therefore one
self-contained change: apply deletes the zvol's mappings and extents itself (TrueNAS refuses that
while a session is logged in; the zvol delete's own cascade would not), then the zvol, then
creates it again; the extent and mapping CREATEs follow it in the chain.

The net (ADR 0006): a zvol DELETE or REPLACE first keeps the old disk (snapshot ``<zvol>@netprov-<stamp>``,
clone to ``<zvol>.netprov-retired-<stamp>``, promote; only then the delete) unless ``StoragePolicy.snapshot`` is
off; the stamp comes from the policy. A machine with ``renamed_from`` takes over the old name's objects: its zvol
change is an UPDATE that moves the disk (same steps, then the extents are re-pointed and the old name removed) and
the extent, initiator group and target are updated in place, never re-created.

Refusals: shrink or volblocksize change (REPLACE; needs ``allow_destroy``), removed machines
(DELETE; needs ``allow_destroy``), anything touching a target with a logged-in session (never),
name clashes with unmanaged objects (needs ``adopt``), a missing golden snapshot or parent dataset,
a CHAP secret that is not available (the change is planned; apply refuses it), a NAS basename that
differs from the inventory's (netprov never changes it). After a refused zvol, extent or target
change nothing more is planned for that machine; apply stops a machine's chain at its first refused
change. ``before``/``after`` hold only managed fields (identity + what differs);
secrets appear only as ``********``; sizes as ``16G`` strings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from netprov.core import names
from netprov.core.inventory import LoadedInventory
from netprov.core.plan import Action, Change, fingerprint
from netprov.core.secrets import MASK
from netprov.core.units import format_size

MARK = "netprov:managed"
PROP_MANAGED = "netprov:managed"
PROP_MACHINE = "netprov:machine"
SERVICE = "iscsitarget"
EXTENT_BLOCKSIZE = 512
_MARK_RE = re.compile(r"^netprov:managed(?:\s+zvol=(?P<zvol>.+?))?\s*$")

KINDS = ("zvol", "extent", "initiator", "auth", "target", "targetextent")


# --------------------------------------------------------------------------------------------
# Marks
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Desired
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DesiredMachine:
    name: str
    zvol: str                 # dataset path
    device: str               # extent "disk": zvol/<path> (spaces as +)
    volsize: int              # bytes; 0 = as the golden snapshot (clone without size)
    volblocksize: str         # "16K"
    sparse: bool
    clone_from: str | None
    target: str               # target name == extent name
    serial: str
    initiator_iqn: str
    chap_user: str | None     # None: CHAP off
    lun: int
    renamed_from: str | None = None   # the machine's old name: its disk and objects are kept and renamed


@dataclass(frozen=True)
class DesiredStorage:
    storage_name: str
    parent: str
    basename: str
    portal_ip: str            # what the portal listens on (storage.portal_listen)
    portal_port: int
    lun: int
    target_prefix: str
    machines: dict[str, DesiredMachine]
    secrets: Mapping[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def system(self) -> str:
        return f"storage:{self.storage_name}"

    @property
    def clone_sources(self) -> list[str]:
        return sorted({m.clone_from for m in self.machines.values() if m.clone_from})

    def secret(self, machine: str) -> str | None:
        return self.secrets.get(machine)


def desired_storage(loaded: LoadedInventory, storage_name: str,
                    secrets: Mapping[str, str | None] | None = None) -> DesiredStorage:
    """The disks the inventory wants on storage ``storage_name``. ``secrets``: machine -> CHAP secret/None."""
    st = loaded.inventory.storage[storage_name]
    secrets = dict(secrets or {})
    machines: dict[str, DesiredMachine] = {}
    for m in loaded.machines:
        if m.storage != storage_name:
            continue
        path = names.zvol_path(st.parent, m.name)
        machines[m.name] = DesiredMachine(
            name=m.name, zvol=path, device=names.zvol_device(st.parent, m.name), volsize=int(m.size or 0),
            volblocksize=m.volblocksize, sparse=bool(m.sparse), clone_from=m.clone_from,
            target=names.target_name(m.name, st.target_prefix), serial=names.extent_serial(st.parent, m.name),
            initiator_iqn=m.initiator_iqn, chap_user=m.chap.username if m.chap else None, lun=st.lun,
            renamed_from=m.renamed_from)
    return DesiredStorage(
        storage_name=storage_name, parent=st.parent, basename=st.basename, portal_ip=st.portal_listen,
        portal_port=st.portal_port, lun=st.lun, target_prefix=st.target_prefix, machines=machines,
        secrets={k: v for k, v in secrets.items() if k in machines})


# --------------------------------------------------------------------------------------------
# Actual (normalised; produced by adapters/truenas/normalise.py or loaded from JSON)
# --------------------------------------------------------------------------------------------

_LISTS = ("zvols", "extents", "targets", "targetextents", "initiators", "auths", "portals", "sessions")


@dataclass
class ActualStorage:
    """What the NAS holds, normalised. Every record is a plain JSON dict (see parse.py for the keys).

    zvols: {name, volsize:int, volblocksize:"16K", sparse:bool, origin:str|None, comments:str|None,
            props:{netprov:* user properties}};
    extents: {id, name, type, disk, serial, blocksize:int, ro, enabled, comment};
    targets: {id, name, alias, mode, groups:[{portal:int, initiator:int|None, authmethod, auth:int|None}]};
    targetextents: {id, target, extent, lunid}; initiators: {id, initiators:[sorted], comment};
    auths: {id, tag, user, peeruser, secret: "redacted" | "sha256:..." | None};
    portals: {id, tag, listen:[{ip, port}], comment}; sessions: {target: iqn, initiator: iqn};
    global_: {basename, listen_port}; service: {enable, state} | None;
    snapshots: {snapshot id: {volsize, volblocksize}} (only the inventory's clone sources).
    """

    parent: str
    parent_exists: bool = True
    parent_type: str | None = "FILESYSTEM"
    global_: dict[str, Any] = field(default_factory=lambda: {"basename": "iqn.2005-10.org.freenas.ctl",
                                                               "listen_port": 3260})
    service: dict[str, Any] | None = field(default_factory=lambda: {"enable": True, "state": "RUNNING"})
    zvols: list[dict] = field(default_factory=list)
    extents: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)
    targetextents: list[dict] = field(default_factory=list)
    initiators: list[dict] = field(default_factory=list)
    auths: list[dict] = field(default_factory=list)
    portals: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    snapshots: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def by(key: str, rows: list[dict]) -> list[dict]:
            return sorted(rows, key=lambda r: (r.get(key) is None, r.get(key)))
        return {
            "parent": self.parent, "parent_exists": self.parent_exists, "parent_type": self.parent_type,
            "global": dict(self.global_), "service": dict(self.service) if self.service is not None else None,
            "zvols": by("name", self.zvols), "extents": by("id", self.extents), "targets": by("id", self.targets),
            "targetextents": by("id", self.targetextents), "initiators": by("id", self.initiators),
            "auths": by("id", self.auths), "portals": by("id", self.portals),
            "sessions": sorted(self.sessions, key=lambda s: (s.get("target", ""), s.get("initiator", ""))),
            "snapshots": {k: self.snapshots[k] for k in sorted(self.snapshots)},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActualStorage:
        kw: dict[str, Any] = {k: [dict(r) for r in d.get(k) or []] for k in _LISTS}
        return cls(parent=d["parent"], parent_exists=bool(d.get("parent_exists", True)),
                   parent_type=d.get("parent_type", "FILESYSTEM"),
                   global_=dict(d.get("global") or {"basename": "iqn.2005-10.org.freenas.ctl", "listen_port": 3260}),
                   service=(dict(d["service"]) if d.get("service") is not None else None) if "service" in d
                   else {"enable": True, "state": "RUNNING"},
                   snapshots={k: dict(v) for k, v in (d.get("snapshots") or {}).items()}, **kw)


def state_fingerprint(actual: ActualStorage) -> str:
    """What a saved plan pins: the NAS's objects, not who is logged in right now.

    Sessions come and go as machines boot; a plan made a minute ago is not stale because
    a machine logged in. Destructive changes stay safe regardless: TrueNAS refuses to
    delete an in-use target/extent without ``force``, which netprov never sends.
    """
    data = actual.to_json()
    data.pop("sessions", None)
    return fingerprint(data)


@dataclass(frozen=True)
class StoragePolicy:
    allow_destroy: bool = False
    adopt: bool = False
    machines: frozenset[str] | set[str] | None = None   # --target filter: plan only these machines
    # The net under a destroyed zvol (docs/recovery.md): before a zvol is deleted or replaced it is
    # snapshotted as ``<zvol>@netprov-<stamp>`` and kept, with that snapshot, as
    # ``<zvol>.netprov-retired-<stamp>``. ``snapshot=False`` (--no-snapshot) destroys it outright.
    # ``stamp`` is the plan's UTC time (``20261207T180512Z``), given by the engine: the core reads no clock.
    snapshot: bool = True
    stamp: str = ""


def net_names(zvol: str, stamp: str) -> tuple[str, str]:
    """``(snapshot, retired zvol)`` names for the net under ``zvol`` (machine names have no '.': no clash)."""
    suffix = f"netprov-{stamp}" if stamp else "netprov"
    return f"{zvol}@{suffix}", f"{zvol}.{suffix.replace('netprov', 'netprov-retired', 1)}"


def retired_comment(zvol: str, stamp: str) -> str:
    """The comment on a retired zvol: says what it was, and is not netprov's ownership mark."""
    return f"netprov:retired zvol={zvol}" + (f" at={stamp}" if stamp else "")


# --------------------------------------------------------------------------------------------
# The planner
# --------------------------------------------------------------------------------------------

def _size(n: int | None) -> str | None:
    return None if n is None else format_size(int(n))


class _Index:
    """Lookups over the actual state, built once (O(N))."""

    def __init__(self, d: DesiredStorage, a: ActualStorage) -> None:
        self.d, self.a = d, a
        prefix = d.parent + "/"
        self.zvols = {z["name"]: z for z in a.zvols}
        self.extent_by_id = {e["id"]: e for e in a.extents}
        self.extent_by_name = {e["name"]: e for e in a.extents}
        self.extents_by_disk: dict[str, list[dict]] = {}
        for e in a.extents:
            if e.get("disk"):
                self.extents_by_disk.setdefault(e["disk"], []).append(e)
        self.target_by_id = {t["id"]: t for t in a.targets}
        self.target_by_name = {t["name"]: t for t in a.targets}
        self.te_by_target: dict[int, list[dict]] = {}
        self.te_by_extent: dict[int, list[dict]] = {}
        for te in a.targetextents:
            self.te_by_target.setdefault(te["target"], []).append(te)
            self.te_by_extent.setdefault(te["extent"], []).append(te)
        self.initiator_by_id = {i["id"]: i for i in a.initiators}
        self.auths_by_tag: dict[int, list[dict]] = {}
        for au in a.auths:
            self.auths_by_tag.setdefault(au["tag"], []).append(au)
        self.portal_by_id = {p["id"]: p for p in a.portals}
        basename = (a.global_ or {}).get("basename") or d.basename
        self.sessions_by_target: dict[str, list[str]] = {}
        for s in a.sessions:
            t = s.get("target") or ""
            tname = t[len(basename) + 1:] if t.startswith(basename + ":") else t
            self.sessions_by_target.setdefault(tname, []).append(s.get("initiator") or "?")

        def in_scope(path: str | None) -> str | None:
            """machine name if ``path`` is a zvol directly under parent."""
            if path and path.startswith(prefix) and "/" not in path[len(prefix):]:
                return path[len(prefix):]
            return None
        self.in_scope = in_scope

        # ownership, by machine (only objects whose mark points into this storage's parent)
        self.zvol_owner: dict[str, str] = {}
        for z in a.zvols:
            m = in_scope(z["name"])
            if m is None:
                continue
            props = z.get("props") or {}
            managed = str(props.get(PROP_MANAGED, "")).lower() == "true"
            if not managed:
                ok, zp = parse_mark(z.get("comments"))
                managed = ok and (zp is None or zp == z["name"])
            if managed:
                self.zvol_owner[z["name"]] = m
        self.extent_owner: dict[int, str] = {}
        self.extents_of: dict[str, list[dict]] = {}
        for e in a.extents:
            ok, zp = parse_mark(e.get("comment"))
            m = in_scope(zp) if ok else None
            if m is not None:
                self.extent_owner[e["id"]] = m
                self.extents_of.setdefault(m, []).append(e)
        self.initiator_owner: dict[int, str] = {}
        self.initiators_of: dict[str, list[dict]] = {}
        for i in sorted(a.initiators, key=lambda r: r["id"]):
            ok, zp = parse_mark(i.get("comment"))
            m = in_scope(zp) if ok else None
            if m is not None:
                self.initiator_owner[i["id"]] = m
                self.initiators_of.setdefault(m, []).append(i)
        self.target_owner: dict[int, str] = {}
        self.targets_of: dict[str, list[dict]] = {}
        for t in sorted(a.targets, key=lambda r: r["id"]):
            owner = None
            for g in t.get("groups") or []:
                owner = self.initiator_owner.get(g.get("initiator"))
                if owner:
                    break
            if owner is None:
                for te in self.te_by_target.get(t["id"], []):
                    owner = self.extent_owner.get(te["extent"])
                    if owner:
                        break
            if owner is not None:
                self.target_owner[t["id"]] = owner
                self.targets_of.setdefault(owner, []).append(t)
        # which auth tags are used by which targets
        self.tag_users: dict[int, list[int]] = {}
        for t in a.targets:
            for g in t.get("groups") or []:
                if g.get("auth") is not None:
                    self.tag_users.setdefault(g["auth"], []).append(t["id"])
        # auth rows no target uses, by user, where every row of the tag has that one user and no peer user
        # (candidates for a machine's leftovers; the planner also requires the machine's secret)
        self.unused_auths_by_user: dict[str, list[dict]] = {}
        for tag, rows in self.auths_by_tag.items():
            users = {r.get("user") for r in rows}
            if tag in self.tag_users or len(users) != 1 or any(r.get("peeruser") for r in rows):
                continue
            self.unused_auths_by_user.setdefault(rows[0].get("user"), []).extend(rows)
        for rows in self.unused_auths_by_user.values():
            rows.sort(key=lambda r: r["id"])
        # declared renames (``renamed_from``): the old name's objects become the new name's, so they are
        # planned as updates of the new machine (renamed), never as an orphan delete plus a create
        self.renamed: dict[str, str] = {}
        for new, dm in d.machines.items():
            old = dm.renamed_from
            if not old or old in d.machines or old == new:
                continue
            self.renamed[new] = old
            for owners in (self.zvol_owner, self.extent_owner, self.initiator_owner, self.target_owner):
                for k, v in owners.items():
                    if v == old:
                        owners[k] = new
            for of in (self.extents_of, self.initiators_of, self.targets_of):
                if old in of:
                    of[new] = of.get(new, []) + of.pop(old)

    def machines_with_objects(self) -> set[str]:
        out = set(self.zvol_owner.values())
        out.update(self.extents_of)
        out.update(self.initiators_of)
        out.update(self.targets_of)
        return out


class _Planner:
    def __init__(self, d: DesiredStorage, a: ActualStorage, policy: StoragePolicy) -> None:
        self.d, self.a, self.p = d, a, policy
        self.ix = _Index(d, a)
        self.system = d.system
        self.portal_addr = f"portal[{d.portal_ip}:{d.portal_port}]"
        self._portal = self._find_portal()
        self._chap_users: dict[str, int] = {}
        for dm in d.machines.values():
            if dm.chap_user:
                self._chap_users[dm.chap_user] = self._chap_users.get(dm.chap_user, 0) + 1

    # -- helpers ---------------------------------------------------------------------------
    def ch(self, kind: str, address: str, action: Action, reason: str, *, machine: str | None = None,
           before: dict | None = None, after: dict | None = None, refused: str | None = None,
           cascade: Iterable[str] = (), data: dict | None = None) -> Change:
        return Change(system=self.system, kind=kind, address=address, action=action, reason=reason,
                      before=before, after=after, machine=machine, refused=refused, cascade=tuple(cascade),
                      data=dict(data or {}))

    @staticmethod
    def diff(before: dict, after: dict, ident: dict) -> tuple[dict, dict]:
        b = dict(ident)
        a = dict(ident)
        for k, v in after.items():
            if before.get(k) != v:
                b[k] = before.get(k)
                a[k] = v
        return b, a

    # -- shared ----------------------------------------------------------------------------
    def plan_global(self) -> list[Change]:
        actual = (self.a.global_ or {}).get("basename")
        addr = "iscsi.global[basename]"
        if actual and actual != self.d.basename:
            return [self.ch("service", addr, Action.UPDATE,
                            f"the NAS's iSCSI basename is {actual}, the inventory says {self.d.basename}",
                            before={"basename": actual}, after={"basename": self.d.basename},
                            refused=(f"netprov does not change the NAS-wide basename (it renames every target "
                                     f"on the NAS); set storage.{self.d.storage_name}.basename: {actual}"))]
        return [self.ch("service", addr, Action.NOOP, f"basename is {actual or self.d.basename}",
                        data={"basename": actual or self.d.basename})]

    def find_portal(self) -> dict | None:
        return self._portal

    def _find_portal(self) -> dict | None:
        return pick_portal(self.a.portals, (self.a.global_ or {}).get("listen_port"), self.d.portal_ip,
                           self.d.portal_port)

    def plan_portal(self) -> list[Change]:
        p = self.find_portal()
        if p is not None:
            listen = ", ".join(f"{li.get('ip')}:{li.get('port') or (self.a.global_ or {}).get('listen_port') or 3260}"
                               for li in p.get("listen") or [])
            return [self.ch("portal", self.portal_addr, Action.NOOP, f"portal {p.get('tag', p['id'])} listens on "
                            f"{listen}", data={"id": p["id"]})]
        gport = (self.a.global_ or {}).get("listen_port")
        refused = None
        if gport is not None and gport != self.d.portal_port and not self._core_like():
            refused = (f"the NAS's iSCSI port is {gport} for every portal (SCALE has one global listen port); "
                       f"netprov does not change it: use portal port {gport}")
        return [self.ch("portal", self.portal_addr, Action.CREATE,
                        f"no portal listens on {self.d.portal_ip}:{self.d.portal_port}",
                        after={"listen": [f"{self.d.portal_ip}:{self.d.portal_port}"], "comment": MARK},
                        refused=refused, data={"ip": self.d.portal_ip, "port": self.d.portal_port, "comment": MARK})]

    def _core_like(self) -> bool:
        return (self.a.global_ or {}).get("listen_port") is None

    def plan_service(self) -> list[Change]:
        s = self.a.service
        addr = f"service[{SERVICE}]"
        if s is None:
            return [self.ch("service", addr, Action.NOOP, "service state unknown (not read)")]
        before = {"enable": bool(s.get("enable")), "state": s.get("state")}
        if before["enable"] and before["state"] == "RUNNING":
            return [self.ch("service", addr, Action.NOOP, "iSCSI service is enabled and running")]
        why = []
        if not before["enable"]:
            why.append("not enabled at boot")
        if before["state"] != "RUNNING":
            why.append(f"{str(before['state']).lower()}")
        b, a = self.diff(before, {"enable": True, "state": "RUNNING"}, {})
        return [self.ch("service", addr, Action.UPDATE, "iSCSI service is " + " and ".join(why),
                        before=b, after=a,
                        data={"enable": not before["enable"], "start": before["state"] != "RUNNING"})]

    # -- labels for target groups ----------------------------------------------------------
    def portal_label(self, pid: int | None) -> str | None:
        if pid is None:
            return None
        p = self.ix.portal_by_id.get(pid)
        mine = self.find_portal()
        if mine is not None and p is not None and p["id"] == mine["id"]:
            return self.portal_addr
        if p is None:
            return f"portal#{pid}"
        li = (p.get("listen") or [{}])[0]
        return f"portal[{li.get('ip')}:{li.get('port') or (self.a.global_ or {}).get('listen_port') or 3260}]"

    def initiator_label(self, iid: int | None) -> str | None:
        if iid is None:
            return None
        owner = self.ix.initiator_owner.get(iid)
        return f"initiator[{owner}]" if owner else f"initiator#{iid}"

    # -- one machine -----------------------------------------------------------------------
    def plan_machine(self, m: DesiredMachine) -> list[Change]:
        ix = self.ix
        out_fwd: list[Change] = []
        out_del: list[Change] = []
        name = m.name
        sessions = ix.sessions_by_target.get(m.target, [])

        # ---------------- zvol
        zaddr = f"zvol[{m.zvol}]"
        z = ix.zvols.get(m.zvol)
        chain_ok = True           # false once a change of this machine is refused: nothing after it is planned
        replace_zvol = False
        snap = self.a.snapshots.get(m.clone_from) if m.clone_from else None
        want_size = m.volsize
        if m.clone_from and snap is not None and not want_size:
            want_size = int(snap.get("volsize") or 0)
        after_z: dict[str, Any] = {"volsize": _size(want_size) if want_size else None,
                                   "volblocksize": m.volblocksize, "sparse": m.sparse}
        if m.clone_from:
            after_z = {"clone_from": m.clone_from, "volsize": _size(want_size) if want_size else None}
        zdata = {"path": m.zvol, "machine": name, "volsize": want_size, "volblocksize": m.volblocksize,
                 "sparse": m.sparse, "clone_from": m.clone_from, "grow_to": m.volsize or None,
                 "mark": mark_comment(m.zvol)}
        renamed_old = ix.renamed.get(name)
        old_path = names.zvol_path(self.d.parent, renamed_old) if renamed_old else None
        oz = ix.zvols.get(old_path) if old_path and ix.zvol_owner.get(old_path) == name else None
        if not self.a.parent_exists or (self.a.parent_type or "FILESYSTEM") != "FILESYSTEM":
            why = (f"parent dataset {self.d.parent} does not exist on the NAS; create it first"
                   if not self.a.parent_exists else
                   f"parent {self.d.parent} is a {str(self.a.parent_type).lower()}, not a filesystem; zvols "
                   "cannot be created under it")
            out_fwd.append(self.ch("zvol", zaddr, Action.CREATE, "zvol does not exist", machine=name,
                                   after={"name": m.zvol, **after_z}, refused=why, data=zdata))
            chain_ok = False
        elif oz is not None:
            ch = self._plan_rename(m, z, oz, zdata, want_size)
            out_fwd.append(ch)
            chain_ok = ch.refused is None
        elif z is None and renamed_old:
            out_fwd.append(self.ch("zvol", zaddr, Action.CREATE, "zvol does not exist", machine=name,
                                   after={"name": m.zvol, **after_z}, data=zdata,
                                   refused=(f"renamed_from: {renamed_old}: there is no netprov zvol {old_path} on "
                                            f"storage {self.d.storage_name}, so nothing to rename; remove "
                                            "renamed_from to create a new disk")))
            chain_ok = False
        elif z is None:
            refused = None
            reason = "zvol does not exist"
            if m.clone_from:
                reason = f"zvol does not exist; clone it from {m.clone_from}"
                if snap is None:
                    refused = f"golden snapshot {m.clone_from} does not exist on the NAS"
                elif m.volsize and m.volsize < int(snap.get("volsize") or 0):
                    refused = (f"disk.size {_size(m.volsize)} is smaller than the golden snapshot's volume "
                               f"({_size(snap.get('volsize'))}); a clone cannot shrink")
            out_fwd.append(self.ch("zvol", zaddr, Action.CREATE, reason, machine=name,
                                   after={"name": m.zvol, **after_z}, refused=refused, data=zdata))
            chain_ok = refused is None
        else:
            owner = ix.zvol_owner.get(m.zvol)
            managed = owner == name
            before_full = {"volsize": _size(z.get("volsize")), "volblocksize": z.get("volblocksize"),
                           "sparse": z.get("sparse")}
            if m.clone_from and not m.volsize:
                want_size = 0          # a clone without disk.size keeps whatever size it has
            after_full = {"volsize": _size(want_size) if want_size else before_full["volsize"]}
            if not m.clone_from:
                after_full["volblocksize"] = m.volblocksize
            grow = bool(want_size) and want_size > int(z.get("volsize") or 0)
            shrink = bool(want_size) and want_size < int(z.get("volsize") or 0)
            vbs_change = (not m.clone_from) and z.get("volblocksize") != m.volblocksize
            notes = []
            if not m.clone_from and bool(z.get("sparse")) != m.sparse:
                notes.append(f"sparse is {str(bool(z.get('sparse'))).lower()} on the NAS (create-time only; "
                             "not changed)")
            if m.clone_from and z.get("origin") != m.clone_from:
                notes.append(f"created from {z.get('origin') or 'no snapshot'}, not {m.clone_from} (clone_from "
                             "applies at creation only)")
            zdata["id"] = m.zvol
            if shrink or vbs_change:
                replace_zvol = True
                why = []
                if shrink:
                    why.append(f"volsize {before_full['volsize']} -> {after_full['volsize']} is a shrink")
                if vbs_change:
                    why.append(f"volblocksize {z.get('volblocksize')} -> {m.volblocksize} is fixed at creation")
                refused = None
                if not managed and not self.p.adopt:
                    refused = self._unmanaged_zvol_msg(m.zvol)
                elif sessions:
                    refused = (f"target {m.target} has an active iSCSI session from {', '.join(sorted(sessions))}; "
                               "netprov never replaces a disk in use")
                elif not self.p.allow_destroy:
                    refused = ("replacing the zvol destroys its data (TrueNAS cannot shrink a zvol or change its "
                               "volblocksize); needs --allow-destroy")
                b, a = self.diff(before_full, after_full, {"name": m.zvol})
                # the extents and mappings go first (explicitly), so the target survives the replace
                cascade = [c for c in self._zvol_cascade(m.zvol) if not c.startswith("target[")]
                if refused:
                    out_fwd.append(self.ch("zvol", zaddr, Action.REPLACE, "; ".join(why), machine=name,
                                           before=b, after=a, refused=refused, cascade=cascade, data=zdata))
                    chain_ok = False
                else:
                    # explicit deletes of what the zvol delete would cascade to, then the replace
                    # one self-contained change: apply deletes the zvol's mappings and extents explicitly
                    # (TrueNAS refuses while a session is logged in), then the zvol, then creates it again
                    net, net_after, net_why = self._net(m.zvol)
                    out_fwd.append(self.ch("zvol", zaddr, Action.REPLACE, "; ".join(why) + " (--allow-destroy); its "
                                           "extent and mapping are deleted first and re-created after; " + net_why,
                                           machine=name, before=b, after={**a, **net_after}, cascade=cascade,
                                           data={**zdata, "pre_delete": self._pre_replace_deletes(m), "net": net}))
            elif not managed:
                b, a = self.diff(before_full, after_full, {"name": m.zvol})
                b["managed"], a["managed"] = False, True
                if self.p.adopt:
                    out_fwd.append(self.ch("zvol", zaddr, Action.UPDATE, "adopt: mark the existing zvol as "
                                           "netprov's" + ("; grow it" if grow else ""), machine=name, before=b,
                                           after=a, data={**zdata, "set_mark": True,
                                                          "set_volsize": want_size if grow else None}))
                else:
                    out_fwd.append(self.ch("zvol", zaddr, Action.UPDATE, "a zvol with this name exists",
                                           machine=name, before=b, after=a,
                                           refused=self._unmanaged_zvol_msg(m.zvol), data=zdata))
                    chain_ok = False
            elif grow:
                b, a = self.diff(before_full, after_full, {"name": m.zvol})
                out_fwd.append(self.ch("zvol", zaddr, Action.UPDATE, f"grow volsize {b['volsize']} -> "
                                       f"{a['volsize']}" + ("; " + "; ".join(notes) if notes else ""), machine=name,
                                       before=b, after=a, data={**zdata, "set_volsize": want_size}))
            else:
                reason = (f"zvol exists with volsize {before_full['volsize']}"
                          + (f", volblocksize {z.get('volblocksize')}" if not m.clone_from else
                             f", cloned from {z.get('origin')}"))
                if notes:
                    reason += "; " + "; ".join(notes)
                out_fwd.append(self.ch("zvol", zaddr, Action.NOOP, reason, machine=name, data=zdata))

        # ---------------- extent
        eaddr = f"extent[{m.target}]"
        extent_after = {"name": m.target, "disk": m.device, "serial": m.serial, "blocksize": EXTENT_BLOCKSIZE,
                        "ro": False, "enabled": True}
        edata = {**extent_after, "comment": mark_comment(m.zvol)}
        e = ix.extent_by_name.get(m.target)
        mine = [x for x in ix.extents_of.get(name, [])]
        if e is not None and ix.extent_owner.get(e["id"]) != name and chain_ok:
            if ix.extent_owner.get(e["id"]) is None and self.p.adopt:
                pass  # adopted below as an update
            else:
                other = ix.extent_owner.get(e["id"])
                out_fwd.append(self.ch("extent", eaddr, Action.UPDATE if e else Action.CREATE,
                                       "an extent with this name exists", machine=name,
                                       before={"name": e["name"], "disk": e.get("disk"), "managed": bool(other)},
                                       after={"name": m.target, "disk": m.device, "managed": True},
                                       refused=(f"extent {e['name']} (id {e['id']}) is not managed by netprov; "
                                                "rename it or plan with adopt" if other is None else
                                                f"extent {e['name']} belongs to netprov machine {other}"),
                                       data={**edata, "id": e["id"], "verify_name": e["name"]}))
                chain_ok = False
                e = None
                mine = []
        if e is None and chain_ok:
            # ours under another name (renamed by hand)?
            renamed = next((x for x in mine if x["name"] != m.target), None)
            if renamed is not None:
                e = renamed
        # an unmanaged extent already exporting this zvol
        foreign_on_disk = [x for x in ix.extents_by_disk.get(m.device, [])
                           if ix.extent_owner.get(x["id"]) is None and (e is None or x["id"] != e["id"])]
        extent_id = None
        if not chain_ok:
            pass
        elif replace_zvol:
            out_fwd.append(self.ch("extent", eaddr, Action.CREATE, "re-created on the replaced zvol", machine=name,
                                   after=extent_after, data=edata))
        elif foreign_on_disk and e is None and not self.p.adopt:
            x = foreign_on_disk[0]
            out_fwd.append(self.ch("extent", eaddr, Action.CREATE, "zvol has no netprov extent", machine=name,
                                   after=extent_after,
                                   refused=f"zvol {m.zvol} is already exported by extent {x['name']} (id {x['id']}), "
                                           "not managed by netprov; plan with adopt to take it over",
                                   data=edata))
            chain_ok = False
        else:
            if e is None and foreign_on_disk and self.p.adopt:
                e = foreign_on_disk[0]
            if e is None:
                out_fwd.append(self.ch("extent", eaddr, Action.CREATE,
                                       "extent does not exist" if z is not None else "new disk", machine=name,
                                       after=extent_after, data=edata))
            else:
                extent_id = e["id"]
                before = {"name": e["name"], "disk": e.get("disk"), "serial": e.get("serial"),
                          "blocksize": e.get("blocksize"), "ro": e.get("ro"), "enabled": e.get("enabled")}
                managed = ix.extent_owner.get(e["id"]) == name
                b, a = self.diff(before, extent_after, {"name": e["name"]})
                sets = {k: v for k, v in extent_after.items() if before.get(k) != v}
                if not managed:
                    b["managed"], a["managed"] = False, True
                if managed and name in ix.renamed and parse_mark(e.get("comment"))[1] != m.zvol:
                    sets["comment"] = mark_comment(m.zvol)      # renamed_from: the mark follows the zvol
                if sets or not managed:
                    if not managed:
                        sets["comment"] = mark_comment(m.zvol)
                    reason = ("adopt: mark the existing extent as netprov's" if not managed else
                              (f"renamed from {ix.renamed[name]} (renamed_from): " if name in ix.renamed else
                               "drift: ") + ", ".join(f"{k} {before.get(k, e.get(k))!r} -> {v!r}"
                                                      for k, v in sets.items()))
                    out_fwd.append(self.ch("extent", eaddr, Action.UPDATE, reason, machine=name, before=b, after=a,
                                           data={"id": e["id"], "verify_name": e["name"], "set": sets}))
                else:
                    out_fwd.append(self.ch("extent", eaddr, Action.NOOP, f"extent {e['name']} exports {m.device}",
                                           machine=name, data={"id": e["id"]}))
        # other managed extents of this machine (duplicates): delete
        for x in mine:
            if x["id"] != extent_id and x["name"] != m.target and chain_ok and not replace_zvol:
                out_del.append(self._delete_extent(x, name, sessions, "a second netprov extent for this machine",
                                                   gated=False))

        # ---------------- initiator group
        iaddr = f"initiator[{name}]"
        inits = ix.initiators_of.get(name, [])
        iafter = {"initiators": [m.initiator_iqn]}
        icomment = mark_comment(m.zvol)
        if not chain_ok:
            pass
        elif not inits:
            out_fwd.append(self.ch("initiator", iaddr, Action.CREATE, "initiator group does not exist",
                                   machine=name, after={**iafter, "comment": icomment},
                                   data={"initiators": [m.initiator_iqn], "comment": icomment}))
        else:
            # keep the group the machine's target already uses (drop the others)
            used = set()
            for tt in ix.targets_of.get(name, []):
                used.update(g.get("initiator") for g in tt.get("groups") or [])
            inits = sorted(inits, key=lambda r: (r["id"] not in used, r["id"]))
            i0 = inits[0]
            before = {"initiators": sorted(i0.get("initiators") or [])}
            remark = name in ix.renamed and parse_mark(i0.get("comment"))[1] != m.zvol   # renamed_from
            if before["initiators"] != iafter["initiators"] or remark:
                why = ("admits every initiator (empty list)" if not before["initiators"] else
                       "admits " + ", ".join(before["initiators"]))
                reason = (f"drift: initiator group {why}; only {m.initiator_iqn} may log in"
                          if before["initiators"] != iafter["initiators"] else "")
                if remark:
                    reason = f"renamed from {ix.renamed[name]} (renamed_from): mark follows the zvol" + (
                        f"; initiator {', '.join(before['initiators']) or '(any)'} -> {m.initiator_iqn}"
                        if reason else "")
                out_fwd.append(self.ch("initiator", iaddr, Action.UPDATE, reason, machine=name, before=before,
                                       after=iafter,
                                       data={"id": i0["id"], "verify_comment": i0.get("comment"),
                                             "set": {"initiators": [m.initiator_iqn],
                                                     **({"comment": icomment} if remark else {})}}))
            else:
                out_fwd.append(self.ch("initiator", iaddr, Action.NOOP, f"admits only {m.initiator_iqn}",
                                       machine=name, data={"id": i0["id"]}))
            for extra in inits[1:]:
                out_del.append(self.ch("initiator", f"initiator[{name}]#{extra['id']}", Action.DELETE,
                                       "a second netprov initiator group for this machine", machine=name,
                                       before={"initiators": sorted(extra.get("initiators") or [])},
                                       data={"id": extra["id"], "verify_comment": extra.get("comment"),
                                             "after_target": True}))

        # ---------------- target (found before auth: the auth group is the one the target uses)
        taddr = f"target[{m.target}]"
        t = ix.target_by_name.get(m.target)
        owned = ix.targets_of.get(name, [])
        adoptable = t is not None and ix.target_owner.get(t["id"]) is None and self.p.adopt
        if t is not None and ix.target_owner.get(t["id"]) != name and not adoptable:
            other = ix.target_owner.get(t["id"])
            if chain_ok:
                out_fwd.append(self.ch("target", taddr, Action.UPDATE, "a target with this name exists",
                                       machine=name, before={"name": t["name"], "managed": False},
                                       after={"name": m.target, "managed": True},
                                       refused=(f"target {t['name']} (id {t['id']}) is not managed by netprov "
                                                "(its group does not use a netprov initiator group); rename it "
                                                "or plan with adopt" if other is None else
                                                f"target {t['name']} belongs to netprov machine {other}"),
                                       data={"id": t["id"], "verify_name": t["name"]}))
            chain_ok = False
            t = None
        if t is None and chain_ok:
            t = next((x for x in owned if x["name"] != m.target), None)   # renamed by hand
        # auth: the tag the target's group uses
        cur_tag = None
        if t is not None:
            for g in t.get("groups") or []:
                if g.get("auth") is not None:
                    cur_tag = g["auth"]
                    break
        aaddr = f"auth[{name}]"
        auth_rows = self.ix.auths_by_tag.get(cur_tag, []) if cur_tag is not None else []
        shared_tag = cur_tag is not None and any(
            self.ix.target_owner.get(tid) != name for tid in self.ix.tag_users.get(cur_tag, []) if
            t is None or tid != t["id"])
        # a second credential in the target's auth group (another machine's, a race's, a person's): the
        # target would accept it. Never converged: the machine moves to a fresh auth group of its own.
        crowded = cur_tag is not None and len(auth_rows) > 1
        if chain_ok and m.chap_user:
            secret = self.d.secret(name)
            no_secret = None if secret is not None else (
                f"CHAP secret for {name} is not available (set the variable or file the inventory names); "
                "apply refuses this change")
            if not auth_rows or shared_tag or crowded:
                if not auth_rows:
                    reason = "CHAP is on; auth group does not exist"
                elif shared_tag:
                    reason = (f"drift: the target uses auth tag {cur_tag}, which other targets use too; "
                              "the machine gets a fresh auth group of its own")
                else:
                    users = ", ".join(sorted(str(r.get("user")) for r in auth_rows))
                    reason = (f"drift: auth tag {cur_tag} of target {t['name']} holds {len(auth_rows)} credentials "
                              f"(users {users}), so the target accepts more than this machine's; the machine "
                              "gets a fresh auth group of its own (the other rows are never adopted)")
                leftovers = self._leftover_auths(m, secret)
                if leftovers and not no_secret:
                    # an earlier apply made this row and stopped before a target used it: reuse it
                    row, leftovers = leftovers[0], leftovers[1:]
                    out_fwd.append(self.ch("auth", aaddr, Action.UPDATE,
                                           f"adopt: reuse auth group tag {row['tag']} (CHAP user {m.chap_user}, "
                                           "this machine's secret) that an interrupted apply left unused; "
                                           + reason, machine=name,
                                           before={"user": row.get("user"), "tag": row["tag"], "used": False},
                                           after={"user": m.chap_user, "tag": row["tag"], "used": True},
                                           data={"id": row["id"], "tag": row["tag"], "verify_user": row.get("user"),
                                                 "verify_tag": row["tag"], "set": {}, "set_secret": False,
                                                 "machine": name}))
                else:
                    out_fwd.append(self.ch("auth", aaddr, Action.CREATE, reason, machine=name,
                                           after={"user": m.chap_user, "secret": MASK, "peeruser": ""},
                                           refused=no_secret, data={"user": m.chap_user, "machine": name,
                                                                    "needs_secret": no_secret is not None}))
                out_del.extend(self._delete_leftover_auths(m, leftovers))
                if auth_rows and (shared_tag or crowded) and secret is not None:
                    # this machine's own credential in the group it leaves (proved by the secret's digest)
                    own = [r for r in auth_rows if r.get("user") == m.chap_user
                           and r.get("secret") == secret_digest(secret)]
                    if own and (len(own) < len(auth_rows) or not shared_tag):
                        for r in own:
                            out_del.append(self.ch(
                                "auth", f"auth[{name}]#{r['id']}", Action.DELETE,
                                f"the machine's credential in auth tag {cur_tag}, which it leaves", machine=name,
                                before={"user": r.get("user"), "tag": cur_tag, "secret": MASK},
                                data={"ids": [r["id"]], "tag": cur_tag, "verify_user": r.get("user"),
                                      "not_used_by": [t["id"]] if t is not None else []}))
            else:
                out_del.extend(self._delete_leftover_auths(m, self._leftover_auths(m, secret)))
                row = next((r for r in auth_rows if r.get("user") == m.chap_user), auth_rows[0])
                before = {"user": row.get("user"), "peeruser": row.get("peeruser") or ""}
                want = {"user": m.chap_user, "peeruser": ""}
                b, a = self.diff(before, want, {})
                sets = dict(a)
                notes = []
                secret_state = row.get("secret")
                set_secret = False
                if secret is None:
                    notes.append("secret not compared (not available here)")
                elif secret_state in (None, "redacted"):
                    notes.append("secret not compared (the NAS redacts it)")
                elif secret_state != secret_digest(secret):
                    set_secret = True
                    b["secret"], a["secret"] = MASK, MASK
                if sets or set_secret:
                    why = []
                    if "user" in sets:
                        why.append(f"user {before['user']} -> {m.chap_user}")
                    if "peeruser" in sets:
                        why.append("mutual CHAP user is set on the NAS")
                    if set_secret:
                        why.append("CHAP secret differs")
                    out_fwd.append(self.ch("auth", aaddr, Action.UPDATE, "drift: " + "; ".join(why), machine=name,
                                           before=b, after=a,
                                           refused=no_secret if set_secret else None,
                                           data={"id": row["id"], "tag": cur_tag, "verify_user": row.get("user"),
                                                 "set": {**sets, **({"peersecret": ""} if "peeruser" in sets
                                                                    else {})},
                                                 "set_secret": set_secret, "machine": name}))
                else:
                    out_fwd.append(self.ch("auth", aaddr, Action.NOOP, f"CHAP user {m.chap_user} (tag {cur_tag})"
                                           + ("; " + "; ".join(notes) if notes else ""), machine=name,
                                           data={"id": row["id"], "tag": cur_tag}))
        elif chain_ok and auth_rows and not shared_tag and not crowded:
            # CHAP turned off: delete the machine's auth group after the target stops using it
            out_del.append(self.ch("auth", aaddr, Action.DELETE, "CHAP is off for this machine", machine=name,
                                   before={"user": auth_rows[0].get("user"), "secret": MASK},
                                   data={"ids": [r["id"] for r in auth_rows], "tag": cur_tag,
                                         "verify_user": auth_rows[0].get("user")}))

        # target itself
        if chain_ok:
            groups = [{"portal": self.portal_addr, "initiator": iaddr,
                       "authmethod": "CHAP" if m.chap_user else "NONE",
                       "auth": aaddr if m.chap_user else None}]
            tafter = {"name": m.target, "mode": "ISCSI", "groups": groups}
            if t is None:
                out_fwd.append(self.ch("target", taddr, Action.CREATE, "target does not exist", machine=name,
                                       after=tafter, data={"name": m.target, "groups": groups}))
            else:
                auth_label = lambda tag: (aaddr if (tag is not None and tag == cur_tag and auth_rows
                                                    and not shared_tag and not crowded) else
                                          (None if tag is None else f"auth-tag#{tag}"))
                before = {"name": t["name"], "mode": t.get("mode") or "ISCSI",
                          "groups": [{"portal": self.portal_label(g.get("portal")),
                                      "initiator": self.initiator_label(g.get("initiator")),
                                      "authmethod": g.get("authmethod") or "NONE",
                                      "auth": auth_label(g.get("auth"))} for g in t.get("groups") or []]}
                managed = ix.target_owner.get(t["id"]) == name
                b, a = self.diff(before, tafter, {"name": t["name"]})
                sets = {k: v for k, v in tafter.items() if before.get(k) != v}
                if not managed:
                    b["managed"], a["managed"] = False, True
                if sets or not managed:
                    why = []
                    if "name" in sets and name in ix.renamed:
                        why.append(f"renamed from {ix.renamed[name]} (renamed_from): target {t['name']} -> "
                                   f"{m.target}; its IQN changes and the boot script follows")
                    elif "name" in sets:
                        why.append(f"renamed to {t['name']} on the NAS")
                    if "groups" in sets:
                        why.append("portal/initiator/auth group differs")
                    if "mode" in sets:
                        why.append(f"mode {before['mode']}")
                    reason = ("adopt: link the existing target to netprov's initiator group" if not managed
                              else ("" if "name" in sets and name in ix.renamed else "drift: ") + "; ".join(why))
                    out_fwd.append(self.ch("target", taddr, Action.UPDATE, reason, machine=name, before=b, after=a,
                                           data={"id": t["id"], "verify_name": t["name"], "set": sets,
                                                 "groups": groups}))
                else:
                    out_fwd.append(self.ch("target", taddr, Action.NOOP, "target exists with the expected group",
                                           machine=name, data={"id": t["id"]}))
            for extra in owned:
                if t is not None and extra["id"] == t["id"]:
                    continue
                out_del.append(self._delete_target(extra, name, "a second netprov target for this machine",
                                                   gated=False))

        # ---------------- mapping
        if chain_ok:
            te_addr = f"targetextent[{m.target}/{m.target}]"
            mapped = [te for te in ix.te_by_target.get(t["id"], [])] if t is not None else []
            good = None
            if extent_id is not None and not replace_zvol:
                good = next((te for te in mapped if te["extent"] == extent_id), None)
            teafter = {"target": m.target, "extent": m.target, "lunid": m.lun}
            tedata = {"target": taddr, "extent": eaddr, "lunid": m.lun}
            foreign = []
            if extent_id is not None and not replace_zvol:
                foreign = [te for te in ix.te_by_extent.get(extent_id, [])
                           if t is None or te["target"] != t["id"]]
            if good is None:
                refused = None
                if foreign:
                    other = ix.target_by_id.get(foreign[0]["target"], {})
                    if ix.target_owner.get(foreign[0]["target"]) is None:
                        refused = (f"extent {m.target} is also mapped to target {other.get('name', foreign[0]['target'])}"
                                   ", not managed by netprov: the disk would be reachable through it")
                out_fwd.append(self.ch("targetextent", te_addr, Action.CREATE,
                                       "re-created on the replaced zvol" if replace_zvol else
                                       "target is not mapped to the extent", machine=name,
                                       after=teafter, refused=refused, data=tedata))
            elif good.get("lunid") != m.lun:
                out_fwd.append(self.ch("targetextent", te_addr, Action.UPDATE,
                                       f"LUN {good.get('lunid')} -> {m.lun}", machine=name,
                                       before={"target": m.target, "extent": m.target, "lunid": good.get("lunid")},
                                       after=teafter, data={**tedata, "id": good["id"], "verify": {
                                           "target": good["target"], "extent": good["extent"]}}))
            else:
                out_fwd.append(self.ch("targetextent", te_addr, Action.NOOP, f"mapped at LUN {m.lun}",
                                       machine=name, data={**tedata, "id": good["id"]}))
            # other LUNs on this machine's target expose other disks to it
            for te in mapped:
                if good is not None and te["id"] == good["id"]:
                    continue
                ext = ix.extent_by_id.get(te["extent"], {})
                if replace_zvol and ix.extent_owner.get(te["extent"]) == name:
                    continue  # deleted before the replace already
                out_del.append(self.ch("targetextent", f"targetextent[{t['name']}/{ext.get('name', te['extent'])}]",
                                       Action.DELETE, f"target {t['name']} also exposes extent "
                                       f"{ext.get('name', te['extent'])}: only the machine's own disk may be mapped",
                                       machine=name,
                                       before={"target": t["name"], "extent": ext.get("name"), "lunid": te.get("lunid")},
                                       data={"id": te["id"], "verify": {"target": te["target"],
                                                                        "extent": te["extent"]}}))
        # deletes after the forward chain, in reverse dependency order
        order = {k: i for i, k in enumerate(KINDS)}
        out_del.sort(key=lambda c: -order[c.kind])
        return out_fwd + out_del

    def _leftover_auths(self, m: DesiredMachine, secret: str | None) -> list[dict]:
        """Auth rows an interrupted apply of this machine left: netprov's by the rule in the module docstring.

        A row is the machine's leftover only when no target uses its tag, its tag holds no other user's
        row, it has no peer user, its user is the machine's CHAP user (and no other machine of the
        inventory has that user) and its secret is readable and is this machine's secret (by digest).
        """
        if not m.chap_user or secret is None or self._chap_users.get(m.chap_user, 0) > 1:
            return []
        digest = secret_digest(secret)
        return [r for r in self.ix.unused_auths_by_user.get(m.chap_user, []) if r.get("secret") == digest]

    def _delete_leftover_auths(self, m: DesiredMachine, rows: list[dict]) -> list[Change]:
        return [self.ch("auth", f"auth[{m.name}]#{r['id']}", Action.DELETE,
                        f"leftover: auth group tag {r['tag']} with this machine's CHAP user and secret, which no "
                        "target uses (an interrupted apply made it)", machine=m.name,
                        before={"user": r.get("user"), "tag": r["tag"], "secret": MASK},
                        data={"ids": [r["id"]], "tag": r["tag"], "verify_user": r.get("user"), "unused": True})
                for r in rows]
    def _net(self, path: str) -> tuple[dict | None, dict, str]:
        """The net under a zvol about to be destroyed: ``(executor data, plan fields, reason text)``.

        The zvol is snapshotted, the snapshot cloned to the retired name, the clone promoted (it takes
        the snapshot, and every older one, with it) and only then is the old zvol destroyed: a ZFS
        snapshot dies with its dataset, so a snapshot alone would be no net (ADR 0006).
        """
        if not self.p.snapshot:
            return None, {}, "--no-snapshot: nothing is kept, the data is destroyed"
        snap, keep = net_names(path, self.p.stamp)
        return ({"snapshot": snap, "keep_as": keep, "comment": retired_comment(path, self.p.stamp)},
                {"snapshot": snap, "kept_as": keep},
                f"the old disk is snapshotted ({snap}) and kept as {keep} (docs/recovery.md)")

    def _plan_rename(self, m: DesiredMachine, z: dict | None, oz: dict, zdata: dict, want_size: int) -> Change:
        """``renamed_from``: move the old machine's zvol to the new name, keeping its data and its extent."""
        ix = self.ix
        old = ix.renamed[m.name]
        old_path = oz["name"]
        zaddr = f"zvol[{m.zvol}]"
        old_device = names.zvol_device(self.d.parent, old)
        on_disk = ix.extents_by_disk.get(old_device, [])
        sessions = sorted({s for t in ix.targets_of.get(m.name, []) for s in ix.sessions_by_target.get(t["name"], [])}
                          | set(ix.sessions_by_target.get(names.target_name(old, self.d.target_prefix), [])))
        foreign = [e for e in on_disk if ix.extent_owner.get(e["id"]) != m.name]
        shrink = bool(want_size) and want_size < int(oz.get("volsize") or 0)
        vbs_change = not m.clone_from and oz.get("volblocksize") != m.volblocksize
        grow = bool(want_size) and want_size > int(oz.get("volsize") or 0)
        refused = None
        ours = z is not None and (ix.zvol_owner.get(m.zvol) == m.name
                                  or str(z.get("origin") or "").startswith(old_path + "@"))   # an interrupted rename
        if z is not None and not ours:
            refused = f"renamed_from: {old}: " + self._unmanaged_zvol_msg(m.zvol)
        elif sessions:
            refused = (f"renamed_from: {old}: its target has an active iSCSI session from {', '.join(sessions)}; "
                       "netprov never renames a disk in use (shut the machine down first)")
        elif foreign:
            refused = (f"renamed_from: {old}: zvol {old_path} is also exported by extent {foreign[0]['name']}, "
                       "not managed by netprov; removing the old name would delete that extent")
        elif shrink or vbs_change:
            refused = (f"renamed_from: {old}: a rename and a shrink or volblocksize change at once; rename first "
                       "(keep disk.size and volblocksize as they are), then change them")
        snap, _ = net_names(old_path, self.p.stamp)
        finish = z is not None
        reason = (f"renamed from {old} (renamed_from): the disk keeps its data"
                  + (f"; the rename of {old_path} was interrupted: finish it" if finish else
                     f" (snapshot {snap}, cloned to the new name and promoted; then the old name is removed"
                     + ("" if self.p.snapshot else "; --no-snapshot: the snapshot is deleted afterwards") + ")"))
        before = {"name": old_path}
        after = {"name": m.zvol}
        if grow:
            before["volsize"], after["volsize"] = _size(oz.get("volsize")), _size(want_size)
            reason += f"; grow volsize {before['volsize']} -> {after['volsize']}"
        return self.ch("zvol", zaddr, Action.UPDATE, reason, machine=m.name, before=before, after=after,
                       refused=refused,
                       data={**zdata, "id": m.zvol, "set_volsize": want_size if grow else None,
                             "rename": {"from": old_path, "snapshot": snap, "clone": not finish,
                                        "keep_snapshot": self.p.snapshot, "disk": m.device,
                                        "extents": [{"id": e["id"], "name": e["name"]} for e in on_disk]}})

    def _unmanaged_zvol_msg(self, path: str) -> str:
        return (f"zvol {path} exists and is not managed by netprov (no {PROP_MANAGED} property or comment); "
                "rename it or plan with adopt to take it over")

    def _zvol_cascade(self, path: str) -> list[str]:
        """What TrueNAS deletes along with the zvol: its extents, their mappings, targets left without LUNs."""
        ix = self.ix
        out = []
        disk = "zvol/" + path.replace(" ", "+")
        tids = set()
        for e in ix.extents_by_disk.get(disk, []):
            out.append(f"extent[{e['name']}]")
            for te in ix.te_by_extent.get(e["id"], []):
                t = ix.target_by_id.get(te["target"], {})
                out.append(f"targetextent[{t.get('name', te['target'])}/{e['name']}]")
                tids.add(te["target"])
        ext_ids = {e["id"] for e in ix.extents_by_disk.get(disk, [])}
        for tid in sorted(tids):
            if all(te["extent"] in ext_ids for te in ix.te_by_target.get(tid, [])):
                out.append(f"target[{ix.target_by_id[tid]['name']}]")
        return out

    def _pre_replace_deletes(self, m: DesiredMachine) -> list[dict]:
        """What a zvol replace deletes before the zvol: every mapping of every extent on it, then the extents."""
        ix = self.ix
        out: list[dict] = []
        for e in ix.extents_by_disk.get(m.device, []):
            for te in ix.te_by_extent.get(e["id"], []):
                out.append({"kind": "targetextent", "id": te["id"], "target": te["target"], "extent": te["extent"]})
            out.append({"kind": "extent", "id": e["id"], "name": e["name"],
                        "address": f"extent[{e['name']}]"})
        return out

    def _delete_extent(self, e: dict, machine: str, sessions: list[str], reason: str, gated: bool) -> Change:
        refused = self._delete_refusal(sessions, gated, f"target {e['name']}")
        return self.ch("extent", f"extent[{e['name']}]", Action.DELETE, reason, machine=machine,
                       before={"name": e["name"], "disk": e.get("disk")}, refused=refused,
                       data={"id": e["id"], "verify_name": e["name"]})

    def _delete_target(self, t: dict, machine: str, reason: str, gated: bool) -> Change:
        sessions = self.ix.sessions_by_target.get(t["name"], [])
        refused = self._delete_refusal(sessions, gated, f"target {t['name']}")
        return self.ch("target", f"target[{t['name']}]", Action.DELETE, reason, machine=machine,
                       before={"name": t["name"]}, refused=refused, data={"id": t["id"], "verify_name": t["name"]})

    def _delete_refusal(self, sessions: list[str], gated: bool, what: str) -> str | None:
        if sessions:
            return (f"{what} has an active iSCSI session from {', '.join(sorted(sessions))}; "
                    "netprov never deletes a disk in use")
        if gated and not self.p.allow_destroy:
            return "the machine is no longer in the inventory; deleting its disk needs --allow-destroy"
        return None

    # -- orphans ---------------------------------------------------------------------------
    def plan_orphan(self, name: str) -> list[Change]:
        ix = self.ix
        path = f"{self.d.parent}/{name}"
        targets = ix.targets_of.get(name, [])
        sessions = sorted({s for t in targets for s in ix.sessions_by_target.get(t["name"], [])})
        # the disk's own target also counts when it is not linked (session on a target we can't see as ours)
        refused = self._delete_refusal(sessions, True, "the machine's target")
        out: list[Change] = []
        reason = "machine is no longer in the inventory"
        ext_ids = {e["id"] for e in ix.extents_of.get(name, [])}
        tids = {t["id"] for t in targets}
        seen_te = set()
        for tid in sorted(tids | set()):
            for te in ix.te_by_target.get(tid, []):
                seen_te.add(te["id"])
        for eid in ext_ids:
            for te in ix.te_by_extent.get(eid, []):
                seen_te.add(te["id"])
        te_by_id = {te["id"]: te for te in self.a.targetextents}
        for te_id in sorted(seen_te):
            te = te_by_id[te_id]
            t = ix.target_by_id.get(te["target"], {})
            e = ix.extent_by_id.get(te["extent"], {})
            r = refused
            if r is None and (te["target"] not in tids and te["extent"] not in ext_ids):
                r = "mapping joins objects netprov does not manage"
            out.append(self.ch("targetextent", f"targetextent[{t.get('name', te['target'])}/"
                               f"{e.get('name', te['extent'])}]", Action.DELETE, reason, machine=name,
                               before={"target": t.get("name"), "extent": e.get("name"), "lunid": te.get("lunid")},
                               refused=r, data={"id": te["id"], "verify": {"target": te["target"],
                                                                          "extent": te["extent"]}}))
        tags = set()
        for t in targets:
            out.append(self.ch("target", f"target[{t['name']}]", Action.DELETE, reason, machine=name,
                               before={"name": t["name"]}, refused=refused,
                               data={"id": t["id"], "verify_name": t["name"]}))
            for g in t.get("groups") or []:
                if g.get("auth") is not None:
                    tags.add(g["auth"])
        for tag in sorted(tags):
            users = ix.tag_users.get(tag, [])
            if any(ix.target_owner.get(tid) != name for tid in users):
                continue   # shared with a target that stays
            rows = ix.auths_by_tag.get(tag, [])
            if not rows:
                continue
            out.append(self.ch("auth", f"auth[{name}]", Action.DELETE, reason, machine=name,
                               before={"user": rows[0].get("user"), "secret": MASK}, refused=refused,
                               data={"ids": [r["id"] for r in rows], "tag": tag,
                                     "verify_user": rows[0].get("user")}))
        # An earlier delete of this machine that stopped between its target and its auth group left the
        # group with no target to lead to it. It is still recognisable: unused, every row with the removed
        # machine's default CHAP user (its name), no peer user, and no machine of the inventory has that user.
        if not self._chap_users.get(name):
            for r in ix.unused_auths_by_user.get(name, []):
                if r["tag"] in tags:
                    continue
                out.append(self.ch("auth", f"auth[{name}]#{r['id']}", Action.DELETE,
                                   reason + f"; leftover auth group tag {r['tag']} with its CHAP user, which no "
                                   "target uses (an interrupted delete left it)", machine=name,
                                   before={"user": r.get("user"), "tag": r["tag"], "secret": MASK}, refused=refused,
                                   data={"ids": [r["id"]], "tag": r["tag"], "verify_user": r.get("user"),
                                         "unused": True}))
        for i in ix.initiators_of.get(name, []):
            out.append(self.ch("initiator", f"initiator[{name}]" + (f"#{i['id']}" if len(
                ix.initiators_of[name]) > 1 else ""), Action.DELETE, reason, machine=name,
                before={"initiators": sorted(i.get("initiators") or [])}, refused=refused,
                data={"id": i["id"], "verify_comment": i.get("comment")}))
        for e in ix.extents_of.get(name, []):
            out.append(self.ch("extent", f"extent[{e['name']}]", Action.DELETE, reason, machine=name,
                               before={"name": e["name"], "disk": e.get("disk")}, refused=refused,
                               data={"id": e["id"], "verify_name": e["name"]}))
        z = ix.zvols.get(path)
        if z is not None and ix.zvol_owner.get(path) == name:
            r = refused
            cascade = self._zvol_cascade(path)
            # anything the cascade would take that netprov does not manage (and so does not delete first)
            disk = "zvol/" + path.replace(" ", "+")
            foreign = [e for e in ix.extents_by_disk.get(disk, []) if ix.extent_owner.get(e["id"]) != name]
            if r is None and foreign:
                r = (f"deleting the zvol would also delete extent {foreign[0]['name']}, which netprov does not "
                     "manage")
            net, net_after, net_why = self._net(path)
            out.append(self.ch("zvol", f"zvol[{path}]", Action.DELETE, reason + "; " + net_why, machine=name,
                               before={"name": path, "volsize": _size(z.get("volsize")),
                                       "volblocksize": z.get("volblocksize")}, after=net_after or None,
                               refused=r, cascade=cascade, data={"id": path, "path": path, "net": net}))
        return out


def pick_portal(portals: Iterable[dict], global_port: int | None, ip: str, port: int) -> dict | None:
    """The portal netprov uses for ``ip:port``: one listening on exactly that address, else one on the
    wildcard address (lowest id first). A listen entry without a port uses the global port (else 3260)."""
    best = None
    for p in sorted(portals, key=lambda r: r.get("id") or 0):
        for li in p.get("listen") or []:
            if (li.get("port") or global_port or 3260) != port:
                continue
            if li.get("ip") == ip:
                return p
            if li.get("ip") in ("0.0.0.0", "::") and best is None:
                best = p
    return best


def plan_storage(desired: DesiredStorage, actual: ActualStorage, policy: StoragePolicy | None = None) -> list[Change]:
    """Compare and return the changes in execution order (see the module docstring). Pure, O(N)."""
    policy = policy or StoragePolicy()
    p = _Planner(desired, actual, policy)
    wanted = policy.machines
    served = None if wanted is None else sorted(set(wanted) & set(desired.machines))
    out: list[Change] = []
    out += _shared(p.plan_global() + p.plan_portal(), served)
    for name in sorted(desired.machines):
        if wanted is not None and name not in wanted:
            continue
        out += p.plan_machine(desired.machines[name])
    for name in sorted(p.ix.machines_with_objects() - set(desired.machines)):
        if wanted is not None and name not in wanted:
            continue
        out += p.plan_orphan(name)
    out += _shared(p.plan_service(), served)
    return out


def _shared(changes: list[Change], served: list[str] | None) -> list[Change]:
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


def summarize(changes: Iterable[Change]) -> dict[str, int]:
    """{create, update, replace, delete, no-op, refused} counts (handy for tests and the CLI)."""
    out = {a.value: 0 for a in Action}
    out["refused"] = 0
    for c in changes:
        out[c.action.value] += 1
        if c.refused:
            out["refused"] += 1
    return out
