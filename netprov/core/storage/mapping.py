"""The target/extent mapping of a machine: its target exposes its extent, at ``storage.lun``, and nothing else."""

from __future__ import annotations

from netprov.core.plan import Action
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import DesiredMachine
from netprov.core.storage.payloads import (
    Kept,
    MappingCreate,
    MappingDelete,
    MappingRef,
    MappingUpdate,
    extent_address,
    mapping_address,
    target_address,
)


def _ref(te: dict) -> MappingRef:
    return MappingRef(te["id"], te["target"], te["extent"])


def plan_mapping(cx: Ctx, m: DesiredMachine, t: dict | None, extent_id: int | None, zvol_replaced: bool) -> Step:
    """``t``: the machine's target as it is (None: created in this chain); ``extent_id``: its extent kept as it
    is (None: created in this chain)."""
    ix = cx.ix
    step = Step()
    addr = mapping_address(m.target, m.target)
    mapped = list(ix.te_by_target.get(t["id"], [])) if t is not None else []
    kept = extent_id is not None and not zvol_replaced
    good = next((te for te in mapped if te["extent"] == extent_id), None) if kept else None
    after = {"target": m.target, "extent": m.target, "lunid": m.lun}
    if good is None:
        foreign = [te for te in ix.te_by_extent.get(extent_id, []) if t is None or te["target"] != t["id"]] \
            if kept else []
        refused = None
        if foreign and ix.target_owner.get(foreign[0]["target"]) is None:
            other = ix.target_by_id.get(foreign[0]["target"], {})
            refused = (f"extent {m.target} is also mapped to target {other.get('name', foreign[0]['target'])}"
                       ", not managed by netprov: the disk would be reachable through it")
        step.changes.append(cx.change(
            "targetextent", addr, Action.CREATE,
            "re-created on the replaced zvol" if zvol_replaced else "target is not mapped to the extent",
            MappingCreate(target_address(m.target), extent_address(m.target), m.lun), machine=m.name,
            refused=refused))
    elif good.get("lunid") != m.lun:
        step.changes.append(cx.change("targetextent", addr, Action.UPDATE, f"LUN {good.get('lunid')} -> {m.lun}",
                                      MappingUpdate(_ref(good), m.lun), machine=m.name,
                                      before={**after, "lunid": good.get("lunid")}, after=after))
    else:
        step.changes.append(cx.change("targetextent", addr, Action.NOOP, f"mapped at LUN {m.lun}",
                                      Kept(good["id"]), machine=m.name))
    # other LUNs on this machine's target expose other disks to it
    for te in mapped:
        if good is not None and te["id"] == good["id"]:
            continue
        if zvol_replaced and ix.extent_owner.get(te["extent"]) == m.name:
            continue  # deleted before the replace already
        assert t is not None
        ext = ix.extent_by_id.get(te["extent"], {}).get("name")
        step.deletes.append(cx.change(
            "targetextent", mapping_address(t["name"], ext or te["extent"]), Action.DELETE,
            f"target {t['name']} also exposes extent {ext or te['extent']}: only the machine's own disk may be mapped",
            MappingDelete(_ref(te)), machine=m.name, before={"target": t["name"], "extent": ext,
                                                             "lunid": te.get("lunid")}))
    return step
