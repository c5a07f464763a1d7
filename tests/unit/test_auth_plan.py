"""Planner rules for CHAP auth groups (issue 10 items 1 and 5). Pure: no NAS, no I/O.

* A target whose auth group holds any credential besides its machine's own (a second row on its tag,
  whoever made it) is drift: the machine gets a fresh auth group, foreign rows are never adopted or
  deleted, and the plan is never "no changes".
* Auth rows an interrupted apply left (no target uses them) are recognised only by the machine's CHAP
  user *and* its secret's digest, reused for the machine's next auth group, and extra ones deleted;
  anything else is left alone.
"""

from __future__ import annotations

from netprov.core.plan import Action
from netprov.core.storage import plan_storage, secret_digest
from netprov.core.storage.payloads import AuthDelete, AuthKept, AuthUpdate

from storage_helpers import converged, desired_from, inventory_text

TWO = '''
m1: {mac: "52:54:00:00:00:01", chap: {secret_env: M1}}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2}}
'''
SECRETS = {"m1": "m1-secret-0001", "m2": "m2-secret-0002"}


def _desired(machines=TWO, secrets=None, **kw):
    return desired_from(inventory_text(machines, **kw), secrets=SECRETS if secrets is None else secrets)


def _actual(d):
    a = converged(d, redacted=False)
    return a


def _pending(changes):
    return [c for c in changes if c.is_change]


def _ids(c):
    """The auth rows a change touches (its payload's row ids)."""
    p = c.payload
    return list(p.ids) if isinstance(p, AuthDelete) else [p.id] if isinstance(p, AuthUpdate | AuthKept) else []


def _by_addr(changes):
    return {str(c.address): c for c in changes}


def test_converged_state_has_no_auth_changes():
    d = _desired()
    assert _pending(plan_storage(d, _actual(d))) == []


def test_two_machines_targets_on_one_tag_is_never_converged():
    """The race of the issue: m2's target uses m1's tag, which holds m1's and m2's rows."""
    d = _desired()
    a = _actual(d)
    t2 = next(t for t in a.targets if t["name"] == "m2")
    a.auths = [{"id": 1, "tag": 1, "user": "m1", "peeruser": "", "secret": secret_digest(SECRETS["m1"])},
               {"id": 2, "tag": 1, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])}]
    t2["groups"][0]["auth"] = 1
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    assert _pending(changes), "two machines sharing one auth tag must not plan as converged"
    for name in ("m1", "m2"):
        assert by[f"auth[{name}]"].action is Action.CREATE, by[f"auth[{name}]"].reason
        assert by[f"target[{name}]"].action is Action.UPDATE
        # each machine's own row leaves the shared group (it is proved its own by the secret's digest)
    deletes = {str(c.address): c for c in changes if c.action is Action.DELETE}
    assert set(deletes) == {"auth[m1]#1", "auth[m2]#2"}
    assert deletes["auth[m1]#1"].payload.not_used_by == (next(t["id"] for t in a.targets if t["name"] == "m1"),)


def test_a_foreign_row_on_the_target_tag_is_drift_and_never_adopted():
    d = _desired()
    a = _actual(d)
    a.auths.append({"id": 9, "tag": 1, "user": "intruder", "peeruser": "", "secret": "redacted"})
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    assert by["auth[m1]"].action is Action.CREATE and "2 credentials" in by["auth[m1]"].reason
    assert "intruder" in by["auth[m1]"].reason and SECRETS["m1"] not in repr(changes)
    assert by["target[m1]"].action is Action.UPDATE
    # the foreign row is not touched; m1's own row leaves the group
    assert not any(c.action is Action.DELETE and 9 in _ids(c) for c in changes)
    assert by["auth[m1]#1"].action is Action.DELETE
    # m2 is untouched
    assert by["auth[m2]"].action is Action.NOOP


def test_two_inventories_same_user_name_on_one_tag():
    """Inventory B's m1 and inventory A's m1 (both CHAP user m1, different secrets) on one tag."""
    d = _desired("m1: {mac: \"52:54:00:00:00:01\", chap: {secret_env: M1}}", secrets={"m1": "b-secret-00001"},
                 storage_extra="target_prefix: b-")
    a = _actual(d)
    a.auths.append({"id": 7, "tag": 1, "user": "m1", "peeruser": "", "secret": secret_digest("a-secret-00001")})
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    assert by["auth[m1]"].action is Action.CREATE
    assert by["target[b-m1]"].action is Action.UPDATE
    deleted = [i for c in changes if c.action is Action.DELETE for i in _ids(c)]
    assert deleted == [1]          # only B's own row (its digest); A's row 7 is A's business


def test_crowded_group_without_secret_plans_a_refused_create_not_converged():
    d = _desired(secrets={})
    a = _actual(d)
    a.auths.append({"id": 9, "tag": 1, "user": "m2", "peeruser": "", "secret": "redacted"})
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    assert by["auth[m1]"].action is Action.CREATE and by["auth[m1]"].refused
    assert _pending(changes)


def _without_target(d, name):
    """State after a failure between the auth create and the target create of ``name``."""
    a = _actual(d)
    t = next(t for t in a.targets if t["name"] == name)
    a.targets.remove(t)
    a.targetextents = [te for te in a.targetextents if te["target"] != t["id"]]
    return a


