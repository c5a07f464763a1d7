"""service.* and jobs / core.bulk (truenas_sim/methods/service.py, core.py, server.py)."""

import pytest
from simhelpers import RpcFailure, mk_zvol


def svc(c):
    return c.call("service.query", [["service", "=", "iscsitarget"]], {"get": True})


def test_default_service_state(api):
    s = svc(api)
    assert s == {"id": 7, "service": "iscsitarget", "enable": False, "state": "STOPPED", "pids": []}


def test_update_enable_start_stop(api):
    assert api.call("service.update", "iscsitarget", {"enable": True}) == 7
    assert svc(api)["enable"] is True and svc(api)["state"] == "STOPPED"
    assert api.call("service.start", "iscsitarget", {"silent": False}) is True
    assert svc(api)["state"] == "RUNNING"
    api.call("service.stop", "iscsitarget")
    assert svc(api)["state"] == "STOPPED"


def test_crud_reloads_only_when_running(api, sim):
    api.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}]})
    assert sim.reload_count == 0
    api.call("service.start", "iscsitarget")
    api.call("iscsi.portal.create", {"listen": [{"ip": "::"}]})
    api.call("iscsi.target.create", {"name": "a"})
    assert sim.reload_count == 2


def test_core_start_on_running_restarts_and_drops_sessions(sim_factory, connect_factory):
    s = sim_factory("13")
    c = connect_factory(s, kind="legacy")
    c.call("service.start", "iscsitarget")
    s.add_session("m1", "iqn.x:1")
    assert c.call("service.start", "iscsitarget") is True
    assert s.restart_count == 1
    assert c.call("iscsi.global.sessions") == []


def test_scale_start_on_running_is_noop(api, sim):
    api.call("service.start", "iscsitarget")
    sim.add_session("m1", "iqn.x:1")
    assert api.call("service.start", "iscsitarget") is True
    assert sim.restart_count == 0 and len(api.call("iscsi.global.sessions")) == 1


def test_stop_and_restart_drop_sessions(api, sim):
    api.call("service.start", "iscsitarget")
    sim.add_session("m1", "iqn.x:1")
    api.call("service.restart", "iscsitarget")
    assert api.call("iscsi.global.sessions") == [] and sim.restart_count == 1
    sim.add_session("m1", "iqn.x:1")
    api.call("service.stop", "iscsitarget")
    assert api.call("iscsi.global.sessions") == []


def test_service_control_job_on_25_10(sim_factory, connect_factory):
    s = sim_factory("25.10")
    c = connect_factory(s)
    jid = c.call("service.control", "START", "iscsitarget", {"silent": False})
    assert isinstance(jid, int)
    job = c.wait_job(jid)
    assert job["state"] == "SUCCESS" and job["result"] is True and job["method"] == "service.control"
    assert svc(c)["state"] == "RUNNING"
    c2 = connect_factory(sim_factory("25.04"))
    assert c2.request("service.control", "START", "iscsitarget")["error"]["code"] == -32601


def test_new_style_jobs_on_25_10(sim_factory, connect_factory):
    s = sim_factory("25.10")
    c = connect_factory(s)
    opts = c.call("core.set_options", {"legacy_jobs": False})
    assert opts["legacy_jobs"] is False
    assert c.call("service.control", "START", "iscsitarget", {}) is True
    r = c.call("core.bulk", "core.ping", [[]])
    assert r == [{"result": "pong", "error": None}]
    # message_ids link the job to the request ids
    jobs = c.call("core.get_jobs", [["method", "=", "core.bulk"]])
    assert jobs[-1]["message_ids"]


def test_set_options_25_04_returns_null(api):
    assert api.call("core.set_options", {"py_exceptions": False}) is None


def test_bulk_is_a_job_with_per_item_results(api, sim):
    mk_zvol(api, "tank/v/a")
    mk_zvol(api, "tank/v/b")
    sim.reset_counters()
    jid = api.call(
        "core.bulk",
        "iscsi.extent.create",
        [
            [{"name": "a", "disk": "zvol/tank/v/a"}],
            [{"name": "a", "disk": "zvol/tank/v/b"}],
            [{"name": "b", "disk": "zvol/tank/v/b"}],
        ],
    )
    assert isinstance(jid, int)
    job = api.wait_job(jid)
    assert job["state"] == "SUCCESS"  # even though an item failed
    res = job["result"]
    assert res[0]["error"] is None and res[0]["result"]["name"] == "a"
    assert res[1]["result"] is None
    assert res[1]["error"] == "[EINVAL] iscsi_extent_create.name: Extent name must be unique\n"
    assert res[2]["result"]["name"] == "b"
    assert sim.round_trips["core.bulk"] == 1
    assert sim.round_trips["core.bulk:iscsi.extent.create"] == 3


def test_bulk_authorisation_checked_once(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.login(sim.add_api_key("ro", roles=["SHARING_ISCSI_READ"]))
    with pytest.raises(RpcFailure) as ei:
        c.call("core.bulk", "iscsi.portal.create", [[{"listen": [{"ip": "0.0.0.0"}]}]])
    assert ei.value.errno == 13


def test_get_jobs_object_shape(api):
    jid = api.call("core.bulk", "core.ping", [[]])
    job = api.wait_job(jid)
    for key in (
        "id",
        "method",
        "arguments",
        "transient",
        "description",
        "abortable",
        "logs_path",
        "logs_excerpt",
        "progress",
        "result",
        "result_encoding_error",
        "error",
        "exception",
        "state",
        "time_started",
        "time_finished",
        "credentials",
    ):
        assert key in job
    assert set(job["time_started"]) == {"$date"}


def test_failed_job_via_service_control(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.10"))
    mk_zvol(c, "tank/v/a")
    mk_zvol(c, "tank/v/b")
    c.call("iscsi.extent.create", {"name": "x.y", "disk": "zvol/tank/v/a"})
    c.call("iscsi.extent.create", {"name": "x_y", "disk": "zvol/tank/v/b"})
    job = c.wait_job(c.call("service.control", "START", "iscsitarget", {"silent": False}))
    assert job["state"] == "FAILED" and "failed to start" in job["error"]
    assert job["exc_info"]["type"] == "CallError"


def test_two_bulks_for_one_method_run_one_after_the_other(api, sim):
    sim.reset_counters()
    j1 = api.call("core.bulk", "iscsi.initiator.create", [[{"comment": f"a{i}"}] for i in range(30)])
    j2 = api.call("core.bulk", "iscsi.initiator.create", [[{"comment": f"b{i}"}] for i in range(30)])
    api.wait_job(j1)
    api.wait_job(j2)
    comments = [i["comment"] for i in api.call("iscsi.initiator.query")]
    assert comments == [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)]


def test_bulk_unknown_inner_method_reports_per_item(api):
    job = api.wait_job(api.call("core.bulk", "core.ping", [[], ["extra"]]))
    assert job["state"] == "SUCCESS"
    assert job["result"][0] == {"result": "pong", "error": None}
    assert job["result"][1]["result"] is None and "Too many arguments" in job["result"][1]["error"]
