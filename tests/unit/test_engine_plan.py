"""The engine's plan over both halves, offline (pure: no NAS, no SSH)."""

from __future__ import annotations

from pathlib import Path

from netprov.core.bootfiles import Kind
from netprov.core.inventory_load import parse_inventory
from netprov.core.plan import Action
from netprov.core.boot_render import Renderer
from netprov.core.storage import StoragePolicy
from netprov.engine.run import make_plan, offline_world, server_roots

BASE = (Path(__file__).resolve().parent.parent / "inventories" / "base.yaml").read_text()
TWO = BASE + "  beta:\n    mac: 52:54:00:00:00:02\n"


def _state_from(text: str) -> dict:
    """An offline snapshot of a PXE server holding exactly what ``text`` renders (as if applied)."""
    loaded = parse_inventory(text, "inv.yaml")
    files = Renderer().render(loaded, {})
    entries = [{"root": f.root.value, "path": f.path, "type": "file", "sha256": f.sha256, "managed": True,
                "mode": f.mode, "size": len(f.content)} for f in files if f.kind is not Kind.BINARY]
    roots = {r.value: d for r, d in server_roots(loaded, "pxe").items()}
    sources = {f.source: "binsha" for f in files if f.source}
    entries += [{"root": "tftp", "path": f.path, "type": "file", "sha256": "binsha", "managed": True,
                 "mode": 0o644, "size": 1} for f in files if f.kind is Kind.BINARY]
    return {"format": 1, "storage": {}, "pxe": {"pxe": {"server": "pxe", "roots": roots, "entries": entries,
                                                        "sources": sources, "owned": {}}}}


def _plan(text: str, state: dict, machines=None):
    loaded = parse_inventory(text, "inv.yaml")
    return make_plan(loaded, Renderer(), {}, offline_world(loaded, state),
                     policy=StoragePolicy(machines=frozenset(machines) if machines else None))


def test_unchanged_files_plan_nothing() -> None:
    run = _plan(TWO, _state_from(TWO))
    assert not [c for c in run.plan.changes if c.system == "pxe:pxe" and c.is_change]


def test_removed_machine_files_are_deleted() -> None:
    run = _plan(BASE, _state_from(TWO))
    deleted = {str(c.address) for c in run.plan.changes if c.action is Action.DELETE and c.system == "pxe:pxe"}
    assert deleted == {"pxe.hosts[beta.conf]", "pxe.tftp[52-54-00-00-00-02.ipxe]"}


def test_target_leaves_other_machines_files_alone() -> None:
    changed = TWO.replace("disk: {size: 32G, sparse: true}", "disk: {size: 32G, sparse: true}\n  firmware: uefi")
    state = _state_from(BASE)            # the server holds alpha's files only; beta is new
    run = _plan(changed, state, machines={"alpha"})
    touched = {str(c.address) for c in run.plan.changes if c.system == "pxe:pxe" and c.is_change}
    assert not any("beta" in a or "00-00-00-02" in a for a in touched), touched
    run_all = _plan(changed, state)
    assert {"pxe.hosts[beta.conf]", "pxe.tftp[52-54-00-00-00-02.ipxe]"} <= {
        str(c.address) for c in run_all.plan.changes if c.is_change}


def test_plan_orders_storage_before_files_and_storage_deletes_last() -> None:
    run = _plan(TWO, {"format": 1})
    systems = [c.system for c in run.plan.changes if c.is_change]
    assert systems.index("pxe:pxe") > systems.index("storage:nas")
    kinds = [c.kind for c in run.plan.changes if c.system == "storage:nas" and c.is_change]
    assert kinds.index("zvol") < kinds.index("extent") < kinds.index("targetextent")


def test_missing_binary_source_is_advisory_not_blocking() -> None:
    from netprov.engine.run import blocking_refusals
    arm = TWO.replace("    mac: 52:54:00:00:00:02\n", "    mac: 52:54:00:00:00:02\n    arch: arm64\n    firmware: uefi\n")
    state = _state_from(arm)
    pxe = state["pxe"]["pxe"]
    pxe["entries"] = [e for e in pxe["entries"] if e["path"] != "snponly-arm64.efi"]
    pxe["sources"] = {k: (None if k.endswith("snponly-arm64.efi") else v) for k, v in pxe["sources"].items()}
    run = _plan(arm, state)
    advisory = [c for c in run.plan.changes if c.payload is not None and getattr(c.payload, "advisory", False)]
    assert [str(c.address) for c in advisory] == ["pxe.tftp[snponly-arm64.efi]"]
    assert "can't boot until it is in the TFTP root" in advisory[0].refused
    assert not blocking_refusals(run.plan)
