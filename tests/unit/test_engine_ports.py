"""The engine's plan and apply over in-memory ports (tests/support/memory_ports.py): the phases, holding back
a machine whose storage failed, Ctrl-C between phases, a port that raises, and offline worlds. No simulator,
no sshd: the ports stand behind the same protocols as the TrueNAS and PXE adapters."""

from __future__ import annotations

import pytest

from netprov.adapters.snapshot import SnapshotBootHost, SnapshotStorage
from netprov.core.boot_render import Renderer
from netprov.core.inventory_load import parse_inventory
from netprov.core.plan import Action
from netprov.core.storage import StoragePolicy, desired_storage
from netprov.engine.run import World, apply_plan, make_plan, offline_world, server_roots
from netprov.errors import NetprovError, PushError
from tests.support.memory_ports import MemoryBootHost, MemoryStorage
from tests.unit.storage_helpers import converged
from tests.unit.test_engine_plan import BASE

BETA = "  beta:\n    mac: 52:54:00:00:00:02\n"
GAMMA = "  gamma:\n    mac: 52:54:00:00:00:03\n"
DELTA = "  delta:\n    mac: 52:54:00:00:00:04\n"
BEFORE = BASE + BETA                 # what the world holds
AFTER = BASE + GAMMA + DELTA         # beta leaves, gamma and delta arrive


def _world(log, *, storage_kw=None, pxe_kw=None, before: str | None = BEFORE):
    """A NAS and a PXE server holding what ``before`` makes (as if applied), or nothing."""
    loaded = parse_inventory(before or BASE, "inv.yaml")
    actual = converged(desired_storage(loaded, "nas")) if before else None
    nas = MemoryStorage(log, actual, **(storage_kw or {}))
    host = MemoryBootHost(log, "pxe", server_roots(loaded, "pxe"), **(pxe_kw or {}))
    if before:
        for f in Renderer().render(loaded, {}):
            host.files[(f.root, f.path)] = ("binsha" if f.source else f.sha256, 0o644)
    return World(storage={"nas": nas}, pxe={"pxe": host})


def _plan(world, text: str = AFTER):
    return make_plan(parse_inventory(text, "inv.yaml"), Renderer(), {}, world,
                     policy=StoragePolicy(allow_destroy=True))


def _apply(planned, world, **kw):
    return apply_plan(planned.plan, world, desired=planned.desired, **kw)


def test_storage_creates_then_files_then_storage_deletes() -> None:
    log: list = []
    w = _world(log)
    planned = _plan(w)
    result = _apply(planned, w)
    assert result.ok, result.failed
    systems = [(s, what) for s, what, _ in log]
    first_file = next(i for i, (s, _) in enumerate(systems) if s == "pxe:pxe")
    first_delete = next(i for i, (s, what) in enumerate(systems) if s == "storage:nas" and what == "delete")
    assert all(s == "storage:nas" and what != "delete" for s, what in systems[:first_file])
    assert all(s == "pxe:pxe" for s, _ in systems[first_file:first_delete])
    assert all(s == "storage:nas" and what == "delete" for s, what in systems[first_delete:])
    # every pending change was carried out, exactly as planned (files are not planned again)
    assert sorted(a for _, _, a in log if not a.startswith("dnsmasq[")) == sorted(
        str(c.address) for c in planned.plan.pending if c.kind != "activation")
    assert ("pxe:pxe", "sighup", "dnsmasq[pxe]") in log and "dnsmasq[pxe] sighup" in result.done
    # the files converged: a fresh plan has nothing left for the PXE server
    assert not [c for c in _plan(w).plan.changes if c.system == "pxe:pxe" and c.is_change]


def test_a_machine_whose_storage_failed_keeps_its_old_files() -> None:
    log: list = []
    w = _world(log, storage_kw={"fail": {"gamma"}})
    planned = _plan(w)
    result = _apply(planned, w)
    assert not result.ok and {a for a, _ in result.failed} >= {"zvol[tank/netboot/gamma]"}
    pushed = [a for s, _, a in log if s == "pxe:pxe"]
    assert "pxe.hosts[delta.conf]" in pushed and "pxe.hosts[gamma.conf]" not in pushed
    assert "pxe.tftp[52-54-00-00-00-03.ipxe]" not in pushed
    assert "pxe: files of gamma (its storage failed)" in result.skipped
    host = w.pxe["pxe"]
    assert host.applied and all(c.machine != "gamma" for c in host.applied[0])


def test_ctrl_c_between_phases_stops_before_the_files() -> None:
    log: list = []
    stop = {"flag": False}
    w = _world(log, storage_kw={"after_apply": lambda: stop.update(flag=True)})
    planned = _plan(w)
    result = _apply(planned, w, should_stop=lambda: stop["flag"])
    assert result.interrupted and not result.failed
    assert log and all(s == "storage:nas" and what != "delete" for s, what, _ in log)
    files = {str(c.address) for c in planned.plan.pending if c.kind == "file"}
    deletes = {str(c.address) for c in planned.plan.pending if c.action is Action.DELETE and c.system == "storage:nas"}
    assert files and deletes and files | deletes <= set(result.skipped)
    assert not w.pxe["pxe"].applied


def test_a_storage_port_that_raises_stops_everything() -> None:
    log: list = []
    w = _world(log, storage_kw={"raises": NetprovError("nas: connection refused")})
    planned = _plan(w)
    result = _apply(planned, w)
    assert result.failed == [("storage:nas", "nas: connection refused")] and result.stopped == "storage:nas"
    assert not log and not w.pxe["pxe"].applied
    assert {str(c.address) for c in planned.plan.pending} <= set(result.skipped)


def test_a_pxe_port_that_raises_is_that_servers_failure_and_holds_the_deletes() -> None:
    log: list = []
    w = _world(log, pxe_kw={"raises": PushError("another netprov apply holds the lock")})
    planned = _plan(w)
    result = _apply(planned, w)
    assert result.failed == [("pxe:pxe", "another netprov apply holds the lock")] and result.stopped is None
    assert [what for s, what, _ in log if s == "storage:nas"] and not [s for s, what, _ in log if what == "delete"]
    assert "pxe.hosts[gamma.conf]" in result.skipped and "zvol[tank/netboot/beta]" in result.skipped


def test_a_file_changed_since_the_plan_is_stale() -> None:
    log: list = []
    w = _world(log)
    planned = _plan(w)
    host = w.pxe["pxe"]
    key = next(k for k in host.files if k[1] == "beta.conf")
    host.files[key] = ("edited by hand", 0o644)           # between plan and apply
    result = _apply(planned, w)
    assert [s for s, _ in result.failed] == ["pxe:pxe"] and "changed since the plan" in result.failed[0][1]
    assert host.files[key] == ("edited by hand", 0o644)


def test_offline_world_plans_through_snapshot_ports_and_cannot_apply() -> None:
    loaded = parse_inventory(AFTER, "inv.yaml")
    w = offline_world(loaded, {})
    assert isinstance(w.storage["nas"], SnapshotStorage) and isinstance(w.pxe["pxe"], SnapshotBootHost)
    planned = make_plan(loaded, Renderer(), {}, w, policy=StoragePolicy())
    assert planned.plan.options["offline"] is True and planned.plan.has_changes
    with pytest.raises(NetprovError, match="an offline plan cannot be applied: plan against the live systems"):
        apply_plan(planned.plan, w, desired=planned.desired)
    for port in (w.storage["nas"], w.pxe["pxe"]):
        with pytest.raises(NetprovError, match="an offline plan cannot be applied"):
            port.apply([])
