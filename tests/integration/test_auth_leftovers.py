"""Leftover CHAP auth rows after a failed apply are reused or deleted (issue 10, item 5).

For every call k of a one-machine CHAP apply, the simulator fails call k (``fail_call``); the apply
is run again twice with the same fault, then once cleanly. Before the fix every failure between the
auth create and the target create left an auth row (with the machine's secret) that no target used,
and every retry added another. Now: exactly one auth row carries the machine's user, its target uses
it, no row is left unused, and a plan after the clean rerun is empty. A dropped connection right
after the auth create (``drop_at``) is covered the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.storage import plan_storage, state_fingerprint
from netprov.errors import NetprovError
from truenas_sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from storage_helpers import desired_from, inventory_text

CALLS = 32          # plan read (10) + apply read (10) + about 12 writes and checks of a one-machine CHAP apply


@pytest.fixture(scope="module")
def sim():
    s = Simulator(profile="25.04").start()
    s.knobs.rate_limit = False
    yield s
    s.stop()


def _apply(sim, desired, fault: str | None = None, k: int = 0):
    client = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    if fault == "fail_call":                    # counted from the apply's first call (after the login)
        sim.knobs.fail_call = (k, 22, f"injected failure at call {k}")
    elif fault == "drop_at":
        sim.knobs.drop_at = k
    try:
        st = TrueNASStorage(client, "nas", None)
        actual = st.read(desired)
        changes = plan_storage(desired, actual)
        return st.apply(changes, expected_fingerprint=state_fingerprint(actual), desired=desired)
    except NetprovError:
        return None                             # the injected fault hit a read; the next run must clean up
    finally:
        sim.knobs.fail_call = None
        sim.knobs.drop_at = None
        client.close()


def _machine(sim, name: str):
    admin = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    try:
        admin.call("pool.dataset.create", {"name": f"tank/{name}", "type": "FILESYSTEM"})
    finally:
        admin.close()
    text = inventory_text(f'{name}: {{mac: "52:54:00:00:00:01", chap: {{secret_env: S}}}}',
                          storage_extra=f"target_prefix: {name}-").replace("parent: tank/netboot",
                                                                           f"parent: tank/{name}")
    return desired_from(text, secrets={name: f"{name}-secret-12"[:16]})


def _state(sim, desired, name):
    c = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    try:
        rows = [r for r in c.call("iscsi.auth.query", [], {}) if r["user"] == name]
        targets = c.call("iscsi.target.query", [["name", "=", f"{name}-{name}"]], {})
        st = TrueNASStorage(c, "nas", None)
        pending = [str(x.address) for x in plan_storage(desired, st.read(desired)) if x.is_change]
    finally:
        c.close()
    return rows, targets, pending


def _check(sim, desired, name, what):
    rows, targets, pending = _state(sim, desired, name)
    assert pending == [], f"{what}: plan after a clean rerun: {pending}"
    assert len(targets) == 1, what
    tag = targets[0]["groups"][0]["auth"]
    assert [r["tag"] for r in rows] == [tag], f"{what}: auth rows of {name}: {rows and [(r['id'], r['tag']) for r in rows]}, target tag {tag}"


@pytest.mark.parametrize("fault", ["fail_call", "drop_at"])
def test_faults_leave_no_orphan_or_duplicate_auth_rows(sim, fault):
    hit = 0
    for k in range(1, CALLS + 1):
        name = f"{fault[0]}k{k}"
        d = _machine(sim, name)
        for attempt in range(3):                # the failing apply, then two retries that fail the same way
            report = _apply(sim, d, fault, k)
            if attempt == 0 and report is not None:
                _report_is_true(sim, d, name, report, f"{fault} at call {k}")
            rows, targets, _ = _state(sim, d, name)
            hit += bool(rows) and not targets   # auth made, target not: the window of the issue
        _apply(sim, d)                          # a plain rerun
        _check(sim, d, name, f"{fault} at call {k}")
    assert hit >= 2, "the faults never landed between the auth create and the target create"


def _report_is_true(sim, desired, name, report, what):
    """On a NAS that held nothing of the machine: an object exists iff the report says it was made."""
    m = desired.machines[name]
    c = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    try:
        exists = {
            f"zvol[{m.zvol}]": bool(c.call("pool.dataset.query", [["id", "=", m.zvol]], {})),
            f"extent[{m.target}]": bool(c.call("iscsi.extent.query", [["name", "=", m.target]], {})),
            f"initiator[{name}]": any(f"zvol={m.zvol}" in (i.get("comment") or "")
                                      for i in c.call("iscsi.initiator.query", [], {})),
            f"target[{m.target}]": bool(c.call("iscsi.target.query", [["name", "=", m.target]], {})),
        }
        exists[f"targetextent[{m.target}/{m.target}]"] = bool(c.call("iscsi.targetextent.query", [], {})) and \
            exists[f"target[{m.target}]"] and any(
                te["target"] == c.call("iscsi.target.query", [["name", "=", m.target]], {})[0]["id"]
                for te in c.call("iscsi.targetextent.query", [], {}))
        rows = [r for r in c.call("iscsi.auth.query", [], {}) if r["user"] == name]
    finally:
        c.close()
    done = {str(x.address) for x in report.done}
    for address, there in exists.items():
        assert (address in done) == there, f"{what}: {address} exists={there}, reported done={address in done}"
    if f"auth[{name}]" in done:
        assert rows, what


def test_an_exception_escaping_after_changes_carries_what_was_done(sim):
    """Ctrl-C twice (KeyboardInterrupt out of ``should_stop``) after some changes: every change made was
    reported through ``progress`` before the raise, and the exception carries the same partial report."""
    d = _machine(sim, "intr")
    client = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    seen: list[str] = []
    polls = {"n": 0}

    def should_stop() -> bool:
        polls["n"] += 1
        if polls["n"] == 4:                      # after the portal, zvol and extent
            raise KeyboardInterrupt
        return False

    try:
        st = TrueNASStorage(client, "nas", None)
        actual = st.read(d)
        with pytest.raises(KeyboardInterrupt) as info:
            st.apply(plan_storage(d, actual), expected_fingerprint=state_fingerprint(actual), desired=d,
                     progress=lambda ev, c, err: seen.append(str(c.address)) if ev == "done" else None,
                     should_stop=should_stop)
    finally:
        client.close()
    report = info.value.storage_report
    assert [str(c.address) for c in report.done] == seen and f"zvol[{d.machines['intr'].zvol}]" in seen
