"""What each storage change does on the NAS: one executor per payload type, as a chain of API calls.

Each executor is a generator that yields one ``Call`` (or ``Sleep``) at a time and gets the call's result
back; ``EXECUTORS`` picks it by the change's payload type. It sends nothing itself and knows nothing of the
other chains: ``schedule.py`` runs the chains side by side and reports.

* before any update or delete the object is looked up again by id *and* name/mark (TrueNAS reuses
  ids), and the change fails if it no longer matches;
* an extent create on a zvol created moments ago is retried while the NAS says the device does not
  exist yet (backoff, about 10 s at most);
* a new CHAP auth row is checked right after its create: if another row holds its tag (a racing
  apply on another host picked the same tag), the row with the lowest id keeps it and the other
  moves to a fresh tag; only a tag holding this row alone is bound to a target
  (docs/adr/0005-chap-auth-tags.md). A portal create that the NAS refuses because a racing apply
  just made one on the same address uses that portal (reported as skipped, "not created");
* a zvol delete or replace may first retire the zvol under a new name (the net, ADR 0006); a rename
  is a snapshot, clone and promote (``pool.dataset.rename`` exists only from 25.10).

Executor inputs come only from the plan's changes (each change's typed ``payload``, which holds no secret)
plus the CHAP secrets, which come from the ``DesiredStorage`` given to ``read``/``apply``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Generator
from typing import Any, Protocol

from netprov.adapters.truenas import normalise
from netprov.core.plan import Action, Address, Change
from netprov.core.storage import (
    PROP_MACHINE,
    PROP_MANAGED,
    SERVICE,
    ActualStorage,
    DesiredStorage,
    mark_comment,
    parse_mark,
    pick_portal,
)
from netprov.core.storage.payloads import (
    AuthCreate,
    AuthDelete,
    AuthKept,
    AuthUpdate,
    ExtentCreate,
    ExtentDelete,
    ExtentRef,
    ExtentUpdate,
    InitiatorCreate,
    InitiatorDelete,
    InitiatorUpdate,
    IscsiGlobal,
    Kept,
    MappingCreate,
    MappingDelete,
    MappingRef,
    MappingUpdate,
    Net,
    PortalCreate,
    Service,
    TargetCreate,
    TargetDelete,
    TargetGroup,
    TargetUpdate,
    ZvolCreate,
    ZvolDelete,
    ZvolRename,
    ZvolReplace,
    ZvolUpdate,
    extent_address,
    zvol_address,
)
from netprov.errors import ApiError, NetprovError

logger = logging.getLogger("netprov.storage")

#: How long an extent create keeps retrying while a new zvol's device node is missing.
DEVICE_WAIT = 10.0
#: How many tags an auth create tries before it gives up (each try: create, check the tag, delete if lost).
AUTH_RETRIES = 8
#: How long a new auth row waits for rows with higher ids on its tag (a racing apply's) to be deleted.
AUTH_SETTLE = 5.0
_DEVICE_MISSING = re.compile(r"(Device .* does not exist|Zvol .* does not exist)", re.IGNORECASE)


class Call:
    """One API call a step waits on (``job``: a job call, waited for to its end)."""

    __slots__ = ("job", "method", "params")

    def __init__(self, method: str, *params: Any, job: bool = False) -> None:
        self.method, self.params, self.job = method, params, job


class Sleep:
    """A pause a step asks for (a retry's backoff); the other chains go on meanwhile."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Op = Call | Sleep
Chain = Generator[Op, Any, None]


class ChangeFailed(NetprovError):
    """One change could not be carried out (the message is the report's error line)."""


class Satisfied(Exception):
    """The change turned out to be unnecessary at apply time (another apply did it); reported as skipped."""


class Nas(Protocol):
    """What the steps know of the NAS they drive (``TrueNASStorage`` has it): its release's traits."""

    core: bool
    user_properties: bool
    service_control: bool
    snapshot_ns: str

    def lookup_extra(self, properties: list[str]) -> dict: ...


class Steps:
    """The executors of one apply and what they share: the registry of ids (address -> id; an auth group:
    its tag) of the objects the chains refer to, the highest auth tag seen, the golden snapshots."""

    def __init__(self, st: Nas, changes: list[Change], actual: ActualStorage,
                 desired: DesiredStorage | None) -> None:
        self.st = st
        self.desired = desired
        self.reg: dict[Address, Any] = {}        # address -> id (an auth group: its tag) of each object
        self.tags = max([a["tag"] for a in actual.auths if a.get("tag") is not None] +
                        [g["auth"] for t in actual.targets for g in t.get("groups") or [] if g.get("auth")] + [0])
        self.lock = threading.Lock()
        for c in changes:
            ref = _registered(c.payload) if c.action in (Action.NOOP, Action.UPDATE) else None
            if ref is not None:
                self.reg[c.address] = ref
        self.snapshots = actual.snapshots

    # -- executors (generators: ``result = yield Call(...)``), one per payload type
    def run(self, c: Change) -> Chain:
        """Carry out one change (the executor its payload's type names)."""
        fn = EXECUTORS.get(type(c.payload))
        if fn is None:
            raise ChangeFailed(f"{c.address}: netprov cannot carry out a {c.kind} {c.action.value}")
        yield from fn(self, c, c.payload)

    def _ref(self, address: Address | None, what: str) -> Any:
        if address is None:
            return None
        if address not in self.reg:
            raise ChangeFailed(f"{what} {address} does not exist (it was not created)")
        return self.reg[address]

    def _verify(self, c: Change, method: str, filters: list, what: str) -> Chain:
        rows = yield Call(method, filters, {"select": ["id"]})
        if not rows:
            raise ChangeFailed(f"{c.address}: {what} no longer matches what the plan saw (changed on the NAS, or "
                               "its id was reused); run plan again")

    def _verify_extent(self, c: Change, x: ExtentRef | ExtentUpdate | ExtentDelete) -> Chain:
        name = x.verify_name if isinstance(x, ExtentUpdate) else x.name
        yield from self._verify(c, "iscsi.extent.query", [["id", "=", x.id], ["name", "=", name]],
                                f"extent {name} (id {x.id})")

    def _verify_mapping(self, c: Change, r: MappingRef) -> Chain:
        yield from self._verify(c, "iscsi.targetextent.query", [["id", "=", r.id], ["target", "=", r.target_id],
                                                                ["extent", "=", r.extent_id]], f"mapping {r.id}")

    # zvol ---------------------------------------------------------------------------------
    def _mark_fields(self, machine: str, path: str, update: bool) -> dict:
        if self.st.user_properties:
            props = [{"key": PROP_MANAGED, "value": "true"}, {"key": PROP_MACHINE, "value": machine}]
            return {"user_properties_update" if update else "user_properties": props}
        return {"comments": mark_comment(path)}

    def _verify_zvol(self, c: Change, path: str, *, marked: bool = True) -> Chain:
        """The zvol still exists (and, ``marked``, still carries netprov's mark)."""
        rows = yield Call("pool.dataset.query", [["id", "=", path]],
                           {"select": ["id", "type", "comments", "user_properties"],
                            "extra": self.st.lookup_extra([])})
        if not rows or rows[0].get("type") != "VOLUME":
            raise ChangeFailed(f"{c.address}: zvol no longer exists; run plan again")
        if not marked:
            return
        z = normalise.zvol(rows[0]) or {}
        props = z.get("props") or {}
        ok = str(props.get(PROP_MANAGED, "")).lower() == "true" or parse_mark(z.get("comments"))[0]
        if not ok:
            raise ChangeFailed(f"{c.address}: zvol is not marked as netprov's any more; run plan again")

    def _zvol_create(self, c: Change, p: ZvolCreate) -> Chain:
        if p.clone_from:
            yield Call(f"{self.st.snapshot_ns}.clone", {"snapshot": p.clone_from, "dataset_dst": p.path})
            upd = self._mark_fields(p.machine, p.path, update=True)
            src = int((self.snapshots.get(p.clone_from) or {}).get("volsize") or 0)
            if p.grow_to and p.grow_to > src:
                upd["volsize"] = p.grow_to
            yield Call("pool.dataset.update", p.path, upd)
            return
        yield Call("pool.dataset.create", {"name": p.path, "type": "VOLUME", "volsize": p.volsize,
                                            "volblocksize": p.volblocksize, "sparse": p.sparse,
                                            **self._mark_fields(p.machine, p.path, update=False)})

    def _zvol_update(self, c: Change, p: ZvolUpdate) -> Chain:
        yield from self._verify_zvol(c, p.path, marked=not p.set_mark)
        upd: dict[str, Any] = {}
        if p.set_volsize:
            upd["volsize"] = p.set_volsize
        if p.set_mark:
            upd.update(self._mark_fields(p.machine, p.path, update=True))
        if upd:
            yield Call("pool.dataset.update", p.path, upd)

    def _zvol_replace(self, c: Change, p: ZvolReplace) -> Chain:
        path = p.create.path
        yield from self._verify_zvol(c, path)
        # delete what the zvol delete would cascade to, explicitly: these deletes are refused by
        # TrueNAS while an initiator is logged in (the zvol delete's cascade would not be)
        for x in p.pre_delete:
            if isinstance(x, MappingRef):
                yield from self._verify_mapping(c, x)
                yield Call("iscsi.targetextent.delete", x.id, False)
            else:
                yield from self._verify_extent(c, x)
                yield Call("iscsi.extent.delete", x.id, False, False)
                self.reg.pop(extent_address(x.name), None)
        if p.net is not None:
            yield from self._retire_zvol(path, p.net)
        yield Call("pool.dataset.delete", path, {"recursive": False})
        yield from self._zvol_create(c, p.create)

    def _zvol_delete(self, c: Change, p: ZvolDelete) -> Chain:
        yield from self._verify_zvol(c, p.path)
        if p.net is not None:
            yield from self._retire_zvol(p.path, p.net)
        yield Call("pool.dataset.delete", p.path, {"recursive": False})

    def _retire_zvol(self, path: str, net: Net) -> Chain:
        """The net (ADR 0006): snapshot the zvol, clone the snapshot to the retired name, mark the clone as
        retired and promote it. The clone then owns the snapshot (and every older one) and the old zvol
        is a clone of it, so destroying the old zvol destroys no data: it stays in ``keep_as``."""
        snap, keep = net.snapshot, net.keep_as
        # Resumable: an apply that stopped part-way (or a rerun within the same second, which gives the same
        # names) finds some of the steps done. Each is taken up where it stopped, never done twice.
        rows = yield Call("pool.dataset.query", [["id", "=", keep]],
                           {"select": ["id", "type", "origin", "comments"], "extra": self.st.lookup_extra(["origin"])})
        kept = normalise.zvol(rows[0]) if rows else None
        if kept is not None and (kept.get("origin") not in (None, snap)
                                 or (kept.get("origin") is None and kept.get("comments") != net.comment)):
            raise ChangeFailed(f"{zvol_address(path)}: {keep} exists and is not the retired copy of {path}; "
                               "nothing was deleted")
        if kept is None:
            snaps = yield Call(f"{self.st.snapshot_ns}.query", [["id", "=", snap]], {"select": ["id", "name"]})
            if not snaps:
                yield Call(f"{self.st.snapshot_ns}.create", {"dataset": path, "name": snap.split("@", 1)[1]})
            yield Call(f"{self.st.snapshot_ns}.clone", {"snapshot": snap, "dataset_dst": keep})
        if kept is None or kept.get("comments") != net.comment:
            yield Call("pool.dataset.update", keep, {"comments": net.comment})
        if kept is None or kept.get("origin") == snap:
            yield Call("pool.dataset.promote", keep)

    def _zvol_rename(self, c: Change, p: ZvolRename) -> Chain:
        """``renamed_from``: snapshot the old zvol, clone it to the new name, promote the clone, point the
        machine's extents at it, then remove the old name (a clone of the new zvol by then: no data goes).
        Public API on every release: ``pool.dataset.rename`` exists only from 25.10 (ADR 0006)."""
        old, new, snap = p.old_path, p.path, p.snapshot
        yield from self._verify_zvol(c, old)
        if p.clone:
            yield Call(f"{self.st.snapshot_ns}.create", {"dataset": old, "name": snap.split("@", 1)[1]})
            yield Call(f"{self.st.snapshot_ns}.clone", {"snapshot": snap, "dataset_dst": new})
        upd: dict[str, Any] = self._mark_fields(p.machine, new, update=True)
        if p.set_volsize:
            upd["volsize"] = p.set_volsize
        yield Call("pool.dataset.update", new, upd)
        if p.clone:
            origin = snap   # just cloned from it: no need to ask
        else:               # resuming an interrupted rename: was the clone promoted already?
            rows = yield Call("pool.dataset.query", [["id", "=", new]],
                               {"select": ["id", "type", "origin"], "extra": self.st.lookup_extra(["origin"])})
            origin = (normalise.zvol(rows[0]) or {}).get("origin") if rows else None
        if origin and origin.split("@", 1)[0] == old:
            yield Call("pool.dataset.promote", new)
        for x in p.extents:
            yield from self._verify_extent(c, x)
            yield Call("iscsi.extent.update", x.id, {"disk": p.disk})
        yield Call("pool.dataset.delete", old, {"recursive": False})
        if p.clone and not p.keep_snapshot:
            yield Call(f"{self.st.snapshot_ns}.delete", f"{new}@{snap.split('@', 1)[1]}")

    # extent -------------------------------------------------------------------------------
    def _extent_create(self, c: Change, p: ExtentCreate) -> Chain:
        payload = {"name": p.name, "type": "DISK", "disk": p.disk, "serial": p.serial, "blocksize": p.blocksize,
                   "ro": False, "enabled": True, "comment": p.comment}
        waited, delay = 0.0, 0.1
        while True:
            try:
                res = yield Call("iscsi.extent.create", payload)
                break
            except ApiError as e:
                if not _DEVICE_MISSING.search(str(e)) or waited >= DEVICE_WAIT:
                    raise
                yield Sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        self.reg[c.address] = res["id"]

    def _extent_update(self, c: Change, p: ExtentUpdate) -> Chain:
        yield from self._verify_extent(c, p)
        res = yield Call("iscsi.extent.update", p.id, p.fields_to_set())
        self.reg[c.address] = res.get("id", p.id) if isinstance(res, dict) else p.id

    def _extent_delete(self, c: Change, p: ExtentDelete) -> Chain:
        yield from self._verify_extent(c, p)
        yield Call("iscsi.extent.delete", p.id, False, False)
        self.reg.pop(c.address, None)

    # initiator ----------------------------------------------------------------------------
    def _initiator_create(self, c: Change, p: InitiatorCreate) -> Chain:
        res = yield Call("iscsi.initiator.create", {"initiators": list(p.initiators), "comment": p.comment})
        self.reg[c.address] = res["id"]

    def _verify_initiator(self, c: Change, row_id: int, comment: str | None) -> Chain:
        yield from self._verify(c, "iscsi.initiator.query", [["id", "=", row_id], ["comment", "=", comment or ""]],
                                f"initiator group {row_id}")

    def _initiator_update(self, c: Change, p: InitiatorUpdate) -> Chain:
        yield from self._verify_initiator(c, p.id, p.verify_comment)
        upd: dict[str, Any] = {"initiators": list(p.initiators)}
        if p.comment is not None:
            upd["comment"] = p.comment
        yield Call("iscsi.initiator.update", p.id, upd)

    def _initiator_delete(self, c: Change, p: InitiatorDelete) -> Chain:
        yield from self._verify_initiator(c, p.id, p.verify_comment)
        yield Call("iscsi.initiator.delete", p.id)

    # auth ---------------------------------------------------------------------------------
    def _secret(self, machine: str) -> str:
        secret = self.desired.secret(machine) if self.desired is not None else None
        if not secret:
            raise ChangeFailed(f"CHAP secret for {machine} is not available (set the variable or file the "
                               "inventory names)")
        return secret

    def _auth_create(self, c: Change, p: AuthCreate) -> Chain:
        secret = self._secret(p.machine)
        self.reg[c.address] = yield from self._create_auth(c, p.user, secret)

    def _auth_update(self, c: Change, p: AuthUpdate) -> Chain:
        flt = [["id", "=", p.id], ["user", "=", p.verify_user]]
        if p.verify_tag is not None:          # a leftover row being reused: still on its tag, unused
            flt.append(["tag", "=", p.verify_tag])
        yield from self._verify(c, "iscsi.auth.query", flt, f"CHAP user {p.verify_user} (id {p.id})")
        if p.verify_tag is not None:
            yield from self._check_tag_unused(c, p.verify_tag, None)
        upd: dict[str, Any] = {}
        if p.user is not None:
            upd["user"] = p.user
        if p.clear_peer:
            upd.update(peeruser="", peersecret="")
        if p.set_secret:
            upd["secret"] = self._secret(p.machine)
        if upd:
            yield Call("iscsi.auth.update", p.id, upd)

    def _auth_delete(self, c: Change, p: AuthDelete) -> Chain:
        rows = yield Call("iscsi.auth.query", [["id", "in", list(p.ids)]], {"select": ["id", "tag", "user"]})
        if len(rows) != len(p.ids) or any(r.get("tag") != p.tag for r in rows) or (
                p.verify_user is not None and any(r.get("user") != p.verify_user for r in rows)):
            raise ChangeFailed(f"{c.address}: auth group tag {p.tag} changed on the NAS; run plan again")
        if p.unused or p.not_used_by:
            yield from self._check_tag_unused(c, p.tag, None if p.unused else list(p.not_used_by))
        for aid in p.ids:
            yield Call("iscsi.auth.delete", aid)

    def _check_tag_unused(self, c: Change, tag: int, target_ids: list[int] | None) -> Chain:
        """Fail unless no target (``target_ids``: none of these targets) uses auth ``tag`` right now."""
        flt = [["id", "in", list(target_ids)]] if target_ids is not None else []
        targets = yield Call("iscsi.target.query", flt, {"select": ["id", "name", "groups"]})
        users = [t.get("name") for t in targets or [] if any(g.get("auth") == tag for g in t.get("groups") or [])]
        if users:
            raise ChangeFailed(f"{c.address}: auth tag {tag} is used by target {users[0]} now; run plan again")

    def _next_tag(self, seen: int = 0) -> int:
        with self.lock:
            self.tags = max(self.tags, seen) + 1
            return self.tags

    def _create_auth(self, c: Change, user: str, secret: str) -> Generator[Op, Any, int]:
        """Create the machine's auth row on a tag no other row holds, and return that tag.

        Another apply (another host) may pick the same "highest tag + 1" at the same moment. After the
        create, the tag is queried again: when a row with a lower id holds it, this row lost (ids only
        grow, so the lowest id is the first row, which every later creator sees); it is deleted and a
        tag above everything now on the NAS is tried. When only rows with higher ids share it, they are
        waited for (their appliers delete them) for ``AUTH_SETTLE`` seconds, then this row gives way too.
        Only a tag that holds this row alone is returned, so only such a tag is bound to a target.
        See docs/adr/0005-chap-auth-tags.md.
        """
        tag = self._next_tag()
        for attempt in range(AUTH_RETRIES):
            res = yield Call("iscsi.auth.create", {"tag": tag, "user": user, "secret": secret,
                                                    "peeruser": "", "peersecret": ""})
            if not isinstance(res, dict) or not isinstance(res.get("id"), int):
                raise ChangeFailed(f"{c.address}: the NAS answered the auth create without the row's id")
            mine = res["id"]
            waited, delay = 0.0, 0.05
            while True:
                rows = yield Call("iscsi.auth.query", [["tag", "=", tag]], {"select": ["id", "tag"]})
                others = [r["id"] for r in rows or [] if r.get("id") != mine]
                if not others:
                    return tag
                if min(others) < mine or waited >= AUTH_SETTLE:
                    break
                yield Sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.5)
            logger.info("%s: auth tag %s is also held by row(s) %s; moving to another tag", c.address, tag, others)
            yield Call("iscsi.auth.delete", mine)
            tags = yield Call("iscsi.auth.query", [], {"select": ["tag"]})
            targets = yield Call("iscsi.target.query", [], {"select": ["groups"]})
            seen = max([r.get("tag") or 0 for r in tags or []] +
                       [g.get("auth") or 0 for t in targets or [] for g in t.get("groups") or []] + [0])
            tag = self._next_tag(seen)
        raise ChangeFailed(f"{c.address}: could not get an auth tag of its own after {AUTH_RETRIES} tries (other "
                           "applies keep taking the same tags); run apply again")

    # target -------------------------------------------------------------------------------
    def _groups(self, groups: tuple[TargetGroup, ...]) -> list[dict]:
        return [{"portal": self._ref(g.portal, "portal"), "initiator": self._ref(g.initiator, "initiator group"),
                 "authmethod": g.authmethod, "auth": self._ref(g.auth, "auth group")} for g in groups]

    def _target_create(self, c: Change, p: TargetCreate) -> Chain:
        groups = self._groups(p.groups)
        res = yield Call("iscsi.target.create", {"name": p.name, "alias": None, "mode": "ISCSI", "groups": groups})
        self.reg[c.address] = res["id"]
        # groups that did not stick: a quirk from the old API notes, not found in the middleware source
        # (middleware TS-25.04.2.4 src/middlewared/middlewared/plugins/iscsi_/targets.py:134 saves every group
        # it validated); kept as a guard
        if len(res.get("groups") or []) != len(groups):
            yield Call("iscsi.target.update", res["id"], {"groups": groups})

    def _verify_target(self, c: Change, target_id: int, name: str) -> Chain:
        yield from self._verify(c, "iscsi.target.query", [["id", "=", target_id], ["name", "=", name]],
                                f"target {name} (id {target_id})")

    def _target_update(self, c: Change, p: TargetUpdate) -> Chain:
        yield from self._verify_target(c, p.id, p.verify_name)
        upd: dict[str, Any] = {}
        if p.name is not None:
            upd["name"] = p.name
        if p.groups is not None:
            upd["groups"] = self._groups(p.groups)
        if p.mode is not None:
            upd["mode"] = p.mode
        if upd:
            yield Call("iscsi.target.update", p.id, upd)

    def _target_delete(self, c: Change, p: TargetDelete) -> Chain:
        yield from self._verify_target(c, p.id, p.name)
        yield Call("iscsi.target.delete", p.id, False)
        self.reg.pop(c.address, None)

    # mapping ------------------------------------------------------------------------------
    def _mapping_create(self, c: Change, p: MappingCreate) -> Chain:
        res = yield Call("iscsi.targetextent.create", {"target": self._ref(p.target, "target"),
                                                        "extent": self._ref(p.extent, "extent"), "lunid": p.lunid})
        self.reg[c.address] = res["id"]

    def _mapping_update(self, c: Change, p: MappingUpdate) -> Chain:
        yield from self._verify_mapping(c, p.ref)
        yield Call("iscsi.targetextent.update", p.ref.id, {"lunid": p.lunid})

    def _mapping_delete(self, c: Change, p: MappingDelete) -> Chain:
        yield from self._verify_mapping(c, p.ref)
        yield Call("iscsi.targetextent.delete", p.ref.id, False)

    # shared -------------------------------------------------------------------------------
    def _portal_create(self, c: Change, p: PortalCreate) -> Chain:
        if self.st.core:
            payload = {"comment": p.comment, "listen": [{"ip": p.ip, "port": p.port}],
                       "discovery_authmethod": "NONE", "discovery_authgroup": None}
        else:
            payload = {"comment": p.comment, "listen": [{"ip": p.ip}]}
        try:
            res = yield Call("iscsi.portal.create", payload)
        except ApiError:
            # another apply may have created it a moment ago ("IP is already in use"): use that one
            found = yield from self._portal_listening(p.ip, p.port)
            if found is None:
                raise
            self.reg[c.address] = found
            raise Satisfied(f"not created: another apply created a portal on {p.ip}:{p.port} meanwhile "
                             f"(id {found}); using it")
        self.reg[c.address] = res["id"]

    def _portal_listening(self, ip: str, port: int) -> Generator[Op, Any, int | None]:
        """The id of a portal listening on ip:port (or on the wildcard address), as the planner chooses."""
        portals = yield Call("iscsi.portal.query", [], {"select": ["id", "listen"]})
        cfg = yield Call("iscsi.global.config")
        gport = (cfg or {}).get("listen_port") if isinstance(cfg, dict) else None
        found = pick_portal(portals or [], gport, ip, port)
        return None if found is None else found["id"]

    def _iscsi_global(self, c: Change, p: IscsiGlobal) -> Chain:
        raise ChangeFailed(f"{c.address}: netprov does not change the NAS-wide basename")
        yield  # a generator, like every executor

    def _service(self, c: Change, p: Service) -> Chain:
        if p.enable:
            yield Call("service.update", SERVICE, {"enable": True})
        if p.start:
            # look again right before: starting a running service restarts it on CORE (drops sessions)
            rows = yield Call("service.query", [["service", "=", SERVICE]], {"select": ["service", "state"]})
            state = (rows[0].get("state") if rows else None) or "UNKNOWN"
            if state != "RUNNING":
                if self.st.service_control:
                    ok = yield Call("service.control", "START", SERVICE, {"silent": False}, job=True)
                elif self.st.core:
                    ok = yield Call("service.start", SERVICE)
                else:
                    ok = yield Call("service.start", SERVICE, {"silent": False})
                if ok is False:
                    raise ChangeFailed("the iSCSI service failed to start")


