"""Storage plan/apply against the TrueNAS simulator over real websockets (no mocks of the NAS).

Every scenario runs on every profile netprov supports: FreeNAS 11.3 (legacy websocket, password login, no
API keys), CORE 13, SCALE 24.10, 25.04 (JSON-RPC), 25.10 (service.control job, pool.snapshot) and 26.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.plan import Action
from netprov.core.storage import StoragePolicy, plan_storage, state_fingerprint
from netprov.errors import StalePlanError
from truenas_sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from storage_helpers import SECRET, desired_from, inventory_text

from truenas_sim.profiles import PROFILE_ORDER

BOTH = list(PROFILE_ORDER)   # every profile: 11.3, 13, 24.10, 25.04, 25.10, 26
PASSWORD = "Root-pw-0001"

TWO = '''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}}
'''


class Nas:
    """A started simulator, a logged-in client and the storage backend on it."""

    def __init__(self, profile: str) -> None:
        self.sim = Simulator(profile=profile, users={"root": PASSWORD}).start()
        # FreeNAS 11.3 has no API keys (plugins/api_key.py arrived in 12): username and password
        creds = (Credentials(username="root", password=PASSWORD) if profile == "11.3"
                 else Credentials(api_key=self.sim.api_key))
        self.client = TrueNASClient.connect(self.sim.url, creds)
        self.client.call("pool.dataset.create", {"name": "tank/netboot", "type": "FILESYSTEM"})
        self.st = TrueNASStorage(self.client, "nas", None)

    def close(self) -> None:
        self.client.close()
        self.sim.stop()

    def plan(self, desired, **policy):
        actual = self.st.read(desired)
        return plan_storage(desired, actual, StoragePolicy(**policy)), state_fingerprint(actual)

    def apply(self, desired, **policy):
        changes, fp = self.plan(desired, **policy)
        report = self.st.apply(changes, expected_fingerprint=fp, desired=desired)
        return changes, report

    def pending(self, desired, **policy):
        return [c for c in self.plan(desired, **policy)[0] if c.is_change]

    def q(self, method, filters=None):
        return self.client.call(method, filters or [], {})


@pytest.fixture(params=BOTH)
def nas(request):
    n = Nas(request.param)
    yield n
    n.close()


def inv(machines: str, **kw) -> str:
    return inventory_text(machines, **kw)


@pytest.mark.parametrize("profile", BOTH)
def test_apply_then_plan_is_empty(profile):
    n = Nas(profile)
    try:
        d = desired_from(inv(TWO))
        _, report = n.apply(d)
        assert report.complete, report.lines()
        assert {c.kind for c in report.done} >= {"zvol", "extent", "initiator", "auth", "target", "targetextent",
                                                "portal", "service"}
        assert n.pending(d) == []
        svc = n.q("service.query", [["service", "=", "iscsitarget"]])[0]
        assert svc["enable"] is True and svc["state"] == "RUNNING"
        zv = n.q("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])[0]
        if profile in ("11.3", "13"):
            assert zv["comments"]["parsed"] == "netprov:managed zvol=tank/netboot/m1"
        else:
            assert zv["user_properties"]["netprov:managed"]["parsed"] == "true"
            assert zv["user_properties"]["netprov:machine"]["parsed"] == "m1"
        ini = n.q("iscsi.initiator.query")
        assert sorted(i["initiators"][0] for i in ini) == ["iqn.2010-04.org.ipxe:m1", "iqn.2010-04.org.ipxe:m2"]
        t2 = n.q("iscsi.target.query", [["name", "=", "m2"]])[0]
        assert t2["groups"][0]["authmethod"] == "CHAP"
        # a rerun converges without touching anything
        _, report2 = n.apply(d)
        assert report2.done == [] and report2.failed == []
        assert not [k for k in report2.round_trips if not k.endswith((".query", ".config", ".sessions"))]
    finally:
        n.close()


def test_read_round_trips_do_not_grow_with_machines(nas):
    counts = []
    for n_machines in (3, 30):
        body = "\n".join(f'h{i:03d}: {{mac: "52:54:00:00:{i // 256:02x}:{i % 256:02x}"}}' for i in range(1, n_machines + 1))
        d = desired_from(inv(body))
        nas.apply(d)
        before = sum(nas.client.round_trips.values())
        nas.st.read(d)
        counts.append(sum(nas.client.round_trips.values()) - before)
    assert counts[0] == counts[1] <= 10


def test_drift_shows_and_converges(nas):
    d = desired_from(inv('''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02"}
m3: {mac: "52:54:00:00:00:03"}
'''))
    nas.apply(d)
    c = nas.client
    ext = c.call("iscsi.extent.query", [["name", "=", "m1"]], {})[0]
    c.call("iscsi.extent.delete", ext["id"], False, False)                    # extent deleted by hand
    t2 = c.call("iscsi.target.query", [["name", "=", "m2"]], {})[0]
    c.call("iscsi.target.update", t2["id"], {"name": "m2-renamed"})            # target renamed by hand
    i3 = next(i for i in c.call("iscsi.initiator.query", [], {}) if "m3" in i["initiators"][0])
    c.call("iscsi.initiator.update", i3["id"], {"initiators": []})             # opened to everyone
    pend = {(x.action, str(x.address)) for x in nas.pending(d)}
    assert pend == {(Action.CREATE, "extent[m1]"), (Action.CREATE, "targetextent[m1/m1]"),
                    (Action.UPDATE, "target[m2]"), (Action.UPDATE, "initiator[m3]")}
    _, report = nas.apply(d)
    assert report.complete, report.lines()
    assert nas.pending(d) == []


def test_zvol_resized_by_hand_and_grow(nas):
    d = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
    nas.apply(d)
    nas.client.call("pool.dataset.update", "tank/netboot/m1", {"volsize": 32 * 2**30})   # grown by hand
    [ch] = nas.pending(d)
    assert ch.action is Action.REPLACE and ch.refused and "shrink" in ch.reason
    _, report = nas.apply(d)
    assert report.done == [] and report.skipped and not report.failed
    bigger = desired_from(inv('m1: {mac: "52:54:00:00:00:01", disk: {size: 48G}}'))
    [ch] = nas.pending(bigger)
    assert ch.action is Action.UPDATE and ch.after["volsize"] == "48G"
    _, report = nas.apply(bigger)
    assert report.complete and nas.pending(bigger) == []


def test_orphan_without_then_with_allow_destroy(nas):
    d2 = desired_from(inv(TWO))
    nas.apply(d2)
    d1 = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
    pend = nas.pending(d1)
    assert [c.kind for c in pend] == ["targetextent", "target", "auth", "initiator", "extent", "zvol"]
    assert all(c.action is Action.DELETE and "--allow-destroy" in c.refused for c in pend)
    assert "target[m2]" in map(str, pend[-1].cascade)
    _, report = nas.apply(d1)
    assert not report.done and len(report.skipped) == 6
    assert nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m2"]])
    _, report = nas.apply(d1, allow_destroy=True)
    assert report.complete, report.lines()
    assert [c.kind for c in report.done] == ["targetextent", "target", "auth", "initiator", "extent", "zvol"]
    assert not nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m2"]])
    assert not nas.q("iscsi.target.query", [["name", "=", "m2"]])
    assert nas.q("iscsi.auth.query") == []
    assert nas.pending(d1, allow_destroy=True) == []


def test_target_in_use_blocks_delete_and_replace(nas):
    d2 = desired_from(inv(TWO))
    nas.apply(d2)
    nas.sim.add_session("m2", "iqn.2010-04.org.ipxe:m2")
    nas.sim.add_session("m1", "iqn.2010-04.org.ipxe:m1")
    d1 = desired_from(inv('m1: {mac: "52:54:00:00:00:01", disk: {size: 8G}}'))
    changes, _ = nas.plan(d1, allow_destroy=True)
    pend = [c for c in changes if c.is_change]
    assert pend and all(c.refused and "session" in c.refused for c in pend)
    _, report = nas.apply(d1, allow_destroy=True)
    assert not report.done and not report.failed
    assert nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m2"]])
    assert nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])[0]["volsize"]["parsed"] == 16 * 2**30


def test_shrink_and_volblocksize_refused_then_replaced(nas):
    d = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
    nas.apply(d)
    small = desired_from(inv('m1: {mac: "52:54:00:00:00:01", disk: {size: 8G}}'))
    [ch] = nas.pending(small)
    assert ch.action is Action.REPLACE and "--allow-destroy" in ch.refused
    vbs = desired_from(inv('m1: {mac: "52:54:00:00:00:01", disk: {volblocksize: 64K}}'))
    [ch] = nas.pending(vbs)
    assert ch.action is Action.REPLACE and "volblocksize" in ch.reason and ch.refused
    _, report = nas.apply(small, allow_destroy=True)
    assert report.complete, report.lines()
    assert [(c.action.value, c.kind) for c in report.done] == [
        ("replace", "zvol"), ("create", "extent"), ("create", "targetextent")]
    assert nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])[0]["volsize"]["parsed"] == 8 * 2**30
    assert nas.pending(small) == []
    assert nas.q("iscsi.target.query", [["name", "=", "m1"]])   # the target survived


def test_name_clash_with_unmanaged_objects(nas):
    c = nas.client
    c.call("pool.dataset.create", {"name": "tank/netboot/m1", "type": "VOLUME", "volsize": 16 * 2**30,
                                   "volblocksize": "16K", "sparse": True})
    c.call("pool.dataset.create", {"name": "tank/other", "type": "FILESYSTEM"})
    c.call("pool.dataset.create", {"name": "tank/other/disk", "type": "VOLUME", "volsize": 2**30,
                                   "volblocksize": "16K", "sparse": True})
    c.call("iscsi.extent.create", {"name": "m2", "type": "DISK", "disk": "zvol/tank/other/disk"})
    d = desired_from(inv('''
m1: {mac: "52:54:00:00:00:01"}
m2: {mac: "52:54:00:00:00:02"}
'''))
    pend = nas.pending(d)
    refused = {str(x.address): x.refused for x in pend if x.refused}
    assert "not managed by netprov" in refused["zvol[tank/netboot/m1]"]
    assert "not managed by netprov" in refused["extent[m2]"]
    _, report = nas.apply(d)
    assert not report.failed
    assert not any(x.machine == "m1" for x in report.done)
    assert c.call("iscsi.extent.query", [["name", "=", "m2"]], {})[0]["disk"] == "zvol/tank/other/disk"
    # adopt takes them over, explicitly
    _, report = nas.apply(d, adopt=True)
    assert report.complete, report.lines()
    assert nas.pending(d) == []


def test_chap_on_off_and_missing_secret(nas):
    off = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
    nas.apply(off)
    on = desired_from(inv('m1: {mac: "52:54:00:00:00:01", chap: {secret_env: M1_CHAP}}'))
    _, report = nas.apply(on)
    assert [str(c.address) for c in report.done] == ["auth[m1]", "target[m1]"]
    t = nas.q("iscsi.target.query")[0]
    assert t["groups"][0]["authmethod"] == "CHAP"
    assert nas.pending(on) == []
    _, report = nas.apply(off)
    assert [str(c.address) for c in report.done] == ["target[m1]", "auth[m1]"]
    assert nas.q("iscsi.auth.query") == [] and nas.pending(off) == []
    missing = desired_from(inv('m1: {mac: "52:54:00:00:00:01", chap: {secret_env: M1_CHAP}}'), secrets={"m1": None})
    _, report = nas.apply(missing)
    assert not report.done and str(report.skipped[0][0].address) == "auth[m1]"
    assert "not available" in report.skipped[0][1]


def test_golden_snapshot_clone(nas):
    nas.sim.add_snapshot("tank/golden/debian@v1", volsize=8 * 2**30, volblocksize="16K")
    d = desired_from(inv('''
m1: {mac: "52:54:00:00:00:01", disk: {clone_from: "tank/golden/debian@v1"}}
m2: {mac: "52:54:00:00:00:02", disk: {clone_from: "tank/golden/debian@v1", size: 32G}}
''').replace("disk: {size: 16G, sparse: true}", "disk: {sparse: true}"))
    _, report = nas.apply(d)
    assert report.complete, report.lines()
    z1, z2 = (nas.q("pool.dataset.query", [["id", "=", f"tank/netboot/{m}"]])[0] for m in ("m1", "m2"))
    assert z1["origin"]["parsed"] == "tank/golden/debian@v1"
    assert z1["volsize"]["parsed"] == 8 * 2**30 and z2["volsize"]["parsed"] == 32 * 2**30
    assert nas.pending(d) == []


def test_freenas_length_names():
    n = Nas("13")
    try:
        long = "a" * 40 + "-" + "b" * 22
        d = desired_from(inv(f'{long}: {{mac: "52:54:00:00:00:01"}}', storage_extra="target_prefix: lab-a-"))
        _, report = n.apply(d)
        assert report.complete, report.lines()
        [t] = n.q("iscsi.target.query")
        assert len(t["name"]) <= 64 and t["name"].startswith("lab-a-")
        assert n.pending(d) == []
    finally:
        n.close()


def test_stale_plan_is_refused(nas):
    d = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
    changes, fp = nas.plan(d)
    nas.client.call("iscsi.initiator.create", {"initiators": ["iqn.2000-01.lan:other"], "comment": "by hand"})
    with pytest.raises(StalePlanError):
        nas.st.apply(changes, expected_fingerprint=fp, desired=d)
    assert not nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])


def test_extent_create_waits_for_the_zvol_device(nas):
    nas.sim.knobs.zvol_device_lag = 2
    d = desired_from(inv(TWO))
    _, report = nas.apply(d)
    assert report.complete, report.lines()
    assert nas.pending(d) == []


def test_one_failing_machine_stops_only_its_chain(nas):
    bad = "short"                      # TrueNAS refuses CHAP secrets under 12 characters
    d = desired_from(inv(TWO), secrets={"m2": bad})
    events = []
    changes, fp = nas.plan(d)
    report = nas.st.apply(changes, expected_fingerprint=fp, desired=d,
                          progress=lambda ev, c, err: events.append((ev, str(c.address))))
    assert [str(c.address) for c, _ in report.failed] == ["auth[m2]"]
    assert {str(c.address) for c, _ in report.skipped} == {"target[m2]", "targetextent[m2/m2]"}
    assert {"target[m1]", "targetextent[m1/m1]", "service[iscsitarget]"} <= {str(c.address) for c in report.done}
    assert ("failed", "auth[m2]") in events and ("skipped", "target[m2]") in events
    assert ("start", "zvol[tank/netboot/m1]") in events and ("done", "zvol[tank/netboot/m1]") in events
    text = json.dumps(report.to_json())
    assert bad not in text.replace("short1", "")
    # fixing the secret and rerunning converges
    good = desired_from(inv(TWO))
    _, report = nas.apply(good)
    assert report.complete and nas.pending(good) == []


def test_secrets_never_reach_plan_or_report(nas):
    d = desired_from(inv(TWO))
    changes, report = nas.apply(d)
    blob = json.dumps([c.to_json() for c in changes]) + json.dumps([c.payload.to_json() for c in changes if c.payload]) + \
        json.dumps(report.to_json()) + "\n".join(report.lines())
    assert SECRET not in blob
    assert SECRET not in json.dumps(nas.st.read(d).to_json())


def test_running_service_is_never_started_again():
    n = Nas("13")
    try:
        d = desired_from(inv('m1: {mac: "52:54:00:00:00:01"}'))
        n.apply(d)
        n.client.call("service.update", "iscsitarget", {"enable": False})
        n.sim.add_session("m1", "iqn.2010-04.org.ipxe:m1")
        restarts = n.sim.restart_count
        [ch] = n.pending(d)
        assert str(ch.address) == "service[iscsitarget]" and ch.after == {"enable": True}
        _, report = n.apply(d)
        assert report.complete
        assert n.sim.restart_count == restarts
        assert n.q("iscsi.global.sessions")           # the session survived
    finally:
        n.close()


def test_machines_filter_plans_only_those(nas):
    d = desired_from(inv(TWO))
    changes, _ = nas.plan(d, machines={"m2"})
    assert {c.machine for c in changes if c.machine} == {"m2"}


def test_bulk_apply_converges_and_keeps_errors_attributable(nas):
    """core.bulk path: one job per kind; a failing item fails only its machine."""
    body = "\n".join(f'b{i:02d}: {{mac: "52:54:00:00:01:{i:02x}"}}' for i in range(1, 31))
    d = desired_from(inv(body))
    nas.client.call("pool.dataset.create", {"name": "tank/x", "type": "FILESYSTEM"})
    nas.client.call("pool.dataset.create", {"name": "tank/x/v", "type": "VOLUME", "volsize": 2**30,
                                            "volblocksize": "16K", "sparse": True})
    changes, fp = nas.plan(d)
    # and make b13's extent create fail on the NAS after planning (a serial already taken)
    b13 = next(c for c in changes if str(c.address) == "extent[b13]")
    nas.client.call("iscsi.extent.create", {"name": "hand", "type": "DISK", "disk": "zvol/tank/x/v",
                                            "serial": b13.payload.serial})
    changes, fp = nas.plan(d)
    report = nas.st.apply(changes, expected_fingerprint=fp, desired=d, bulk=True)
    assert nas.client.round_trips["core.bulk"] >= 5
    if nas.sim.profile.core:
        # CORE/FreeNAS accept a duplicate extent serial (TN-13.0-U6.1 / TN-11.3-U5 plugins/iscsi.py
        # clean_name has no uniqueness rule): nothing fails there
        assert report.complete and nas.pending(d) == []
        return
    assert [str(c.address) for c, _ in report.failed] == ["extent[b13]"]
    assert "serial" in report.failed[0][1].lower()
    assert {str(c.address) for c, _ in report.skipped} == {"initiator[b13]", "target[b13]", "targetextent[b13/b13]"}
    done = {str(c.address) for c in report.done}
    assert "targetextent[b30/b30]" in done and "zvol[tank/netboot/b13]" in done
    ext = nas.client.call("iscsi.extent.query", [["name", "=", "hand"]], {})[0]
    nas.client.call("iscsi.extent.delete", ext["id"], False, False)
    _, report = nas.apply(d)
    assert report.complete and nas.pending(d) == []


def test_auto_bulk_follows_the_round_trip():
    """bulk=None: pipelined on a fast link, core.bulk when each round trip is slow."""
    n = Nas("25.04")
    try:
        body = "\n".join(f'c{i:02d}: {{mac: "52:54:00:00:02:{i:02x}"}}' for i in range(1, 26))
        d = desired_from(inv(body))
        n.sim.knobs.latency = 0.02
        _, report = n.apply(d)
        assert report.complete and n.client.round_trips["core.bulk"] >= 5
        n.sim.knobs.latency = 0.0
        d2 = desired_from(inv(body + "\n" + "\n".join(
            f'd{i:02d}: {{mac: "52:54:00:00:03:{i:02x}"}}' for i in range(1, 26))))
        bulks = n.client.round_trips["core.bulk"]
        _, report = n.apply(d2)
        assert report.complete and n.client.round_trips["core.bulk"] == bulks
        assert n.pending(d2) == []
    finally:
        n.close()


def test_engine_style_two_phase_apply(nas):
    """The engine applies creates/updates/replaces first and DELETEs later (after boot files), each with
    NOOPs along and a fresh fingerprint for the second phase. Replace, CHAP off and orphans all work."""
    d = desired_from(inv(TWO + 'm3: {mac: "52:54:00:00:00:03"}\n'))
    nas.apply(d)
    d2 = desired_from(inv('''
m1: {mac: "52:54:00:00:00:01", disk: {size: 8G}}
m2: {mac: "52:54:00:00:00:02"}
'''))
    changes, fp = nas.plan(d2, allow_destroy=True)
    first = [c for c in changes if c.action is not Action.DELETE]
    r1 = nas.st.apply(first, expected_fingerprint=fp, desired=d2)
    assert r1.complete, r1.lines()
    current = nas.st.fingerprint(nas.st.read(d2))
    second = [c for c in changes if c.action in (Action.DELETE, Action.NOOP)]
    assert {c.machine for c in second if c.action is Action.DELETE} == {"m2", "m3"}
    r2 = nas.st.apply(second, expected_fingerprint=current, desired=d2)
    assert r2.complete, r2.lines()
    assert nas.pending(d2, allow_destroy=True) == []
    assert nas.q("pool.dataset.query", [["id", "=", "tank/netboot/m1"]])[0]["volsize"]["parsed"] == 8 * 2**30
