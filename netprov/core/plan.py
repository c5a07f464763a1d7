"""The plan: a value describing every change, built before anything is touched.

Vocabulary (shared by the storage half and the boot-file half):

- ``Action`` is closed: CREATE, UPDATE, REPLACE, DELETE, NOOP.
- ``Change`` says what happens to one object (``address``), why (``reason``), and
  the ``before``/``after`` of its *managed* fields (secrets already masked).
  ``refused`` is set when apply must not do it without an explicit flag or at all
  (a shrink, an unmanaged name clash, a target in use); a refused change stays in
  the plan so the user sees it.
- ``Plan`` holds the changes of every system (``storage:<name>``, ``pxe:<name>``)
  in execution order, plus a fingerprint of the actual state each system was read
  in: apply re-reads and refuses a plan whose fingerprints no longer match.

Before/after per action: CREATE before=None; DELETE after=None; UPDATE/REPLACE
both set (only the fields that differ, plus identity); NOOP both None.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

FORMAT_VERSION = "1.2"


@dataclass(frozen=True, order=True)
class Address:
    """The stable, human-readable name of one object a change is about.

    ``kind[name]`` (``zvol[tank/netboot/israfel]``, ``pxe.tftp[hosts/m1.conf]``), with ``#id`` when
    several rows share a name and one of them is meant (``auth[m1]#12``), or ``kind#id`` when a row
    has no name netprov can tell (``initiator#3``). Built only through this type; its text is what
    plans, reports and goldens show.
    """

    kind: str
    name: str | None = None
    id: int | None = None

    def __str__(self) -> str:
        text = self.kind if self.name is None else f"{self.kind}[{self.name}]"
        return text if self.id is None else f"{text}#{self.id}"

    @classmethod
    def parse(cls, text: str) -> Address:
        m = _ADDRESS_RE.fullmatch(text)
        if not m:
            raise ValueError(f"not a change address: {text!r}")
        return cls(m["kind"], m["name"], int(m["id"]) if m["id"] else None)


_ADDRESS_RE = re.compile(r"(?P<kind>[a-z][a-z0-9_.-]*)(?:\[(?P<name>.*)\])?(?:#(?P<id>[0-9]+))?", re.S)


class Payload:
    """Base of the typed, frozen payloads the planner hands the executor (one class per change kind).

    Subclasses are ``@dataclass(frozen=True)``; ``to_json`` is what plans and goldens show (no
    secret ever lives in a payload: a CHAP secret is referred to, never carried).
    """

    def to_json(self) -> dict[str, Any]:
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    def sides(self, action: Action) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
        """``(before, after)`` as views show them when this payload is their one source (the change's
        own ``before``/``after`` then stay None); None when the change carries them itself."""
        return None


def _json_value(v: Any) -> Any:
    """A payload field as JSON: enums by value, addresses as text, nested dataclasses as objects."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Address):
        return str(v)
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: _json_value(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass(frozen=True)
class Change:
    system: str                      # "storage:gaghiel" | "pxe:pihole"
    kind: str                        # zvol | extent | target | targetextent | initiator | auth | portal
                                     # | iscsi_global | service | file | activation
    address: Address                 # stable, human-readable: str() gives "zvol[tank/netboot/israfel]"
    action: Action
    reason: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    machine: str | None = None
    refused: str | None = None       # why apply will not do this (without a flag, or at all)
    diff: str | None = None          # unified diff (files), secrets masked
    cascade: tuple[Address, ...] = ()  # what a delete takes with it
    shared: bool = False             # an object every machine of its system needs (portal, dnsmasq config ...)
    payload: Payload | None = None   # what the executor needs, typed per kind (no secrets)

    def __post_init__(self) -> None:
        if self.payload is not None and self.payload.sides(self.action) is not None \
                and (self.before is not None or self.after is not None):
            raise ValueError(f"{self.address}: before/after come from the payload; they travel once")

    @property
    def is_change(self) -> bool:
        return self.action is not Action.NOOP

    @property
    def sides(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(before, after)`` as plans and views show them: from the payload when it is their source."""
        derived = self.payload.sides(self.action) if self.payload is not None else None
        return derived if derived is not None else (self.before, self.after)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "payload"}
        out["address"] = str(self.address)
        out["before"], out["after"] = self.sides
        out["action"] = self.action.value
        out["cascade"] = [str(a) for a in self.cascade]
        if self.payload is not None:
            out["payload"] = self.payload.to_json()
        return out


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    fingerprints: dict[str, str]     # system -> fingerprint of the actual state the plan was made from
    inventory: str = ""
    inventory_sha256: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # allow_destroy, adopt, targets ...
    format_version: str = FORMAT_VERSION

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.is_change]

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.refused]

    @property
    def has_changes(self) -> bool:
        return any(c.is_change for c in self.changes)

    def counts(self) -> dict[str, dict[str, int]]:
        """system -> {create, update, replace, delete} counts (pending changes only)."""
        out: dict[str, dict[str, int]] = {}
        for c in self.changes:
            bucket = out.setdefault(c.system, {a.value: 0 for a in Action if a is not Action.NOOP})
            if c.is_change:
                bucket[c.action.value] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "inventory": self.inventory,
            "inventory_sha256": self.inventory_sha256,
            "options": self.options,
            "fingerprints": self.fingerprints,
            "summary": self.counts(),
            "changes": [c.to_json() for c in self.changes],
        }


def fingerprint(data: Any) -> str:
    """A stable hash of a JSON-serialisable value (actual state, after normalisation)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()
