"""Two applies racing on one NAS never leave two machines sharing CHAP credentials (issue 10, item 1).

Each apply has its own websocket client, as two hosts would. Both plan, then both apply at the same
moment against the simulator with latency, so their reads happen before either writes and their auth
creates overlap. Before the fix each side picked "highest tag + 1" from its own read, and the two
auth rows landed on one tag in most rounds (measured: see the report in the commit / ADR 0005).

Two layouts, as in the issue: two inventories with their own parent and target prefix on one NAS,
and one inventory split between the two applies with ``--target`` (``StoragePolicy.machines``).
After every round: no tag holds a row of one machine and is used by another machine's target, each
target's auth group holds exactly its own machine's credential (compared by secret, which the
simulator returns to a full admin), and a plain rerun converges with no orphan auth rows.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.storage import StoragePolicy, plan_storage, state_fingerprint
from netprov.errors import StalePlanError
from truenas_sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from storage_helpers import desired_from, inventory_text

ROUNDS = 4
LATENCY = 0.06

MACHINES = "\n".join(f'm{i}: {{mac: "52:54:00:00:0{{side}}:0{i}", chap: {{secret_env: M{i}}}}}' for i in (1, 2, 3))
SPLIT = "\n".join(f'm{i}: {{mac: "52:54:00:00:00:0{i}", chap: {{secret_env: M{i}}}}}' for i in (1, 2, 3, 4))


def _secrets(names, tag: str) -> dict[str, str]:
    return {n: f"{tag}-{n}-secret-x"[:16].ljust(12, "z") for n in names}


class Side:
    """One host running netprov: its own connection, its own inventory and target filter."""

    def __init__(self, sim: Simulator, desired, machines=None) -> None:
        self.client = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
        self.st = TrueNASStorage(self.client, "nas", None)
        self.desired = desired
        self.policy = StoragePolicy(machines=frozenset(machines) if machines else None)
        self.report = None
        self.error: BaseException | None = None

    def plan(self):
        actual = self.st.read(self.desired)
        return plan_storage(self.desired, actual, self.policy), state_fingerprint(actual)

    def apply(self, changes, fp, barrier: threading.Barrier | None = None) -> None:
        try:
            if barrier is not None:
                barrier.wait(10)
            self.report = self.st.apply(changes, expected_fingerprint=fp, desired=self.desired)
        except StalePlanError as e:      # the other side wrote before this one read: a safe outcome
            self.error = e

    def close(self) -> None:
        self.client.close()


def _race(a: Side, b: Side) -> None:
    pa, pb = a.plan(), b.plan()
    barrier = threading.Barrier(2)
    ta = threading.Thread(target=a.apply, args=(*pa, barrier))
    tb = threading.Thread(target=b.apply, args=(*pb, barrier))
    ta.start()
    tb.start()
    ta.join(60)
    tb.join(60)
    assert not ta.is_alive() and not tb.is_alive()


def _credentials_problems(sim: Simulator, sides: list[Side]) -> list[str]:
    """Every target of the sides' machines uses a tag that holds exactly that machine's credential."""
    client = sides[0].client
    auths = client.call("iscsi.auth.query", [], {})
    targets = {t["name"]: t for t in client.call("iscsi.target.query", [], {})}
    by_tag: dict[int, list[dict]] = {}
    for r in auths:
        by_tag.setdefault(r["tag"], []).append(r)
    problems = []
    owner_of_tag: dict[int, str] = {}
    for s in sides:
        for name, m in s.desired.machines.items():
            t = targets.get(m.target)
            if t is None:
                continue
            for g in t["groups"]:
                if g.get("auth") is None:
                    continue
                who = f"{s.desired.parent}:{name}"
                prev = owner_of_tag.setdefault(g["auth"], who)
                if prev != who:
                    problems.append(f"tag {g['auth']} used by the targets of {prev} and {who}")
                rows = by_tag.get(g["auth"], [])
                creds = sorted((r["user"], r["secret"]) for r in rows)
                if creds != [(m.chap_user, s.desired.secret(name))]:
                    problems.append(f"target {m.target} (tag {g['auth']}) accepts {len(rows)} credential(s), "
                                    f"{'not only its own' if rows else 'none'}")
    return problems


def _orphans(client) -> list[dict]:
    used = {g["auth"] for t in client.call("iscsi.target.query", [], {}) for g in t["groups"] if g.get("auth")}
    return [r for r in client.call("iscsi.auth.query", [], {}) if r["tag"] not in used]


def _pending(side: Side) -> list[str]:
    return [str(c.address) for c in side.plan()[0] if c.is_change]


def _layouts(sim: Simulator, layout: str, r: int) -> tuple[Side, Side]:
    if layout == "two-inventories":
        sides = []
        for side in ("a", "b"):
            parent = f"tank/r{r}{side}"
            sim.nas_admin.call("pool.dataset.create", {"name": parent, "type": "FILESYSTEM"})
            text = inventory_text(MACHINES.replace("{side}", "1" if side == "a" else "2"),
                                  storage_extra=f"target_prefix: r{r}{side}-").replace(
                "parent: tank/netboot", f"parent: {parent}")
            d = desired_from(text, secrets=_secrets(["m1", "m2", "m3"], side))
            sides.append(Side(sim, d))
        return sides[0], sides[1]
    parent = f"tank/r{r}"
    sim.nas_admin.call("pool.dataset.create", {"name": parent, "type": "FILESYSTEM"})
    text = inventory_text(SPLIT, storage_extra=f"target_prefix: r{r}-").replace(
        "parent: tank/netboot", f"parent: {parent}")
    d = desired_from(text, secrets=_secrets(["m1", "m2", "m3", "m4"], "s"))
    return Side(sim, d, {"m1", "m2"}), Side(sim, d, {"m3", "m4"})


def race_rounds(layout: str, rounds: int = ROUNDS, latency: float = LATENCY, check=True) -> dict:
    """Run ``rounds`` races; return counts (also used to measure the old code by hand)."""
    sim = Simulator(profile="25.04").start()
    sim.knobs.rate_limit = False          # two logins a round from one address
    sim.nas_admin = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    out = {"rounds": 0, "shared_after_race": 0, "stale": 0, "moves": 0}
    try:
        for r in range(rounds):
            a, b = _layouts(sim, layout, r)
            try:
                sim.knobs.latency = latency
                deletes = sim.round_trips["iscsi.auth.delete"]
                _race(a, b)
                sim.knobs.latency = 0.0
                out["rounds"] += 1
                out["moves"] = out.get("moves", 0) + sim.round_trips["iscsi.auth.delete"] - deletes
                out["stale"] += (a.error is not None) + (b.error is not None)
                problems = _credentials_problems(sim, [a, b])
                out["shared_after_race"] += bool(problems)
                if not check:
                    continue
                assert problems == [], f"round {r}: {problems}"
                # the reports are true: nothing failed, and each side reports exactly the targets and auth
                # groups that now exist for its machines (a row it made and gave up is not reported as made)
                targets = {t["name"] for t in a.client.call("iscsi.target.query", [], {})}
                for s in (a, b):
                    if s.report is None:
                        continue
                    assert s.report.failed == [], s.report.lines()
                    mine = [m for n, m in s.desired.machines.items() if s.policy.machines is None
                            or n in s.policy.machines]
                    assert {str(c.address) for c in s.report.done if c.kind in ("target", "auth")} == (
                        {f"target[{m.target}]" for m in mine if m.target in targets}
                        | {f"auth[{m.name}]" for m in mine if m.target in targets})
                # one portal, made by one side; the other says it did not create it
                portal_done = [c for s in (a, b) if s.report for c in s.report.done if c.kind == "portal"]
                portal_skip = [w for s in (a, b) if s.report for c, w in s.report.skipped if c.kind == "portal"]
                assert len(a.client.call("iscsi.portal.query", [], {})) == 1
                if r == 0 and a.error is None and b.error is None:
                    assert len(portal_done) == 1 and len(portal_skip) == 1 and "not created" in portal_skip[0]
                # a plain rerun (each side again, one after the other) converges, still with no sharing
                for s in (a, b):
                    changes, fp = s.plan()
                    rep = s.st.apply(changes, expected_fingerprint=fp, desired=s.desired)
                    assert rep.failed == [], rep.lines()
                assert _pending(a) == [] and _pending(b) == []
                assert _credentials_problems(sim, [a, b]) == []
                assert _orphans(a.client) == []
            finally:
                a.close()
                b.close()
    finally:
        sim.nas_admin.close()
        sim.stop()
    return out


@pytest.mark.parametrize("layout", ["two-inventories", "split"])
def test_racing_applies_never_share_chap_credentials(layout):
    out = race_rounds(layout)
    assert out["rounds"] == ROUNDS
    assert out["moves"] > 0, "the applies never collided on a tag: the race did not happen"


if __name__ == "__main__":      # measurement by hand: python tests/integration/test_auth_race.py [rounds] [latency]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    lat = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    for lay in ("two-inventories", "split"):
        print(lay, race_rounds(lay, n, lat, check=False))


def test_crowded_auth_group_is_drift_and_apply_fixes_it():
    """The state the race left (a second machine's row on a target's tag) is planned and fixed."""
    sim = Simulator(profile="25.04").start()
    sim.knobs.rate_limit = False
    sim.nas_admin = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    try:
        a, b = _layouts(sim, "split", 0)
        for s in (a, b):
            changes, fp = s.plan()
            assert s.st.apply(changes, expected_fingerprint=fp, desired=s.desired).complete
        assert _pending(a) == [] and _pending(b) == []
        c = sim.nas_admin
        t1 = c.call("iscsi.target.query", [["name", "=", "r0-m1"]], {})[0]
        tag = t1["groups"][0]["auth"]
        # m3's credential lands on m1's tag (what a racing apply did before the fix)
        c.call("iscsi.auth.create", {"tag": tag, "user": "m3", "secret": b.desired.secret("m3"),
                                     "peeruser": "", "peersecret": ""})
        assert _credentials_problems(sim, [a, b]) != []
        pending = _pending(a)
        assert "auth[m1]" in pending and "target[r0-m1]" in pending, pending
        changes, fp = a.plan()
        rep = a.st.apply(changes, expected_fingerprint=fp, desired=a.desired)
        rep2 = a.st.apply([x for x in a.plan()[0]], expected_fingerprint=None, desired=a.desired)
        assert rep.failed == [] and rep2.failed == [], rep.lines() + rep2.lines()
        assert _credentials_problems(sim, [a, b]) == []
        assert _pending(a) == []
        # the foreign row was never adopted or deleted by m1's plan
        assert [r["user"] for r in c.call("iscsi.auth.query", [["tag", "=", tag]], {})] == ["m3"]
        a.close()
        b.close()
    finally:
        sim.nas_admin.close()
        sim.stop()


from tests.integration.test_cli_live import lab, netprov  # noqa: E402,F401  (the real CLI against sim + sshd)


@pytest.mark.skipif(not Path("/usr/lib/ipxe/undionly.kpxe").exists(), reason="Debian ipxe package not installed")
def test_plan_detailed_exitcode_is_2_when_a_target_accepts_another_credential(lab):
    sim, sshd, inventory, env, pxe, tmp = lab
    assert netprov("apply", "--auto-approve", str(inventory), env=env, cwd=tmp).returncode == 0   # converged
    c = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    try:
        tag = c.call("iscsi.target.query", [["name", "=", "alpha"]], {})[0]["groups"][0]["auth"]
        c.call("iscsi.auth.create", {"tag": tag, "user": "m4", "secret": "other-secret-04", "peeruser": "",
                                     "peersecret": ""})
    finally:
        c.close()
    crowded = netprov("plan", "--detailed-exitcode", str(inventory), env=env, cwd=tmp)
    assert crowded.returncode == 2, crowded.stdout + crowded.stderr
    assert "auth[alpha]" in crowded.stdout and "other-secret-04" not in crowded.stdout + crowded.stderr
    fixed = netprov("apply", "--auto-approve", str(inventory), env=env, cwd=tmp)   # exit 0: converged after
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "Converged" in fixed.stderr
