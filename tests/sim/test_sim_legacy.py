"""Legacy DDP-like protocol on /websocket (middleware TS-24.10.2.2 src/middlewared/middlewared/main.py)."""

import pytest
from websockets.exceptions import ConnectionClosed


def test_handshake_failed_then_connected(sim, connect_factory):
    c = connect_factory(sim, kind="legacy", login=False, handshake=False)
    c.send({"msg": "method", "id": "x", "method": "core.ping", "params": []})
    assert c.recv() == {"msg": "failed", "version": "1"}
    c.send({"msg": "connect", "version": "2", "support": ["2"]})
    assert c.recv() == {"msg": "failed", "version": "1"}
    c.send({"msg": "connect", "version": "1", "support": ["1"]})
    r = c.recv()
    assert r["msg"] == "connected" and isinstance(r["session"], str)


def test_ping_pong(sim, connect_factory):
    c = connect_factory(sim, kind="legacy", login=False)
    c.send({"msg": "ping", "id": "p1"})
    assert c.recv() == {"msg": "pong", "id": "p1"}
    c.send({"msg": "ping"})
    assert c.recv() == {"msg": "pong"}


@pytest.mark.parametrize("profile", ["13", "24.10", "25.04", "25.10"])
def test_result_envelope(sim_factory, connect_factory, profile):
    s = sim_factory(profile)
    c = connect_factory(s, kind="legacy")
    r = c.request("system.version")
    assert set(r) == {"msg", "id", "result"} and r["msg"] == "result"
    assert r["result"] == s.profile.version_string


def test_validation_errors_are_eagain(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    r = c.request("iscsi.auth.create", {"tag": 1, "user": "u", "secret": "short"})
    err = r["error"]
    assert "result" not in r
    assert err["error"] == 11 and err["errname"] == "EAGAIN" and err["type"] == "VALIDATION"
    assert (
        err["reason"] == "[EINVAL] iscsi_auth_create.secret: Secret must be between 12 and 16 characters.\n"
    )
    assert err["extra"] == [["iscsi_auth_create.secret", "Secret must be between 12 and 16 characters.", 22]]
    assert set(err) == {"error", "errname", "type", "reason", "trace", "extra"}


def test_single_validation_error_uses_own_errno(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    err = c.request("iscsi.target.delete", 5)["error"]
    assert err["error"] == 2 and err["type"] == "VALIDATION"
    assert err["extra"] == [[None, "iSCSITarget 5 does not exist", 2]]


def test_call_error_has_null_type(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    err = c.request("pool.dataset.delete", "tank")["error"]
    assert err["type"] is None and isinstance(err["error"], int)


@pytest.mark.parametrize("profile,expected", [("13", 13), ("24.10", 207), ("25.04", 207)])
def test_not_authenticated_errno(sim_factory, connect_factory, profile, expected):
    s = sim_factory(profile)
    c = connect_factory(s, kind="legacy", login=False)
    err = c.request("iscsi.extent.query")["error"]
    assert err["error"] == expected and err["reason"] == "Not authenticated"


def test_enomethod_reasons(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    err = c.request("iscsi.extent.frob")["error"]
    assert err["error"] == 201 and err["errname"] == "ENOMETHOD"
    assert err["reason"] == "[ENOMETHOD] Method 'frob' not found in 'iscsi.extent'"
    err = c.request("nosuch.svc")["error"]
    assert err["reason"] == "[ENOMETHOD] Service 'nosuch' not found"


def test_params_must_be_list(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    c.send({"msg": "method", "id": "q", "method": "core.ping", "params": {"a": 1}})
    r = c.recv()
    assert r["id"] == "q" and r["error"]["error"] == 22
    assert "`params` must be a list." in r["error"]["reason"]


def test_too_many_concurrent_calls(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    sim.knobs.latency = 0.3
    ids = [c.submit("core.ping") for _ in range(22)]
    replies = [c.wait(i, timeout=10) for i in ids]
    sim.knobs.latency = 0
    errs = [r["error"] for r in replies if "error" in r]
    assert len(errs) == 2
    assert errs[0]["error"] == 109
    assert errs[0]["reason"] == "Maximum number of concurrent calls (20) has exceeded."


def test_sub_ready_and_events(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    c.send({"msg": "sub", "id": "s1", "name": "core.get_jobs"})
    assert c.recv() == {"msg": "ready", "subs": ["s1"]}
    jid = c.call("core.bulk", "core.ping", [[]])
    assert isinstance(jid, int)
    seen = []
    while not any(e.get("fields", {}).get("state") == "SUCCESS" for e in seen):
        e = c.recv()
        assert e["collection"] == "core.get_jobs" and e["id"] == jid
        seen.append(e)
    assert seen[0]["msg"] == "added" and seen[-1]["msg"] == "changed"


def test_sub_requires_auth(sim, connect_factory):
    c = connect_factory(sim, kind="legacy", login=False)
    c.send({"msg": "sub", "id": "s1", "name": "core.get_jobs"})
    r = c.recv()
    assert (
        r["msg"] == "result"
        and r["error"]["error"] == 13
        and r["error"]["reason"] == "[EACCES] Not authorized"
    )


def test_legacy_endpoint_also_served_on_25_04(sim, connect_factory):
    c = connect_factory(sim, kind="legacy")
    assert c.call("core.ping") == "pong"


def test_legacy_8k_limit(sim, connect_factory):
    c = connect_factory(sim, kind="legacy", login=False)
    c.send({"msg": "method", "id": "x", "method": "core.ping", "params": ["y" * 9000]})
    with pytest.raises(ConnectionClosed) as ei:
        c.recv()
    assert ei.value.rcvd.code == 1007


def test_legacy_endpoint_on_25_04_speaks_v24_10(sim, connect_factory):
    leg = connect_factory(sim, kind="legacy")
    cur = connect_factory(sim)
    p = leg.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}], "discovery_authmethod": "NONE"})
    assert (
        p["discovery_authmethod"] == "NONE"
        and "discovery_authmethod" not in cur.call("iscsi.portal.query")[0]
    )
    a = leg.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": "abcdefghijkl"})
    assert "discovery_auth" not in a and "discovery_auth" in cur.call("iscsi.auth.query")[0]
    err = leg.request(
        "iscsi.auth.create", {"tag": 2, "user": "u", "secret": "abcdefghijkl", "discovery_auth": "NONE"}
    )["error"]
    assert err["extra"] == [["data.discovery_auth", "Extra inputs are not permitted", 22]]
    t = leg.call("iscsi.target.create", {"name": "t"})
    assert "iscsi_parameters" not in t
    assert "iser" not in leg.call("iscsi.global.config")
    assert leg.request("iscsi.target.delete", t["id"], False, True)["error"]["type"] == "VALIDATION"
    assert leg.call("iscsi.target.delete", t["id"], False) is True


def test_pinned_v24_10_route(sim, connect_factory):
    c = connect_factory(sim, path="/api/v24.10")
    assert "iser" not in c.call("iscsi.global.config")
    c2 = connect_factory(sim, path="/api/v25.04.0")
    assert "iser" in c2.call("iscsi.global.config")
