"""A big, slow NAS (issue 12, item 4): the read asks for only what netprov uses, seen on the wire.

On every simulator profile, 50 machines are applied on a NAS with the cost model switched on (small
costs), then:

* a converged plan makes at most 10 calls (the simulator counts what it receives);
* the one ``pool.dataset.query`` of a read, as the simulator received it, names exactly the ZFS
  properties netprov reads in ``extra.properties`` on every release that honours that option, sends no
  option a release ignores (CORE 12/13 pass only ``extra.flat`` on), never turns user properties off
  (netprov's marks are user properties), and makes the NAS read fewer properties than the same query
  without ``properties``;
* the NAS reads only the parent's subtree where the release can push the filter down (24.10, 25.04).

Before this change the read sent ``[["id", "^", parent]]`` with ``retrieve_children: false`` and no
``properties``: every profile read every property, and on 24.10/25.04 (whose real middleware starts a
non-pushed-down read at the pool roots) the read found no zvol at all, so the plan was not converged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import DATASET_PROPERTIES, TrueNASStorage, version_tuple
from netprov.core.storage import StoragePolicy, plan_storage, state_fingerprint
from truenas_sim import Simulator
from truenas_sim.profiles import PROFILES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from storage_helpers import desired_from, inventory_text

N = 50
PARENT = "tank/netboot"


def machines(n: int) -> str:
    return "\n".join(f'h{i:03d}: {{mac: "52:54:00:00:{i // 256:02x}:{i % 256:02x}"}}' for i in range(1, n + 1))


class Converged:
    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.sim = Simulator(profile=profile, users={"root": "read-cost-pw"}).start()
        k = self.sim.knobs
        k.dataset_cost, k.property_cost = 0.0002, 0.00001   # small: the path runs, the test stays fast
        k.call_cost = {"pool.dataset.create": 0.001}
        # FreeNAS 11.3 has no API keys: username and password there
        creds = (Credentials(username="root", password="read-cost-pw") if profile == "11.3"
                 else Credentials(api_key=self.sim.api_key))
        self.client = TrueNASClient.connect(self.sim.url, creds)
        self.client.call("pool.dataset.create", {"name": PARENT, "type": "FILESYSTEM"})
        # some datasets that are not netprov's, beside the parent: a read should not have to pay for them
        self.client.call("pool.dataset.create", {"name": "tank/media", "type": "FILESYSTEM"})
        for i in range(20):
            self.client.call("pool.dataset.create", {"name": f"tank/media/d{i}", "type": "FILESYSTEM"})
        self.st = TrueNASStorage(self.client, "nas", None)
        self.desired = desired_from(inventory_text(machines(N)))
        actual = self.st.read(self.desired)
        report = self.st.apply(plan_storage(self.desired, actual),
                               expected_fingerprint=state_fingerprint(actual), desired=self.desired)
        assert report.complete, report.lines()[:5]

    def close(self) -> None:
        self.client.close()
        self.sim.stop()


@pytest.fixture(scope="module", params=sorted(PROFILES))
def nas(request):
    n = Converged(request.param)
    yield n
    n.close()


def test_converged_plan_makes_at_most_10_calls(nas):
    nas.sim.round_trips.clear()
    changes = plan_storage(nas.desired, nas.st.read(nas.desired))
    assert [str(c.address) for c in changes if c.is_change] == []
    assert sum(1 for c in changes if c.kind == "zvol") == N
    calls = sum(nas.sim.round_trips.values())
    assert 0 < calls <= 10, dict(nas.sim.round_trips)


def test_dataset_query_asks_for_only_the_properties_netprov_reads(nas):
    nas.sim.nas.dataset_reads.clear()
    nas.st.read(nas.desired)
    reads = list(nas.sim.nas.dataset_reads)
    assert len(reads) == 1, reads
    seen = reads[0]
    extra = seen["options"].get("extra") or {}
    version = version_tuple(PROFILES[nas.profile].version_string)
    assert extra.get("retrieve_user_props", True) is True        # netprov's marks are user properties
    if (12, 0) <= version < (20, 0):
        # CORE passes only extra.flat to ZFS: nothing it would ignore is sent
        assert set(extra) <= {"flat"}, extra
        return
    assert sorted(extra.get("properties") or []) == sorted(DATASET_PROPERTIES) == \
        ["origin", "refreservation", "volblocksize", "volsize"]
    # the same query without `properties` makes the NAS read more
    unlimited = dict(seen["options"], extra={k: v for k, v in extra.items() if k != "properties"})
    nas.client.call("pool.dataset.query", seen["filters"], unlimited)
    full = nas.sim.nas.dataset_reads[-1]
    assert full["datasets"] == seen["datasets"]
    assert seen["properties"] < full["properties"]
    if (20, 0) <= version < (25, 10):
        # 24.10/25.04 push `id = parent` down to ZFS: the parent and its zvols, not tank/media's 21 datasets
        assert seen["datasets"] == N + 1, seen


def test_apply_lookups_ask_for_only_what_they_read(nas):
    """A removed machine (allow_destroy): the zvol is checked (a lookup of its marks), kept as a retired
    clone, then deleted. The lookup names the properties it reads (none: the marks are user properties)
    where the release honours ``properties``."""
    fewer = desired_from(inventory_text(machines(N - 1)))
    actual = nas.st.read(fewer)
    policy = StoragePolicy(allow_destroy=True, stamp="20261207T190000Z")
    changes = plan_storage(fewer, actual, policy)
    assert any(c.kind == "zvol" and c.action.value == "delete" for c in changes)
    nas.sim.nas.dataset_reads.clear()
    report = nas.st.apply(changes, expected_fingerprint=state_fingerprint(actual), desired=fewer)
    assert report.complete, report.lines()[:5]
    lookups = [r for r in nas.sim.nas.dataset_reads if r["filters"] == [["id", "=", r["filters"][0][2]]]
               and not (r["options"].get("extra") or {}).get("retrieve_children", True)]
    assert lookups, list(nas.sim.nas.dataset_reads)
    version = version_tuple(PROFILES[nas.profile].version_string)
    for r in lookups:
        extra = r["options"]["extra"]
        if (12, 0) <= version < (20, 0):
            assert "properties" not in extra
        else:
            # the mark check reads none; the net's resumable retire reads the kept copy's origin
            assert set(extra["properties"]) <= {"origin"}, extra
