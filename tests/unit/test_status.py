"""`netprov status`'s per-machine summary (netprov.core.status), from offline plans (pure: no NAS, no SSH)."""

from __future__ import annotations

import json

from netprov.core.inventory_load import parse_inventory
from netprov.core.boot_render import Renderer
from netprov.core.status import status_lines, summarise
from netprov.core.storage import StoragePolicy, desired_storage
from netprov.engine.run import make_plan, offline_world
from tests.unit.storage_helpers import converged
from tests.unit.test_engine_plan import TWO, _state_from


def _status(text: str, state_text: str = TWO, *, edit=None):
    """Status of inventory ``text`` against a world that holds what ``state_text`` makes (as if applied)."""
    state = _state_from(state_text)
    actual = converged(desired_storage(parse_inventory(state_text, "inv.yaml"), "nas"))
    if edit:
        edit(actual)
    state["storage"] = {"nas": actual.to_json()}
    loaded = parse_inventory(text, "inv.yaml")
    run = make_plan(loaded, Renderer(), {}, offline_world(loaded, state), policy=StoragePolicy())
    return summarise(run.plan.changes, loaded.machines, {k: (run.desired[k], run.actual[k]) for k in run.actual})


def _machine(status, name):
    return next(m for m in status.machines if m.name == name)


def test_a_converged_world_is_converged_with_every_object_present() -> None:
    status = _status(TWO)
    assert status.converged
    assert [m.name for m in status.machines] == ["alpha", "beta"]
    alpha = _machine(status, "alpha")
    assert {o.kind for o in alpha.nas} == {"zvol", "extent", "initiator", "target", "targetextent"}
    assert {o.state for o in alpha.nas} == {"present"} and {o.state for o in alpha.files} == {"current"}
    assert len(alpha.files) == 2 and not alpha.booted
    assert status_lines(status)[-1] == "2 of 2 machine(s) as the inventory says; 0 booted now."


def test_a_resized_disk_is_drift_of_that_machine_only() -> None:
    def shrink_alpha(actual):
        actual.zvols[0]["volsize"] //= 2
    status = _status(TWO, edit=shrink_alpha)
    assert not status.converged
    zvol = next(o for o in _machine(status, "alpha").nas if o.kind == "zvol")
    assert zvol.state == "drifted" and zvol.detail
    assert _machine(status, "beta").converged
    assert any(line.startswith("  alpha: zvol[tank/netboot/alpha] drifted") for line in status_lines(status))


def test_a_mac_change_shows_the_old_script_leftover_and_the_new_one_missing() -> None:
    status = _status(TWO.replace("52:54:00:00:00:02", "52:54:00:00:00:22"))
    beta = _machine(status, "beta")
    states = {o.address: o.state for o in beta.files}
    assert states["pxe.tftp[52-54-00-00-00-22.ipxe]"] == "missing"
    assert states["pxe.hosts[beta.conf]"] == "stale"
    # The old script: beta's when the plan knows whose it is (the server's host file names it), else shared.
    leftover = {o.address: o.state for o in (*beta.files, *status.shared)}
    assert leftover["pxe.tftp[52-54-00-00-00-02.ipxe]"] == "leftover"
    assert beta.nas and all(o.ok for o in beta.nas) and not beta.converged


def test_a_session_on_its_target_means_booted_with_the_address() -> None:
    def log_in(actual):
        base = actual.global_["basename"]
        actual.sessions += [
            {"target": f"{base}:alpha", "initiator": "iqn.2010-04.org.ipxe:alpha", "initiator_addr": "10.0.0.77"},
            {"target": f"{base}:beta", "initiator": "iqn.1993-08.org.debian:01:intruder"}]
    status = _status(TWO, edit=log_in)
    alpha, beta = _machine(status, "alpha"), _machine(status, "beta")
    assert status.converged                # sessions are not drift
    assert alpha.booted and [(s.address, s.expected) for s in alpha.sessions] == [("10.0.0.77", True)]
    assert beta.booted and [(s.address, s.expected) for s in beta.sessions] == [(None, False)]
    text = "\n".join(status_lines(status))
    assert "yes: 10.0.0.77" in text
    assert "address unknown as iqn.1993-08.org.debian:01:intruder (not its initiator)" in text
    data = json.loads(json.dumps(status.to_json()))
    assert data["machines"][0]["sessions"] == [{"initiator": "iqn.2010-04.org.ipxe:alpha", "address": "10.0.0.77",
                                                "expected_initiator": True}]


def test_a_machine_gone_from_the_inventory_is_listed_with_what_would_be_removed() -> None:
    from tests.unit.test_engine_plan import BASE
    status = _status(BASE)
    beta = _machine(status, "beta")
    assert not beta.in_inventory and not beta.converged and beta.storage == "nas"
    assert {o.state for o in beta.files} == {"leftover"}
    assert beta.nas and {o.state for o in beta.nas} == {"extra"}
    assert "beta (not in inventory)" in "\n".join(status_lines(status))


def test_every_plan_action_has_a_state() -> None:
    from netprov.core.plan import Action
    from netprov.core.status import FILE_STATE, NAS_STATE
    assert set(NAS_STATE) == set(FILE_STATE) == set(Action)
