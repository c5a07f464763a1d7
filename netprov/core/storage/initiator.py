"""The initiator group of a machine: admits only the machine's initiator IQN."""

from __future__ import annotations

from netprov.core.plan import Action
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import DesiredMachine
from netprov.core.storage.ownership import mark_comment, parse_mark
from netprov.core.storage.payloads import (
    InitiatorCreate,
    InitiatorDelete,
    InitiatorUpdate,
    Kept,
    initiator_address,
)


def plan_initiator(cx: Ctx, m: DesiredMachine) -> Step:
    ix = cx.ix
    step = Step()
    addr = initiator_address(m.name)
    inits = ix.initiators_of.get(m.name, [])
    want = [m.initiator_iqn]
    comment = mark_comment(m.zvol)
    if not inits:
        step.changes.append(cx.change("initiator", addr, Action.CREATE, "initiator group does not exist",
                                      InitiatorCreate((m.initiator_iqn,), comment), machine=m.name))
        return step
    # keep the group the machine's target already uses (drop the others)
    used = {g.get("initiator") for t in ix.targets_of.get(m.name, []) for g in t.get("groups") or []}
    inits = sorted(inits, key=lambda r: (r["id"] not in used, r["id"]))
    i0 = inits[0]
    before = {"initiators": sorted(i0.get("initiators") or [])}
    remark = m.name in ix.renamed and parse_mark(i0.get("comment"))[1] != m.zvol   # renamed_from
    if before["initiators"] != want or remark:
        why = ("admits every initiator (empty list)" if not before["initiators"] else
               "admits " + ", ".join(before["initiators"]))
        reason = (f"drift: initiator group {why}; only {m.initiator_iqn} may log in"
                  if before["initiators"] != want else "")
        if remark:
            reason = f"renamed from {ix.renamed[m.name]} (renamed_from): mark follows the zvol" + (
                f"; initiator {', '.join(before['initiators']) or '(any)'} -> {m.initiator_iqn}" if reason else "")
        payload = InitiatorUpdate(i0["id"], i0.get("comment"), (m.initiator_iqn,), comment if remark else None)
        step.changes.append(cx.change("initiator", addr, Action.UPDATE, reason, payload, machine=m.name,
                                      before=before, after={"initiators": want}))
    else:
        step.changes.append(cx.change("initiator", addr, Action.NOOP, f"admits only {m.initiator_iqn}",
                                      Kept(i0["id"]), machine=m.name))
    for extra in inits[1:]:
        step.deletes.append(cx.change("initiator", initiator_address(m.name, extra["id"]), Action.DELETE,
                                      "a second netprov initiator group for this machine",
                                      InitiatorDelete(extra["id"], extra.get("comment")), machine=m.name,
                                      before={"initiators": sorted(extra.get("initiators") or [])}))
    return step
