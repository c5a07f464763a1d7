"""Pure planner: the net under destroyed zvols and declared renames (issue 10, item 4; ADR 0006)."""

from __future__ import annotations

from storage_helpers import converged, desired_from, inventory_text

from netprov.core.plan import Action
from netprov.core.storage import StoragePolicy, net_names, plan_storage

STAMP = "20261207T180512Z"
TWO = '''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}}
'''
ONE = 'm1: {mac: "52:54:00:00:00:01"}'


def pending(desired, actual, **policy):
    policy.setdefault("stamp", STAMP)
    return [c for c in plan_storage(desired, actual, StoragePolicy(**policy)) if c.is_change]


def test_net_names_never_match_a_machine_zvol():
    snap, keep = net_names("tank/netboot/m2", STAMP)
    assert snap == f"tank/netboot/m2@netprov-{STAMP}"
    assert keep == f"tank/netboot/m2.netprov-retired-{STAMP}"
    assert "." in keep.rsplit("/", 1)[1]      # machine names are [a-z0-9-]: no clash possible


def test_orphan_zvol_delete_carries_the_net_and_shows_it():
    actual = converged(desired_from(inventory_text(TWO)))
    [z] = [c for c in pending(desired_from(inventory_text(ONE)), actual, allow_destroy=True) if c.kind == "zvol"]
    snap, keep = net_names("tank/netboot/m2", STAMP)
    assert z.action is Action.DELETE and not z.refused
    assert z.after == {"snapshot": snap, "kept_as": keep}
    assert z.payload.net.snapshot == snap and z.payload.net.keep_as == keep
    assert keep in z.reason


def test_replace_carries_the_net():
    actual = converged(desired_from(inventory_text(ONE)))
    small = desired_from(inventory_text('m1: {mac: "52:54:00:00:00:01", disk: {size: 8G}}'))
    [z] = [c for c in pending(small, actual, allow_destroy=True) if c.kind == "zvol"]
    assert z.action is Action.REPLACE and z.after["kept_as"] == net_names("tank/netboot/m1", STAMP)[1]
    assert z.payload.net.comment == f"netprov:retired zvol=tank/netboot/m1 at={STAMP}"


def test_no_snapshot_plans_a_plain_destroy():
    actual = converged(desired_from(inventory_text(TWO)))
    [z] = [c for c in pending(desired_from(inventory_text(ONE)), actual, allow_destroy=True, snapshot=False)
           if c.kind == "zvol"]
    assert z.after is None and z.payload.net is None and "--no-snapshot" in z.reason


def test_the_stamp_comes_from_the_policy_only():
    actual = converged(desired_from(inventory_text(TWO)))
    d1 = desired_from(inventory_text(ONE))
    a = pending(d1, actual, allow_destroy=True, stamp="20260101T000000Z")
    b = pending(d1, actual, allow_destroy=True, stamp="20260101T000000Z")
    assert [c.to_json() for c in a] == [c.to_json() for c in b]       # pure: same input, same plan


def test_retired_copy_is_not_an_orphan_nor_a_machine():
    d1 = desired_from(inventory_text(ONE))
    actual = converged(d1)
    keep = net_names("tank/netboot/m2", STAMP)[1]
    actual.zvols.append({"name": keep, "volsize": 16 * 2**30, "volblocksize": "16K", "sparse": True,
                         "origin": None, "comments": f"netprov:retired zvol=tank/netboot/m2 at={STAMP}",
                         "props": {}})
    assert pending(d1, actual, allow_destroy=True) == []


RENAMED = '''
m1: {mac: "52:54:00:00:00:01"}
m9: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}, renamed_from: m2}
'''


def test_declared_rename_is_updates_only():
    actual = converged(desired_from(inventory_text(TWO)))
    pend = pending(desired_from(inventory_text(RENAMED)), actual)
    assert {c.action for c in pend} == {Action.UPDATE}, [(c.action.value, str(c.address)) for c in pend]
    by = {c.kind: c for c in pend}
    assert set(by) == {"zvol", "extent", "initiator", "auth", "target"}
    z = by["zvol"]
    assert str(z.address) == "zvol[tank/netboot/m9]" and z.before == {"name": "tank/netboot/m2"}
    assert z.payload.old_path == "tank/netboot/m2" and z.payload.clone is True
    assert [x.id for x in z.payload.extents] == [2]
    assert by["extent"].payload.id == 2 and by["extent"].payload.name == "m9"
    assert by["extent"].payload.comment == "netprov:managed zvol=tank/netboot/m9"
    assert by["initiator"].payload.comment == "netprov:managed zvol=tank/netboot/m9"
    assert by["target"].payload.name == "m9" and "IQN" in by["target"].reason
    assert all("renamed from m2" in c.reason for c in pend if c.kind != "auth")


def test_without_renamed_from_a_rename_is_create_plus_delete():
    actual = converged(desired_from(inventory_text(TWO)))
    plain = RENAMED.replace(", renamed_from: m2", "")
    actions = {c.action for c in pending(desired_from(inventory_text(plain)), actual, allow_destroy=True)}
    assert actions == {Action.CREATE, Action.DELETE}


def test_rename_source_missing_is_refused():
    actual = converged(desired_from(inventory_text(ONE)))
    pend = pending(desired_from(inventory_text(RENAMED)), actual)
    [z] = [c for c in pend if c.kind == "zvol"]
    assert z.action is Action.CREATE and "nothing to rename" in z.refused
    assert [c.kind for c in pend] == ["zvol"]       # nothing else planned for that machine


def test_rename_refused_with_a_session_or_a_shrink():
    d = desired_from(inventory_text(TWO))
    actual = converged(d)
    actual.sessions.append({"target": f"{d.basename}:m2", "initiator": "iqn.2010-04.org.ipxe:m2"})
    [z] = [c for c in pending(desired_from(inventory_text(RENAMED)), actual) if c.kind == "zvol"]
    assert "session" in z.refused
    actual.sessions.clear()
    shrunk = RENAMED.replace("renamed_from: m2", "renamed_from: m2, disk: {size: 8G}")
    [z] = [c for c in pending(desired_from(inventory_text(shrunk)), actual) if c.kind == "zvol"]
    assert "rename first" in z.refused


def test_rename_once_done_is_converged():
    after = converged(desired_from(inventory_text(RENAMED)))
    assert pending(desired_from(inventory_text(RENAMED)), after) == []

