"""JSON-RPC 2.0 framing on /api/current (middleware TS-25.04.2.4
src/middlewared/middlewared/api/base/server/ws_handler/rpc.py)."""

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def test_success_envelope_echoes_id(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.send({"jsonrpc": "2.0", "id": "abc", "method": "core.ping", "params": []})
    assert c.recv() == {"jsonrpc": "2.0", "result": "pong", "id": "abc"}
    c.send({"jsonrpc": "2.0", "id": 7, "method": "core.ping"})  # params default []
    assert c.recv() == {"jsonrpc": "2.0", "result": "pong", "id": 7}


def test_parse_error_batch_and_non_object(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.send("{nope")
    r = c.recv()
    assert r["error"]["code"] == -32700 and r["id"] is None
    c.send("[]")
    assert c.recv() == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Batch messages are not supported at this time"},
        "id": None,
    }
    c.send("42")
    r = c.recv()
    assert r["error"] == {"code": -32700, "message": "Invalid Message Format"}


def test_invalid_request_shapes(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.send({"id": 1, "method": "core.ping"})
    assert c.recv()["error"] == {"code": -32600, "message": "Missing 'jsonrpc' member"}
    c.send({"jsonrpc": "2.0", "id": 2, "method": "core.ping", "params": {"a": 1}})
    r = c.recv()
    assert r["error"] == {"code": -32600, "message": "'params' member must be of type array"} and r["id"] == 2


def test_notification_gets_no_reply_even_on_error(sim, connect_factory):
    c = connect_factory(sim)
    c.send({"jsonrpc": "2.0", "method": "no.such_method", "params": []})
    c.send({"jsonrpc": "2.0", "method": "iscsi.portal.create", "params": [{"listen": [{"ip": "0.0.0.0"}]}]})
    c.send({"jsonrpc": "2.0", "id": 99, "method": "core.ping", "params": []})
    assert c.recv()["id"] == 99
    # ... but the notification still ran
    assert len(c.call("iscsi.portal.query")) == 1


def test_method_not_found(api):
    r = api.request("iscsi.extent.frobnicate")
    assert r["error"] == {"code": -32601, "message": "Method does not exist"}


def test_not_authenticated_shape(sim, connect_factory):
    c = connect_factory(sim, login=False)
    r = c.request("iscsi.extent.query")
    err = r["error"]
    assert err["code"] == -32001 and err["message"] == "Method call error"
    assert err["data"]["error"] == 207
    assert err["data"]["errname"] == "ENOTAUTHENTICATED"
    assert err["data"]["reason"] == "[ENOTAUTHENTICATED] Not authenticated"


def test_validation_error_shape(api):
    api.call("pool.dataset.create", {"name": "tank/v"})
    api.call("pool.dataset.create", {"name": "tank/v/m1", "type": "VOLUME", "volsize": 2**30})
    api.call("iscsi.extent.create", {"name": "m1", "disk": "zvol/tank/v/m1"})
    r = api.request("iscsi.extent.create", {"name": "m1", "disk": "zvol/tank/v/m1"})
    err = r["error"]
    assert err["code"] == -32602 and err["message"] == "Invalid params"
    d = err["data"]
    assert d["error"] == 22 and d["errname"] == "EINVAL"
    assert d["reason"] == "[EINVAL] iscsi_extent_create.name: Extent name must be unique\n"
    assert ["iscsi_extent_create.name", "Extent name must be unique", 22] in d["extra"]
    assert d["trace"]["class"] == "ValidationErrors"


def test_call_error_shape(api):
    r = api.request("pool.dataset.delete", "tank")
    err = r["error"]
    assert err["code"] == -32001 and err["data"]["errname"] in ("EINVAL", "EFAULT")
    assert err["data"]["reason"].startswith("[")


def test_instance_not_found_shape(api):
    r = api.request("iscsi.target.update", 3, {"alias": "x"})
    err = r["error"]
    assert err["code"] == -32602
    assert err["data"]["extra"] == [[None, "iSCSITarget 3 does not exist", 2]]


def test_match_not_found(api):
    r = api.request("iscsi.extent.query", [["name", "=", "nope"]], {"get": True})
    err = r["error"]
    assert err["code"] == -32001
    assert err["data"]["error"] == 22 and err["data"]["reason"] == "MatchNotFound()"


@pytest.mark.parametrize("profile", ["13", "24.10"])
def test_api_current_is_404_before_25_04(sim_factory, profile):
    s = sim_factory(profile)
    with pytest.raises(InvalidStatus) as ei:
        connect(s.url_for("/api/current"), open_timeout=5)
    assert ei.value.response.status_code == 404
    assert s.url.endswith("/websocket")


def test_pinned_version_and_versions_listing(sim, connect_factory):
    c = connect_factory(sim, path="/api/v25.04.0")
    assert c.call("system.version").startswith("TrueNAS-25.04")
    import urllib.request

    body = urllib.request.urlopen(sim.url_for("/api/versions").replace("ws://", "http://"), timeout=5).read()
    assert "v25.04.0" in json.loads(body)


def test_binary_frame_closes_1003(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as ei:
        c.recv()
    assert ei.value.rcvd.code == 1003


def test_anonymous_8k_limit_closes_1007(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.send({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x" * 9000]})
    with pytest.raises(ConnectionClosed) as ei:
        c.recv()
    assert ei.value.rcvd.code == 1007
    assert ei.value.rcvd.reason == "Anonymous connection max message length is 8 kB"


def test_authenticated_64k_limit_closes_1009(sim, connect_factory):
    c = connect_factory(sim)
    ok = c.request("iscsi.extent.query", [["comment", "=", "x" * 30000]])
    assert ok["result"] == []  # 30 kB is fine once authenticated
    c.send({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x" * 70000]})
    with pytest.raises(ConnectionClosed) as ei:
        c.recv()
    assert ei.value.rcvd.code == 1009 and ei.value.rcvd.reason == "Max message length is 64 kB"


def test_core_13_has_no_post_auth_limit(sim_factory, connect_factory):
    s = sim_factory("13")
    c = connect_factory(s)
    assert c.call("iscsi.extent.query", [["comment", "=", "x" * 70000]]) == []


def test_concurrency_limit_20_in_flight(sim, connect_factory):
    c = connect_factory(sim)
    sim.knobs.latency = 0.3
    ids = [c.submit("core.ping") for _ in range(25)]
    replies = [c.wait(i, timeout=10) for i in ids]
    sim.knobs.latency = 0
    rejected = [r for r in replies if "error" in r]
    assert len(rejected) == 5
    assert all(
        r["error"] == {"code": -32000, "message": "Maximum number of concurrent calls (20) has exceeded"}
        for r in rejected
    )
    assert [r["id"] for r in rejected] == ids[20:]


def test_out_of_order_knob(sim, connect_factory):
    c = connect_factory(sim)
    sim.knobs.out_of_order = True
    ids = [c.submit("core.ping") for _ in range(6)]
    order = []
    for _ in ids:
        order.append(c.recv()["id"])
    assert sorted(order) == ids and order != ids


def test_replies_in_order_without_knob(sim, connect_factory):
    c = connect_factory(sim)
    ids = [c.submit("core.ping") for _ in range(6)]
    assert [c.recv()["id"] for _ in ids] == ids


def test_fail_call_knob(sim, connect_factory):
    c = connect_factory(sim)
    sim.knobs.fail_call = (2, 16, "Device busy")
    assert c.call("core.ping") == "pong"
    r = c.request("core.ping")
    assert r["error"]["code"] == -32001 and r["error"]["data"]["error"] == 16
    assert r["error"]["data"]["reason"] == "[EBUSY] Device busy"
    assert c.call("core.ping") == "pong"  # one shot


def test_drop_at_knob(sim, connect_factory):
    c = connect_factory(sim)
    sim.knobs.drop_at = 2
    assert c.call("core.ping") == "pong"
    c.submit("core.ping")
    with pytest.raises(ConnectionClosed):
        c.recv()
    c2 = connect_factory(sim)
    assert c2.call("core.ping") == "pong"


def test_latency_knob_delays_replies(sim, connect_factory):
    c = connect_factory(sim)
    sim.knobs.latency = 0.2
    id1 = c.submit("core.ping")
    with pytest.raises(TimeoutError):
        c.ws.recv(timeout=0.05)
    assert c.wait(id1)["result"] == "pong"


def test_round_trips_counter(sim, connect_factory):
    c = connect_factory(sim)
    sim.reset_counters()
    c.call("core.ping")
    c.call("core.ping")
    c.call("system.version")
    assert sim.round_trips["core.ping"] == 2 and sim.round_trips["system.version"] == 1
    sim.reset_counters()
    assert sum(sim.round_trips.values()) == 0


def test_subscribe_job_events(api):
    sub = api.call("core.subscribe", "core.get_jobs")
    assert isinstance(sub, str)
    jid = api.call("core.bulk", "core.ping", [[], []])
    states = set()
    deadline = time.monotonic() + 5
    while "SUCCESS" not in states and time.monotonic() < deadline:
        msg = api.recv()
        if msg.get("method") == "collection_update" and msg["params"]["id"] == jid:
            assert msg["params"]["collection"] == "core.get_jobs"
            assert "id" not in msg  # notifications have no id
            states.add(msg["params"]["fields"]["state"])
            last = msg
    assert "SUCCESS" in states
    assert last["params"]["fields"]["result"] == [{"result": "pong", "error": None}] * 2


def test_null_id_is_a_request(sim, connect_factory):
    c = connect_factory(sim, login=False)
    c.send({"jsonrpc": "2.0", "id": None, "method": "core.ping", "params": []})
    assert c.recv() == {"jsonrpc": "2.0", "result": "pong", "id": None}


def test_dataset_collection_updates(api):
    api.call("core.subscribe", "pool.dataset.query")
    api.call("pool.dataset.create", {"name": "tank/ev"})
    api.call("pool.dataset.update", "tank/ev", {"comments": "x"})
    api.call("pool.dataset.delete", "tank/ev")
    msgs = [e["params"] for e in api.events if e.get("method") == "collection_update"]
    while len(msgs) < 3:
        e = api.recv()
        msgs.append(e["params"])
    assert [(m["msg"], m["id"]) for m in msgs] == [
        ("added", "tank/ev"),
        ("changed", "tank/ev"),
        ("removed", "tank/ev"),
    ]
    assert "fields" in msgs[0] and "fields" not in msgs[2]


def test_unsubscribe_stops_events(api):
    sid = api.call("core.subscribe", "*")
    api.call("core.unsubscribe", sid)
    api.call("pool.dataset.create", {"name": "tank/quiet"})
    api.call("core.ping")
    assert not [e for e in api.events if e.get("method") == "collection_update"]
