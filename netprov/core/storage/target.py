"""The target of a machine: one group tying the portal, its initiator group and (with CHAP) its auth group.

TrueNAS targets have no comment: a target is the machine's when its group uses the machine's initiator
group or it maps the machine's extent (``ownership.py``). The target is looked up (``find_target``)
before the auth group is planned, because the machine's auth group is the one its target uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from netprov.core.plan import Action, Address, Change
from netprov.core.storage.auth import AuthStep
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import DesiredMachine
from netprov.core.storage.payloads import (
    Kept,
    TargetCreate,
    TargetDelete,
    TargetGroup,
    TargetUpdate,
    auth_address,
    initiator_address,
    target_address,
)


@dataclass
class TargetFind(Step):
    row: dict | None = None                                # the machine's target as it is (None: none yet)
    owned: list[dict] = field(default_factory=list)        # every target the machine owns


def find_target(cx: Ctx, m: DesiredMachine) -> TargetFind:
    ix = cx.ix
    t = ix.target_by_name.get(m.target)
    found = TargetFind(owned=ix.targets_of.get(m.name, []))
    adoptable = t is not None and ix.target_owner.get(t["id"]) is None and cx.p.adopt
    if t is not None and ix.target_owner.get(t["id"]) != m.name and not adoptable:
        other = ix.target_owner.get(t["id"])
        found.changes.append(cx.change(
            "target", target_address(m.target), Action.UPDATE, "a target with this name exists",
            TargetUpdate(t["id"], t["name"]), machine=m.name, before={"name": t["name"], "managed": False},
            after={"name": m.target, "managed": True},
            refused=(f"target {t['name']} (id {t['id']}) is not managed by netprov (its group does not use a "
                     "netprov initiator group); rename it or plan with adopt" if other is None else
                     f"target {t['name']} belongs to netprov machine {other}")))
        found.ok = False
        return found
    found.row = t if t is not None else next((x for x in found.owned if x["name"] != m.target), None)  # renamed
    return found


def plan_target(cx: Ctx, m: DesiredMachine, found: TargetFind, auth: AuthStep) -> Step:
    step = Step()
    t = found.row
    groups = (TargetGroup(cx.portal_address, initiator_address(m.name), "CHAP" if m.chap_user else "NONE",
                          auth_address(m.name) if m.chap_user else None),)
    addr = target_address(m.target)
    if t is None:
        step.changes.append(cx.change("target", addr, Action.CREATE, "target does not exist",
                                      TargetCreate(m.target, groups), machine=m.name))
    else:
        step.changes.append(_existing(cx, m, t, groups, auth))
    for extra in found.owned:
        if t is None or extra["id"] != t["id"]:
            step.deletes.append(delete_target(cx, extra, m.name, "a second netprov target for this machine",
                                              gated=False))
    return step


def _existing(cx: Ctx, m: DesiredMachine, t: dict, groups: tuple[TargetGroup, ...], auth: AuthStep) -> Change:
    ix = cx.ix
    addr = target_address(m.target)
    want = {"name": m.target, "mode": "ISCSI", "groups": [g.display() for g in groups]}
    shown = [{"portal": _text(cx.portal_label(g.get("portal"))), "initiator": _text(cx.initiator_label(g.get("initiator"))),
              "authmethod": g.get("authmethod") or "NONE", "auth": _text(auth.label(m.name, g.get("auth")))}
             for g in t.get("groups") or []]
    before = {"name": t["name"], "mode": t.get("mode") or "ISCSI", "groups": shown}
    managed = ix.target_owner.get(t["id"]) == m.name
    b, a = cx.diff(before, want, {"name": t["name"]})
    sets = {k for k, v in want.items() if before.get(k) != v}
    if not managed:
        b["managed"], a["managed"] = False, True
    if not sets and managed:
        return cx.change("target", addr, Action.NOOP, "target exists with the expected group", Kept(t["id"]),
                         machine=m.name)
    renamed = "name" in sets and m.name in ix.renamed
    why = []
    if renamed:
        why.append(f"renamed from {ix.renamed[m.name]} (renamed_from): target {t['name']} -> {m.target}; its IQN "
                   "changes and the boot script follows")
    elif "name" in sets:
        why.append(f"renamed to {t['name']} on the NAS")
    if "groups" in sets:
        why.append("portal/initiator/auth group differs")
    if "mode" in sets:
        why.append(f"mode {before['mode']}")
    reason = ("adopt: link the existing target to netprov's initiator group" if not managed
              else ("" if renamed else "drift: ") + "; ".join(why))
    payload = TargetUpdate(t["id"], t["name"], name=m.target if "name" in sets else None,
                           groups=groups if sets & {"groups", "mode"} else None,
                           mode="ISCSI" if "mode" in sets else None)
    return cx.change("target", addr, Action.UPDATE, reason, payload, machine=m.name, before=b, after=a)


def _text(a: Address | None) -> str | None:
    return None if a is None else str(a)


def delete_target(cx: Ctx, t: dict, machine: str, reason: str, gated: bool) -> Change:
    refused = cx.delete_refusal(cx.ix.sessions_by_target.get(t["name"], []), gated, f"target {t['name']}")
    return cx.change("target", target_address(t["name"]), Action.DELETE, reason, TargetDelete(t["id"], t["name"]),
                     machine=machine, before={"name": t["name"]}, refused=refused)
