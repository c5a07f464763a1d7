"""The driver: shared objects first, then each machine's chain, then orphans, then the service."""

from __future__ import annotations

from netprov.core.plan import Change
from netprov.core.storage.auth import plan_auth
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.extent import plan_extent
from netprov.core.storage.initiator import plan_initiator
from netprov.core.storage.mapping import plan_mapping
from netprov.core.storage.model import KINDS, ActualStorage, DesiredMachine, DesiredStorage, StoragePolicy
from netprov.core.storage.orphans import plan_orphan
from netprov.core.storage.shared import mark_shared, plan_global, plan_portal, plan_service
from netprov.core.storage.target import find_target, plan_target
from netprov.core.storage.zvol import plan_zvol


def plan_storage(desired: DesiredStorage, actual: ActualStorage, policy: StoragePolicy | None = None) -> list[Change]:
    """Compare and return the changes in execution order (see the package docstring). Pure, O(N)."""
    policy = policy or StoragePolicy()
    cx = Ctx(desired, actual, policy)
    wanted = policy.machines
    served = None if wanted is None else sorted(set(wanted) & set(desired.machines))
    out = mark_shared([plan_global(cx), plan_portal(cx)], served)
    for name in sorted(desired.machines):
        if wanted is None or name in wanted:
            out += plan_machine(cx, desired.machines[name])
    for name in sorted(cx.ix.machines_with_objects() - set(desired.machines)):
        if wanted is None or name in wanted:
            out += plan_orphan(cx, name)
    return out + mark_shared([plan_service(cx)], served)


def plan_machine(cx: Ctx, m: DesiredMachine) -> list[Change]:
    """One machine's chain: zvol, extent, initiator group, (target found,) auth, target, mapping; then its
    deletes in reverse dependency order. A step that is not ``ok`` (refused) ends the chain there."""
    steps: list[Step] = [zvol := plan_zvol(cx, m)]
    if zvol.ok:
        steps.append(extent := plan_extent(cx, m, zvol.replaced, zvol.exists))
        if extent.ok:
            steps += [plan_initiator(cx, m), found := find_target(cx, m)]
            if found.ok:
                steps.append(auth := plan_auth(cx, m, found.row))
                steps += [plan_target(cx, m, found, auth),
                          plan_mapping(cx, m, found.row, extent.extent_id, zvol.replaced)]
    order = {k: i for i, k in enumerate(KINDS)}
    deletes = sorted((c for s in steps for c in s.deletes), key=lambda c: -order[c.kind])
    return [c for s in steps for c in s.changes] + deletes
