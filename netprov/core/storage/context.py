"""What every per-kind planner reads: the desired and actual state, the policy, the index of what the NAS
holds, and how a change is made (``Ctx.change``) and how a chain step reports (``Step``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netprov.core.plan import Action, Address, Change, Payload
from netprov.core.storage.model import ActualStorage, DesiredStorage, StoragePolicy, pick_portal
from netprov.core.storage.ownership import Index, build_index
from netprov.core.storage.payloads import (
    check_agrees,
    initiator_address,
    portal_address,
    portal_id_address,
)


@dataclass
class Step:
    """What one planner of a machine's chain gives back: its forward changes, its deletes (run after the
    chain, in reverse order), and ``ok``: whether the chain below it may be planned (false after a refused
    change nothing else of the machine can follow)."""
    changes: list[Change] = field(default_factory=list)
    deletes: list[Change] = field(default_factory=list)
    ok: bool = True


class Ctx:
    def __init__(self, d: DesiredStorage, a: ActualStorage, policy: StoragePolicy) -> None:
        self.d, self.a, self.p = d, a, policy
        self.ix: Index = build_index(d, a)
        self.system = d.system
        self.portal_address = portal_address(d.portal_ip, d.portal_port)
        self.global_port = (a.global_ or {}).get("listen_port")
        self.portal = pick_portal(a.portals, self.global_port, d.portal_ip, d.portal_port)
        self.chap_users: dict[str, int] = {}
        for dm in d.machines.values():
            if dm.chap_user:
                self.chap_users[dm.chap_user] = self.chap_users.get(dm.chap_user, 0) + 1

    def change(self, kind: str, address: Address, action: Action, reason: str, payload: Payload, *,
               machine: str | None = None, before: dict | None = None, after: dict | None = None,
               refused: str | None = None, cascade: Iterable[Address] = ()) -> Change:
        """One change. A create's ``after`` comes from its payload (``Change.sides``); an update's is checked
        against it."""
        if action in (Action.UPDATE, Action.REPLACE) and refused is None:
            check_agrees(payload, after)
        return Change(system=self.system, kind=kind, address=address, action=action, reason=reason,
                      before=before, after=after, machine=machine, refused=refused, cascade=tuple(cascade),
                      payload=payload)

    @staticmethod
    def diff(before: dict, after: dict, ident: dict) -> tuple[dict, dict]:
        """``(before, after)`` holding ``ident`` and only the fields that differ."""
        b = dict(ident)
        a = dict(ident)
        for k, v in after.items():
            if before.get(k) != v:
                b[k] = before.get(k)
                a[k] = v
        return b, a

    def listen_text(self, li: dict[str, Any]) -> str:
        return f"{li.get('ip')}:{li.get('port') or self.global_port or 3260}"

    def portal_label(self, pid: int | None) -> Address | None:
        """How a target group's portal is shown: the address of the portal netprov uses, or another's."""
        if pid is None:
            return None
        p = self.ix.portal_by_id.get(pid)
        if self.portal is not None and p is not None and p["id"] == self.portal["id"]:
            return self.portal_address
        if p is None:
            return portal_id_address(pid)
        li = (p.get("listen") or [{}])[0]
        return portal_address(li.get("ip"), li.get("port") or self.global_port or 3260)

    def initiator_label(self, iid: int | None) -> Address | None:
        if iid is None:
            return None
        owner = self.ix.initiator_owner.get(iid)
        return initiator_address(owner) if owner else initiator_address(None, iid)

    def delete_refusal(self, sessions: list[str], gated: bool, what: str) -> str | None:
        """Why a delete may not run: a logged-in session (never), or a removed machine without --allow-destroy."""
        if sessions:
            return (f"{what} has an active iSCSI session from {', '.join(sorted(sessions))}; "
                    "netprov never deletes a disk in use")
        if gated and not self.p.allow_destroy:
            return "the machine is no longer in the inventory; deleting its disk needs --allow-destroy"
        return None
