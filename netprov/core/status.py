"""`netprov status`: the plan's facts seen per machine (pure: no I/O).

Status is not a second reader: it takes the same plan `netprov plan` makes (one NAS read, one PXE
read) and regroups it. A no-op change is an object that is there and right; a create is a missing
object; an update is drift; a delete is something netprov would remove. Sessions come from the same
NAS read (``iscsi.global.sessions``): a machine is booted when some initiator is logged in to its
target right now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netprov.core.plan import Action, Address, Change

#: What each plan action means for a NAS object / a boot file.
#: (A replace is drift the planner can only fix by re-making the object: drift too.)
NAS_STATE = {Action.NOOP: "present", Action.CREATE: "missing", Action.UPDATE: "drifted", Action.REPLACE: "drifted",
             Action.DELETE: "extra"}
FILE_STATE = {Action.NOOP: "current", Action.CREATE: "missing", Action.UPDATE: "stale", Action.REPLACE: "stale",
              Action.DELETE: "leftover"}


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    address: str
    state: str                  # present|missing|drifted|extra (NAS); current|missing|stale|leftover (files)
    detail: str = ""            # the planner's reason when not as wanted
    refused: str | None = None  # why apply would not fix it (a flag to pass, or never)

    @property
    def ok(self) -> bool:
        return self.state in ("present", "current")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "state": self.state, "detail": self.detail,
                "refused": self.refused}


@dataclass(frozen=True)
class IscsiSession:
    initiator: str
    address: str | None         # where it logged in from (initiator_addr), when the NAS says
    expected: bool              # the machine's own initiator IQN (else someone else is on its disk)

    def to_json(self) -> dict[str, Any]:
        return {"initiator": self.initiator, "address": self.address, "expected_initiator": self.expected}


@dataclass(frozen=True)
class MachineStatus:
    name: str
    storage: str | None
    pxe_server: str | None
    in_inventory: bool
    nas: tuple[ObjectStatus, ...] = ()
    files: tuple[ObjectStatus, ...] = ()
    sessions: tuple[IscsiSession, ...] = ()

    @property
    def converged(self) -> bool:
        return self.in_inventory and all(o.ok for o in (*self.nas, *self.files))

    @property
    def booted(self) -> bool:
        return bool(self.sessions)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "storage": self.storage, "pxe_server": self.pxe_server,
                "in_inventory": self.in_inventory, "converged": self.converged, "booted": self.booted,
                "sessions": [s.to_json() for s in self.sessions],
                "nas": [o.to_json() for o in self.nas], "boot_files": [o.to_json() for o in self.files]}


@dataclass(frozen=True)
class Status:
    machines: tuple[MachineStatus, ...]
    shared: tuple[ObjectStatus, ...] = field(default=())   # portal, service, dnsmasq config, boot.ipxe ...

    @property
    def converged(self) -> bool:
        return all(m.converged for m in self.machines) and all(o.ok for o in self.shared)

    def to_json(self) -> dict[str, Any]:
        return {"converged": self.converged, "machines": [m.to_json() for m in self.machines],
                "shared": [o.to_json() for o in self.shared]}


def _object(c: Change) -> ObjectStatus:
    table = FILE_STATE if c.system.startswith("pxe:") and c.kind == "file" else NAS_STATE
    detail = "" if c.action is Action.NOOP else c.reason
    if c.cascade and c.action is not Action.NOOP:
        detail += f" (with it: {', '.join(map(str, c.cascade))})"
    return ObjectStatus(kind=c.kind, address=str(c.address), state=table[c.action], detail=detail, refused=c.refused)


def target_sessions(sessions: Iterable[Mapping[str, Any]], basename: str, target: str,
                    initiator_iqn: str) -> tuple[IscsiSession, ...]:
    """The sessions logged in to ``target`` (short name; the NAS reports ``basename:target``)."""
    out = []
    for s in sessions:
        t = s.get("target") or ""
        short = t[len(basename) + 1:] if basename and t.startswith(basename + ":") else t
        if short != target and t != target:
            continue
        initiator = s.get("initiator") or "?"
        out.append(IscsiSession(initiator, s.get("initiator_addr") or None, initiator == initiator_iqn))
    return tuple(sorted(out, key=lambda x: (x.initiator, x.address or "")))


def summarise(changes: Iterable[Change], machines: Iterable[Any], storage: Mapping[str, tuple[Any, Any]]) -> Status:
    """Regroup a plan per machine.

    ``changes``: the plan's changes (no-ops included); ``machines``: the inventory's machines
    (``name``, ``storage``, ``pxe_server``); ``storage``: storage name -> (DesiredStorage, ActualStorage)
    as the plan read them. Machines netprov would delete (on the NAS, not in the inventory) appear too.
    """
    changes = list(changes)
    inv = {m.name: m for m in machines}
    by_machine: dict[str, list[Change]] = {}
    shared: list[ObjectStatus] = []
    for c in changes:
        if c.machine is None:
            shared.append(_object(c))
        else:
            by_machine.setdefault(c.machine, []).append(c)
    out = []
    for name in sorted(set(inv) | set(by_machine)):
        m = inv.get(name)
        own = by_machine.get(name, [])
        st_name = m.storage if m is not None else next((c.system.split(":", 1)[1] for c in own
                                                        if c.system.startswith("storage:")), None)
        sessions: tuple[IscsiSession, ...] = ()
        if st_name in storage:
            desired, actual = storage[st_name][:2]
            dm = desired.machines.get(name)
            basename = (actual.global_ or {}).get("basename") or desired.basename
            target = dm.target if dm is not None else next(
                (Address.parse(str(c.address)).name for c in own if c.kind == "target"), name)
            sessions = target_sessions(actual.sessions, basename, target, dm.initiator_iqn if dm else "")
        out.append(MachineStatus(
            name=name, storage=st_name, pxe_server=m.pxe_server if m is not None else None, in_inventory=m is not None,
            nas=tuple(_object(c) for c in own if c.system.startswith("storage:")),
            files=tuple(_object(c) for c in own if c.system.startswith("pxe:")), sessions=sessions))
    return Status(tuple(out), tuple(shared))


def _count(objs: tuple[ObjectStatus, ...], ok_word: str) -> str:
    if not objs:
        return "none"
    bad = [o for o in objs if not o.ok]
    if not bad:
        return f"{len(objs)} {ok_word}"
    states: dict[str, int] = {}
    for o in bad:
        states[o.state] = states.get(o.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + f" (of {len(objs)})"


def _booted(m: MachineStatus) -> str:
    if not m.sessions:
        return "no"
    parts = []
    for s in m.sessions:
        who = s.address or "address unknown"
        parts.append(who if s.expected else f"{who} as {s.initiator} (not its initiator)")
    return "yes: " + ", ".join(parts)


def status_lines(status: Status) -> list[str]:
    """The text view: a table, one row a machine, then what differs, object by object."""
    rows = [("MACHINE", "NAS", "BOOT FILES", "BOOTED")]
    for m in status.machines:
        name = m.name if m.in_inventory else f"{m.name} (not in inventory)"
        rows.append((name, _count(m.nas, "present"), _count(m.files, "current"), _booted(m)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    details = []
    for m in status.machines:
        for o in (*m.nas, *m.files):
            if not o.ok:
                details.append(f"  {m.name}: {o.address} {o.state}" + (f": {o.detail}" if o.detail else "")
                               + (f" [refused: {o.refused}]" if o.refused else ""))
    for o in status.shared:
        if not o.ok:
            details.append(f"  shared: {o.address} {o.state}" + (f": {o.detail}" if o.detail else "")
                           + (f" [refused: {o.refused}]" if o.refused else ""))
    if details:
        lines += ["", "Differs from the inventory (`netprov plan` shows the changes):", *details]
    booted = sum(1 for m in status.machines if m.booted)
    good = sum(1 for m in status.machines if m.converged)
    lines += ["", f"{good} of {len(status.machines)} machine(s) as the inventory says; {booted} booted now."
              + ("" if all(o.ok for o in status.shared) else " Shared objects differ.")]
    return lines
