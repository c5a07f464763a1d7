"""The net under a destroyed disk, and declared renames, against the TrueNAS simulator (issue 10, item 4).

The simulator stores a token per zvol as its content (``write_data``/``read_data``): snapshots copy it,
clones start from their snapshot's, promote keeps it, destroy loses it. That is how these tests tell
"the data is still there" from "an object of that name exists".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.plan import Action
from netprov.core.storage import StoragePolicy, plan_storage, state_fingerprint
from truenas_sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from storage_helpers import desired_from, inventory_text

STAMP = "20261207T180512Z"
TWO = '''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}}
'''
ONE = 'm1: {mac: "52:54:00:00:00:01"}'


class Nas:
    def __init__(self, profile: str) -> None:
        self.sim = Simulator(profile=profile).start()
        self.client = TrueNASClient.connect(self.sim.url, Credentials(api_key=self.sim.api_key))
        self.client.call("pool.dataset.create", {"name": "tank/netboot", "type": "FILESYSTEM"})
        self.st = TrueNASStorage(self.client, "nas", None)

    def close(self) -> None:
        self.client.close()
        self.sim.stop()

    def plan(self, desired, **policy):
        policy.setdefault("stamp", STAMP)
        actual = self.st.read(desired)
        return plan_storage(desired, actual, StoragePolicy(**policy)), state_fingerprint(actual)

    def apply(self, desired, **policy):
        changes, fp = self.plan(desired, **policy)
        report = self.st.apply(changes, expected_fingerprint=fp, desired=desired)
        return changes, report

    def pending(self, desired, **policy):
        return [c for c in self.plan(desired, **policy)[0] if c.is_change]

    def datasets(self) -> set[str]:
        return {r["id"] for r in self.client.call("pool.dataset.query", [], {"select": ["id"]})}

    def snapshots(self) -> set[str]:
        ns = self.st.snapshot_ns
        return {r["id"] for r in self.client.call(f"{ns}.query", [], {"select": ["id"]})}

    def one(self, method: str, filters: list) -> dict:
        [row] = self.client.call(method, filters, {})
        return row


@pytest.fixture(params=["25.04", "13", "25.10"])
def nas(request):
    n = Nas(request.param)
    yield n
    n.close()


def test_removed_machine_is_kept_under_a_retired_name_and_recoverable(nas):
    d2 = desired_from(inventory_text(TWO))
    _, report = nas.apply(d2)
    assert report.complete, report.lines()
    nas.sim.write_data("tank/netboot/m2", "m2's disk")
    d1 = desired_from(inventory_text(ONE))
    pend = nas.pending(d1, allow_destroy=True)
    [zdel] = [c for c in pend if c.kind == "zvol"]
    snap = f"tank/netboot/m2@netprov-{STAMP}"
    keep = f"tank/netboot/m2.netprov-retired-{STAMP}"
    assert zdel.action is Action.DELETE and zdel.after == {"snapshot": snap, "kept_as": keep}
    assert snap in zdel.reason and keep in zdel.reason
    _, report = nas.apply(d1, allow_destroy=True)
    assert report.complete, report.lines()
    assert "tank/netboot/m2" not in nas.datasets()
    # the old disk, whole, under the retired name, with the snapshot taken right before
    assert nas.sim.read_data(keep) == "m2's disk"
    assert f"{keep}@netprov-{STAMP}" in nas.snapshots()
    assert nas.sim.read_data(f"{keep}@netprov-{STAMP}") == "m2's disk"
    comments = nas.one("pool.dataset.query", [["id", "=", keep]])["comments"]["parsed"]
    assert comments == f"netprov:retired zvol=tank/netboot/m2 at={STAMP}"
    # netprov leaves the retired disk alone: converged, and it is no orphan
    assert nas.pending(d1, allow_destroy=True) == []
    # docs/recovery.md: clone the snapshot back to the machine's name, then apply with --adopt
    nas.client.call(f"{nas.st.snapshot_ns}.clone", {"snapshot": f"{keep}@netprov-{STAMP}",
                                                    "dataset_dst": "tank/netboot/m2"})
    _, report = nas.apply(d2, adopt=True)
    assert report.complete, report.lines()
    assert nas.pending(d2) == []
    assert nas.sim.read_data("tank/netboot/m2") == "m2's disk"


def test_shrink_keeps_the_old_disk(nas):
    d = desired_from(inventory_text(ONE))
    nas.apply(d)
    nas.sim.write_data("tank/netboot/m1", "before the shrink")
    small = desired_from(inventory_text('m1: {mac: "52:54:00:00:00:01", disk: {size: 8G}}'))
    [ch] = [c for c in nas.pending(small, allow_destroy=True) if c.kind == "zvol"]
    keep = f"tank/netboot/m1.netprov-retired-{STAMP}"
    assert ch.action is Action.REPLACE and ch.after["kept_as"] == keep and not ch.refused
    _, report = nas.apply(small, allow_destroy=True)
    assert report.complete, report.lines()
    new = nas.one("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])
    assert new["volsize"]["parsed"] == 8 * 2**30 and nas.sim.read_data("tank/netboot/m1") is None
    old = nas.one("pool.dataset.query", [["id", "=", keep]])
    assert old["volsize"]["parsed"] == 16 * 2**30 and nas.sim.read_data(keep) == "before the shrink"
    assert nas.pending(small) == []


def test_volblocksize_change_keeps_the_old_disk(nas):
    d = desired_from(inventory_text(ONE))
    nas.apply(d)
    nas.sim.write_data("tank/netboot/m1", "16K blocks")
    vbs = desired_from(inventory_text('m1: {mac: "52:54:00:00:00:01", disk: {volblocksize: 64K}}'))
    _, report = nas.apply(vbs, allow_destroy=True)
    assert report.complete, report.lines()
    assert nas.sim.read_data(f"tank/netboot/m1.netprov-retired-{STAMP}") == "16K blocks"
    assert nas.pending(vbs) == []


def test_no_snapshot_destroys_outright(nas):
    d2 = desired_from(inventory_text(TWO))
    nas.apply(d2)
    before = nas.datasets()
    d1 = desired_from(inventory_text(ONE))
    [zdel] = [c for c in nas.pending(d1, allow_destroy=True, snapshot=False) if c.kind == "zvol"]
    assert zdel.after is None and "--no-snapshot" in zdel.reason
    _, report = nas.apply(d1, allow_destroy=True, snapshot=False)
    assert report.complete, report.lines()
    assert nas.datasets() == before - {"tank/netboot/m2"}
    assert nas.snapshots() == set()


def test_declared_rename_keeps_the_disk_and_objects(nas):
    d = desired_from(inventory_text(TWO))
    nas.apply(d)
    nas.sim.write_data("tank/netboot/m2", "m2's data")
    ids = {m: nas.client.call(m, [], {"select": ["id"]}) for m in (
        "iscsi.extent.query", "iscsi.target.query", "iscsi.targetextent.query", "iscsi.initiator.query",
        "iscsi.auth.query")}
    renamed = desired_from(inventory_text('''
m1: {mac: "52:54:00:00:00:01"}
m9: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}, renamed_from: m2}
'''))
    pend = nas.pending(renamed)
    assert {c.action for c in pend} == {Action.UPDATE}, [(c.action, str(c.address)) for c in pend]
    assert {c.kind for c in pend} == {"zvol", "extent", "initiator", "auth", "target"}
    [z] = [c for c in pend if c.kind == "zvol"]
    assert z.before == {"name": "tank/netboot/m2"} and z.after == {"name": "tank/netboot/m9"}
    _, report = nas.apply(renamed)
    assert report.complete, report.lines()
    assert nas.pending(renamed) == []
    ds = nas.datasets()
    assert "tank/netboot/m9" in ds and "tank/netboot/m2" not in ds
    assert nas.sim.read_data("tank/netboot/m9") == "m2's data"
    # the same objects, renamed: no id appeared or disappeared
    assert {m: nas.client.call(m, [], {"select": ["id"]}) for m in ids} == ids
    target = nas.one("iscsi.target.query", [["name", "=", "m9"]])
    extent = nas.one("iscsi.extent.query", [["name", "=", "m9"]])
    assert extent["disk"] == "zvol/tank/netboot/m9" and extent["comment"] == "netprov:managed zvol=tank/netboot/m9"
    mapping = nas.one("iscsi.targetextent.query", [["target", "=", target["id"]]])
    assert mapping["extent"] == extent["id"]
    init = nas.one("iscsi.initiator.query", [["id", "=", target["groups"][0]["initiator"]]])
    assert init["comment"] == "netprov:managed zvol=tank/netboot/m9"
    assert nas.one("iscsi.auth.query", [["tag", "=", target["groups"][0]["auth"]]])["user"] == "m9"
    # the net: the pre-rename state stays as a snapshot of the renamed disk
    assert nas.sim.read_data(f"tank/netboot/m9@netprov-{STAMP}") == "m2's data"
    # with renamed_from still in the inventory, a later plan is converged, not an error
    assert nas.pending(renamed, stamp="20261208T000000Z") == []


def test_declared_rename_without_snapshot_leaves_none(nas):
    d = desired_from(inventory_text(ONE))
    nas.apply(d)
    nas.sim.write_data("tank/netboot/m1", "kept")
    renamed = desired_from(inventory_text('m5: {mac: "52:54:00:00:00:01", renamed_from: m1}'))
    _, report = nas.apply(renamed, snapshot=False)
    assert report.complete, report.lines()
    assert nas.sim.read_data("tank/netboot/m5") == "kept"
    assert nas.snapshots() == set() and "tank/netboot/m1" not in nas.datasets()
    assert nas.pending(renamed) == []


def test_rename_refused_while_the_machine_is_booted(nas):
    d = desired_from(inventory_text(ONE))
    nas.apply(d)
    nas.sim.add_session("m1", "iqn.2010-04.org.ipxe:m1")
    renamed = desired_from(inventory_text('m5: {mac: "52:54:00:00:00:01", renamed_from: m1}'))
    [z] = [c for c in nas.pending(renamed) if c.kind == "zvol"]
    assert z.refused and "session" in z.refused
    _, report = nas.apply(renamed)
    assert not report.done
    assert "tank/netboot/m1" in nas.datasets()


def test_interrupted_rename_is_finished_by_the_next_apply(nas):
    d = desired_from(inventory_text(ONE))
    nas.apply(d)
    nas.sim.write_data("tank/netboot/m1", "half-way")
    ns = nas.st.snapshot_ns
    # a rename that stopped right after the clone: the new zvol exists (unmarked), the old one too
    nas.client.call(f"{ns}.create", {"dataset": "tank/netboot/m1", "name": "netprov-20261207T000000Z"})
    nas.client.call(f"{ns}.clone", {"snapshot": "tank/netboot/m1@netprov-20261207T000000Z",
                                    "dataset_dst": "tank/netboot/m5"})
    renamed = desired_from(inventory_text('m5: {mac: "52:54:00:00:00:01", renamed_from: m1}'))
    [z] = [c for c in nas.pending(renamed) if c.kind == "zvol"]
    assert z.action is Action.UPDATE and not z.refused and "interrupted" in z.reason
    _, report = nas.apply(renamed)
    assert report.complete, report.lines()
    assert "tank/netboot/m1" not in nas.datasets() and nas.sim.read_data("tank/netboot/m5") == "half-way"
    assert nas.pending(renamed) == []
