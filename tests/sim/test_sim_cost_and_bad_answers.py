"""The simulator's cost model and broken-answer knobs (Knobs.row_cost / call_cost / stalled_jobs /
bad_answer), seen on the wire with the tests' own small client."""

from __future__ import annotations

import json
import time

import pytest
from simhelpers import connect_factory, sim_factory  # noqa: F401 - fixtures


def test_cost_of_matches_patterns(sim_factory):
    k = sim_factory().knobs
    k.row_cost = {"pool.dataset.query": 0.5}
    k.call_cost = {"iscsi.*.create": 0.25, "*": 0.0}
    assert k.cost_of("pool.dataset.query", [1, 2, 3]) == 1.5
    assert k.cost_of("iscsi.extent.create", {"id": 1}) == 0.25
    assert k.cost_of("iscsi.extent.query", []) == 0.0
    with pytest.raises(ValueError, match="unknown bad answer kind"):
        k.bad_answer("core.ping", "nonsense")


def test_costly_bulk_reports_progress_after_every_item(sim_factory, connect_factory):
    sim = sim_factory()
    api = connect_factory(sim)
    sim.knobs.call_cost = {"iscsi.initiator.create": 0.05}
    jid = api.call("core.bulk", "iscsi.initiator.create", [[{"comment": f"c{i}"}] for i in range(12)])
    seen = []
    for _ in range(2000):  # bounded: the job takes ~0.6 s
        job = api.call("core.get_jobs", [["id", "=", jid]], {"get": True})
        desc = job["progress"]["description"]
        if not seen or seen[-1] != desc:
            seen.append(desc)
        if job["state"] == "SUCCESS":
            break
        time.sleep(0.005)
    assert job["state"] == "SUCCESS"
    assert len(seen) >= 6  # many distinct "i/n" steps, not one jump to 100 %
    assert all(d == "" or d.endswith("/12") for d in seen)


def test_stalled_job_stays_running_until_released(sim_factory, connect_factory):
    sim = sim_factory()
    api = connect_factory(sim)
    sim.knobs.stalled_jobs = "core.bulk"
    jid = api.call("core.bulk", "core.ping", [[]])
    for _ in range(5):
        job = api.call("core.get_jobs", [["id", "=", jid]], {"get": True})
        assert job["state"] == "RUNNING" and job["progress"]["percent"] == 0
        time.sleep(0.02)
    sim.knobs.stalled_jobs = None
    assert api.wait_job(jid)["state"] == "SUCCESS"


@pytest.mark.parametrize("kind", ["jsonrpc", "legacy"])
def test_bad_answers_on_the_wire(sim_factory, connect_factory, kind):
    sim = sim_factory()
    api = connect_factory(sim, kind=kind)
    k = sim.knobs
    k.bad_answer("core.ping", "garbage")
    api.submit("core.ping")
    assert api.ws.recv(timeout=5).startswith("<html>")
    k.bad_answer("core.ping", "binary")
    api.submit("core.ping")
    assert isinstance(api.ws.recv(timeout=5), bytes)
    k.bad_answer("core.ping", "deep", 50)
    api.submit("core.ping")
    raw = api.ws.recv(timeout=5)
    assert "[" * 50 + "]" * 50 in raw and json.loads(raw)["result"] is not None
    k.bad_answer("iscsi.extent.query", "field", ("name", 7))
    api.call("iscsi.extent.create", {"name": "e1", "type": "FILE", "path": "/mnt/tank/f", "filesize": 512})
    assert [e["name"] for e in api.call("iscsi.extent.query")] == [7]
    k.bad_answer("iscsi.extent.query", None)
    assert [e["name"] for e in api.call("iscsi.extent.query")] == ["e1"]