def test_leftover_auth_row_is_reused_and_extra_ones_deleted():
    d = _desired()
    a = _without_target(d, "m2")
    # retries added more rows for m2 (each on its own tag), none used by a target
    a.auths += [{"id": 5, "tag": 5, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])},
                {"id": 6, "tag": 6, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])}]
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    auth = by["auth[m2]"]
    assert auth.action is Action.UPDATE and auth.reason.startswith("adopt: reuse auth group tag 2")
    assert auth.payload.tag == 2 and auth.payload.verify_tag == 2
    assert by["target[m2]"].action is Action.CREATE
    assert {str(c.address) for c in changes if c.action is Action.DELETE} == {"auth[m2]#5", "auth[m2]#6"}
    assert all(c.payload.unused for c in changes if c.action is Action.DELETE)


def test_leftover_rows_of_a_converged_machine_are_deleted():
    d = _desired()
    a = _actual(d)
    a.auths.append({"id": 8, "tag": 8, "user": "m1", "peeruser": "", "secret": secret_digest(SECRETS["m1"])})
    changes = _pending(plan_storage(d, a))
    assert [(str(c.address), c.action) for c in changes] == [("auth[m1]#8", Action.DELETE)]
    assert "leftover" in changes[0].reason


def test_rows_that_are_not_provably_netprovs_are_left_alone():
    d = _desired()
    a = _without_target(d, "m2")
    a.auths = [r for r in a.auths if r["user"] != "m2"]
    human = [
        {"id": 11, "tag": 11, "user": "m2", "peeruser": "", "secret": secret_digest("someone-elses1")},  # other secret
        {"id": 12, "tag": 12, "user": "m2", "peeruser": "", "secret": "redacted"},                     # unreadable
        {"id": 13, "tag": 13, "user": "m2", "peeruser": "peer", "secret": secret_digest(SECRETS["m2"])},  # mutual
        {"id": 14, "tag": 14, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])},
        {"id": 15, "tag": 14, "user": "ops", "peeruser": "", "secret": secret_digest("ops-secret-001")},  # mixed group
        {"id": 16, "tag": 16, "user": "m9", "peeruser": "", "secret": secret_digest(SECRETS["m2"])},     # other user
    ]
    a.auths += human
    changes = plan_storage(d, a)
    by = _by_addr(changes)
    assert by["auth[m2]"].action is Action.CREATE
    touched = {i for c in changes if c.kind == "auth" for i in _ids(c)}
    assert touched.isdisjoint({r["id"] for r in human})
    # without the secret nothing is recognised at all
    d2 = _desired(secrets={})
    a2 = _without_target(d2, "m2")
    a2.auths.append({"id": 5, "tag": 5, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])})
    assert not any(c.kind == "auth" and 5 in _ids(c)
                   for c in plan_storage(d2, a2))


def test_leftover_not_taken_when_two_machines_share_the_chap_user():
    d = _desired('''
m1: {mac: "52:54:00:00:00:01", chap: {username: disk, secret_env: M1}}
m2: {mac: "52:54:00:00:00:02", chap: {username: disk, secret_env: M2}}
''', secrets={"m1": "same-secret-001", "m2": "same-secret-001"})
    a = _without_target(d, "m2")
    a.auths.append({"id": 5, "tag": 5, "user": "disk", "peeruser": "", "secret": secret_digest("same-secret-001")})
    by = _by_addr(plan_storage(d, a))
    assert by["auth[m2]"].action is Action.CREATE
    assert "auth[m2]#5" not in by and "auth[m1]#5" not in by


def test_targeted_plan_leaves_other_machines_leftovers():
    from netprov.core.storage import StoragePolicy
    d = _desired()
    a = _without_target(d, "m2")
    a.auths.append({"id": 5, "tag": 5, "user": "m2", "peeruser": "", "secret": secret_digest(SECRETS["m2"])})
    changes = plan_storage(d, a, StoragePolicy(machines={"m1"}))
    assert not [c for c in changes if c.machine == "m2"]


def test_removed_machine_whose_delete_stopped_after_its_target_loses_its_auth_row_too():
    """The fault matrix found it: m2 removed, its delete stopped after the target (fault at the auth
    delete); the rerun's plan must still delete m2's auth row, which no target leads to any more."""
    from netprov.core.storage import StoragePolicy
    d_old = _desired()
    a = _actual(d_old)
    t2 = next(t for t in a.targets if t["name"] == "m2")
    a.targets = [t for t in a.targets if t is not t2]
    a.targetextents = [te for te in a.targetextents if te["target"] != t2["id"]]
    d = _desired('m1: {mac: "52:54:00:00:00:01", chap: {secret_env: M1}}\n')
    by = _by_addr(plan_storage(d, a, StoragePolicy(allow_destroy=True)))
    row = next(r for r in a.auths if r["user"] == "m2")
    leftover = by[f"auth[m2]#{row['id']}"]
    assert leftover.action is Action.DELETE and leftover.refused is None
    assert leftover.payload.unused is True and leftover.payload.ids == (row["id"],)
    # without allow_destroy it is planned and refused, like the rest of the removed machine
    by = _by_addr(plan_storage(d, a, StoragePolicy()))
    assert by[f"auth[m2]#{row['id']}"].refused
    # m1's row is never touched
    assert not any(str(c.address).startswith("auth[m1]") and c.is_change for c in by.values())
