"""Pure storage planner: invariants the golden cases don't spell out one by one."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import SECRET, converged, desired_from, inventory_text

from netprov.core.plan import Action, fingerprint
from netprov.core.storage import (
    KINDS,
    ActualStorage,
    StoragePolicy,
    mark_comment,
    parse_mark,
    plan_storage,
    secret_digest,
    summarize,
)

TWO = '''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}}
'''


def empty(parent: str = "tank/netboot") -> ActualStorage:
    return ActualStorage(parent=parent, service={"enable": False, "state": "STOPPED"})


def test_marks_round_trip():
    assert parse_mark(mark_comment("tank/net boot/m1")) == (True, "tank/net boot/m1")
    assert parse_mark("netprov:managed") == (True, None)
    assert parse_mark("netprov:managedx") == (False, None)
    assert parse_mark("made by hand") == (False, None) and parse_mark(None) == (False, None)


def test_every_change_says_why_and_noops_too():
    d = desired_from(inventory_text(TWO))
    for actual in (empty(), converged(d)):
        for c in plan_storage(d, actual):
            assert c.reason, c
            assert c.system == "storage:nas"
            before, after = c.sides
            if c.action is Action.CREATE:
                assert before is None and after
            if c.action is Action.DELETE:
                assert after is None and before
            if c.action is Action.NOOP:
                assert before is None and after is None


def test_create_order_per_machine_and_shared_around():
    d = desired_from(inventory_text(TWO))
    changes = plan_storage(d, empty())
    assert changes[1].kind == "portal" and str(changes[-1].address) == "service[iscsitarget]"
    for m in ("m1", "m2"):
        kinds = [c.kind for c in changes if c.machine == m]
        assert kinds == [k for k in KINDS if k in kinds]


def test_deletes_run_in_reverse_dependency_order():
    d2 = desired_from(inventory_text(TWO))
    d0 = desired_from(inventory_text('m9: {mac: "52:54:00:00:00:09"}'))
    changes = plan_storage(d0, converged(d2), StoragePolicy(allow_destroy=True))
    for m in ("m1", "m2"):
        kinds = [c.kind for c in changes if c.machine == m]
        assert kinds == [k for k in reversed(KINDS) if k in kinds]
        assert all(c.action is Action.DELETE and not c.refused for c in changes if c.machine == m)


def test_no_secret_in_any_plan():
    d = desired_from(inventory_text(TWO))
    drift = converged(d, redacted=False)
    drift.auths[0]["secret"] = secret_digest("Another-secret1")
    for actual in (empty(), converged(d), converged(d, redacted=False), drift):
        changes = plan_storage(d, actual)
        blob = json.dumps([c.to_json() for c in changes]) + json.dumps([c.payload.to_json() for c in changes if c.payload])
        assert SECRET not in blob
        assert SECRET not in json.dumps(actual.to_json())
        assert SECRET not in repr(d)
    upd = [c for c in plan_storage(d, drift) if c.kind == "auth"]
    assert upd[0].action is Action.UPDATE and upd[0].after == {"secret": "********"}


def test_secret_unavailable_plans_but_refuses():
    d = desired_from(inventory_text(TWO), secrets={"m2": None})
    [auth] = [c for c in plan_storage(d, empty()) if c.kind == "auth"]
    assert auth.action is Action.CREATE and "not available" in auth.refused
    # an existing auth group is left alone (can't compare)
    [auth] = [c for c in plan_storage(d, converged(d)) if c.kind == "auth"]
    assert auth.action is Action.NOOP and "not available" in auth.reason


def test_machines_filter():
    d = desired_from(inventory_text(TWO))
    changes = plan_storage(d, empty(), StoragePolicy(machines={"m2"}))
    assert {c.machine for c in changes if c.machine} == {"m2"}


def test_fingerprint_follows_the_state():
    d = desired_from(inventory_text(TWO))
    a = converged(d)
    fp = fingerprint(a.to_json())
    assert fingerprint(ActualStorage.from_json(json.loads(json.dumps(a.to_json()))).to_json()) == fp
    a.zvols[0]["volsize"] += 16384
    assert fingerprint(a.to_json()) != fp


def test_parent_must_be_a_filesystem():
    d = desired_from(inventory_text(TWO))
    a = empty()
    a.parent_type = "VOLUME"
    zv = [c for c in plan_storage(d, a) if c.kind == "zvol"]
    assert all("not a filesystem" in c.refused for c in zv)


def test_other_inventorys_objects_are_out_of_scope():
    """Marked objects under another parent are neither orphans nor clashes."""
    d = desired_from(inventory_text(TWO))
    other = desired_from(inventory_text(TWO).replace("parent: tank/netboot", "parent: tank/lab2")
                         .replace("portal: 10.0.0.10:3260", "portal: 10.0.0.10:3260\n    target_prefix: lab2-"))
    a = converged(other)
    a.parent = "tank/netboot"
    changes = plan_storage(d, a, StoragePolicy(allow_destroy=True))
    assert not [c for c in changes if c.action is Action.DELETE]
    assert not [c for c in changes if c.refused]


_machine = st.fixed_dictionaries({
    "size": st.sampled_from([None, "8G", "16G", "64G"]),
    "vbs": st.sampled_from([None, "8K", "16K", "64K"]),
    "sparse": st.booleans(),
    "chap": st.booleans(),
    "lun": st.integers(0, 3),
})


@settings(max_examples=40, deadline=None)
@given(st.lists(_machine, min_size=1, max_size=6), st.booleans())
def test_converged_state_plans_empty(machines, core):
    lines = []
    for i, m in enumerate(machines, start=1):
        disk = []
        if m["size"]:
            disk.append(f"size: {m['size']}")
        if m["vbs"]:
            disk.append(f"volblocksize: {m['vbs']}")
        disk.append(f"sparse: {str(m['sparse']).lower()}")
        chap = f', chap: {{secret_env: M{i}}}' if m["chap"] else ""
        lines.append(f'm{i}: {{mac: "52:54:00:00:00:{i:02x}", disk: {{{", ".join(disk)}}}{chap}}}')
    d = desired_from(inventory_text("\n".join(lines), storage_extra=f"lun: {machines[0]['lun']}"))
    changes = plan_storage(d, converged(d, core=core))
    assert summarize(changes)["no-op"] == len(changes), [c for c in changes if c.is_change]
    # and from an empty NAS everything is a create (plus the service), nothing refused
    fresh = plan_storage(d, empty())
    assert not [c for c in fresh if c.refused]
    assert {c.action for c in fresh} <= {Action.CREATE, Action.UPDATE, Action.NOOP}


@pytest.mark.parametrize("actual_size,want,action", [(16, 32, Action.UPDATE), (32, 16, Action.REPLACE),
                                                     (16, 16, Action.NOOP)])
def test_zvol_size_rules(actual_size, want, action):
    d0 = desired_from(inventory_text('m1: {mac: "52:54:00:00:00:01"}'))
    a = converged(d0)
    a.zvols[0]["volsize"] = actual_size * 2**30
    d = desired_from(inventory_text(f'm1: {{mac: "52:54:00:00:00:01", disk: {{size: {want}G}}}}'))
    [z] = [c for c in plan_storage(d, a) if c.kind == "zvol"]
    assert z.action is action
    assert bool(z.refused) is (action is Action.REPLACE)