#: Which executor carries out a change: by its payload's type (a no-op's ``Kept``/``AuthKept`` needs none).
EXECUTORS: dict[type, Callable[..., Chain]] = {
    ZvolCreate: Steps._zvol_create, ZvolUpdate: Steps._zvol_update, ZvolRename: Steps._zvol_rename,
    ZvolReplace: Steps._zvol_replace, ZvolDelete: Steps._zvol_delete,
    ExtentCreate: Steps._extent_create, ExtentUpdate: Steps._extent_update, ExtentDelete: Steps._extent_delete,
    InitiatorCreate: Steps._initiator_create, InitiatorUpdate: Steps._initiator_update,
    InitiatorDelete: Steps._initiator_delete,
    AuthCreate: Steps._auth_create, AuthUpdate: Steps._auth_update, AuthDelete: Steps._auth_delete,
    TargetCreate: Steps._target_create, TargetUpdate: Steps._target_update, TargetDelete: Steps._target_delete,
    MappingCreate: Steps._mapping_create, MappingUpdate: Steps._mapping_update,
    MappingDelete: Steps._mapping_delete,
    PortalCreate: Steps._portal_create, IscsiGlobal: Steps._iscsi_global, Service: Steps._service,
}


def _registered(p: object) -> int | None:
    """What later changes of a chain refer to an existing object by: its id (an auth group: its tag)."""
    if isinstance(p, AuthKept | AuthUpdate):
        return p.tag
    if isinstance(p, Kept | ExtentUpdate | InitiatorUpdate | TargetUpdate):
        return p.id
    if isinstance(p, MappingUpdate):
        return p.ref.id
    return None
