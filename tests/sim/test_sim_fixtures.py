"""The simulator returns the same shapes (keys, JSON types) as the samples in tests/fixtures/truenas."""

import json
from pathlib import Path

from simhelpers import GiB

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "truenas"


def load(name):
    return json.loads((FIX / name).read_text())


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def assert_same_shape(expected, actual, path="$", subset=False):
    assert jtype(expected) == jtype(actual), (
        f"{path}: expected {jtype(expected)}, got {jtype(actual)!r} ({actual!r})"
    )
    if isinstance(expected, dict):
        if subset:
            missing = set(expected) - set(actual)
            assert not missing, f"{path}: missing keys {missing}"
        elif path.endswith("user_info"):
            pass
        else:
            assert set(expected) == set(actual), f"{path}: keys {sorted(set(expected) ^ set(actual))} differ"
        for k in expected:
            if path.endswith("trace") and k in ("frames", "formatted", "repr"):
                continue
            assert_same_shape(expected[k], actual[k], f"{path}.{k}", subset=subset and path == "$")
    elif isinstance(expected, list) and expected and actual:
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same_shape(e, a, f"{path}[{i}]")


def setup_m1(c, profile="25.04"):
    c.call("pool.dataset.create", {"name": "tank/netprov"})
    body = {
        "name": "tank/netprov/m1",
        "type": "VOLUME",
        "volsize": 20 * GiB,
        "volblocksize": "16K",
        "sparse": True,
        "comments": "netprov:m1",
    }
    if profile != "13":
        body["user_properties"] = [{"key": "netprov:machine", "value": "m1"}]
    ds = c.call("pool.dataset.create", body)
    ext = c.call(
        "iscsi.extent.create",
        {
            "name": "m1",
            "type": "DISK",
            "disk": "zvol/tank/netprov/m1",
            "blocksize": 512,
            "insecure_tpc": True,
            "xen": False,
            "rpm": "SSD",
            "ro": False,
            "enabled": True,
            "comment": "netprov:m1",
        },
    )
    listen = [{"ip": "0.0.0.0", "port": 3260}] if profile == "13" else [{"ip": "0.0.0.0"}]
    portal = c.call("iscsi.portal.create", {"comment": "netprov", "listen": listen})
    c.call("iscsi.initiator.create", {"initiators": [], "comment": "spare"})
    ini = c.call("iscsi.initiator.create", {"initiators": ["iqn.1993-08.org.debian:01:m1"], "comment": "m1"})
    tbody = {
        "name": "m1",
        "alias": None,
        "mode": "ISCSI",
        "groups": [{"portal": 1, "initiator": 2, "authmethod": "NONE", "auth": None}],
    }
    if profile != "13":
        tbody["auth_networks"] = []
    tgt = c.call("iscsi.target.create", tbody)
    te = c.call("iscsi.targetextent.create", {"target": 1, "extent": 1, "lunid": 0})
    abody = {"tag": 1, "user": "m1", "secret": "abcdefghijkl", "peeruser": "", "peersecret": ""}
    if profile != "13":
        abody["discovery_auth"] = "NONE"
    auth = c.call("iscsi.auth.create", abody)
    return dict(ds=ds, ext=ext, portal=portal, ini=ini, tgt=tgt, te=te, auth=auth)


def test_25_04_entries_match_fixtures(sim, api):
    o = setup_m1(api)
    assert_same_shape(load("pool_dataset_create_25.04.json"), o["ds"], subset=True)
    assert_same_shape(load("iscsi_extent_entry_25.04.json"), o["ext"])
    assert_same_shape(load("iscsi_portal_entry_25.04.json"), o["portal"])
    assert_same_shape(load("iscsi_initiator_entry_25.04.json"), o["ini"])
    assert_same_shape(load("iscsi_target_entry_25.04.json"), o["tgt"])
    assert_same_shape(load("iscsi_targetextent_entry.json"), o["te"])
    assert_same_shape(load("iscsi_auth_entry_25.04.json"), o["auth"])
    assert o["tgt"] == load("iscsi_target_entry_25.04.json")
    assert o["portal"] == load("iscsi_portal_entry_25.04.json")
    assert o["te"] == load("iscsi_targetextent_entry.json")
    assert o["auth"] == load("iscsi_auth_entry_25.04.json")
    assert api.call("iscsi.global.config") == load("iscsi_global_config_25.04.json")
    assert_same_shape(load("system_version_25.04.json"), api.call("system.version"))
    # query returns the same shape as create
    assert_same_shape(load("iscsi_extent_entry_25.04.json"), api.call("iscsi.extent.query")[0])


def test_13_entries_match_fixtures(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"), kind="legacy")
    o = setup_m1(c, "13")
    assert o["tgt"] == load("iscsi_target_entry_13.json")
    assert o["auth"] == load("iscsi_auth_entry_13.json")
    assert c.call("iscsi.global.config") == load("iscsi_global_config_13.json")
    assert c.call("system.version") == load("system_version_13.json")


def test_service_entry_fixture(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.10"))
    e = c.call("service.query", [["service", "=", "iscsitarget"]], {"get": True})
    assert e == load("service_entry_25.10.json")


def test_login_ex_fixture(sim, connect_factory):
    c = connect_factory(sim, login=False)
    r = c.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": "root", "api_key": sim.api_key})
    assert_same_shape(load("auth_login_ex_success_25.04.json"), r)


def test_error_fixtures(sim, api, connect_factory):
    setup_m1(api)
    c = connect_factory(sim)
    c.send(
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "iscsi.extent.create",
            "params": [{"name": "m1", "disk": "zvol/tank/netprov/m1"}],
        }
    )
    got = c.recv()
    exp = load("error_jsonrpc_validation_25.04.json")
    assert_same_shape(exp, got)
    assert got["error"]["data"]["extra"] == exp["error"]["data"]["extra"]
    assert got["error"]["data"]["reason"] == exp["error"]["data"]["reason"]

    leg = connect_factory(sim, kind="legacy")
    leg.send(
        {
            "msg": "method",
            "id": "u6",
            "method": "iscsi.extent.create",
            "params": [{"name": "m1", "disk": "zvol/tank/netprov/m1"}],
        }
    )
    got = leg.recv()
    assert_same_shape(load("error_legacy_validation.json"), got)
    assert got["error"]["error"] == 11

    anon = connect_factory(sim, login=False)
    anon.send({"jsonrpc": "2.0", "id": 1, "method": "iscsi.extent.query", "params": []})
    assert anon.recv() == load("error_jsonrpc_not_authenticated.json")
    anon.send("[]")
    assert anon.recv() == load("error_jsonrpc_batch.json")

    raw = connect_factory(sim, kind="legacy", login=False, handshake=False)
    raw.send({"msg": "connect", "version": "1", "support": ["1"]})
    assert_same_shape(load("legacy_connected.json"), raw.recv())


def test_too_many_calls_fixture(sim, api):
    sim.knobs.latency = 0.3
    ids = [api.submit("core.ping") for _ in range(21)]
    replies = [api.wait(i, timeout=10) for i in ids]
    sim.knobs.latency = 0
    exp = load("error_jsonrpc_too_many_calls.json")
    assert replies[20] == {**exp, "id": ids[20]}


def test_bulk_result_fixture(api):
    api.call("pool.dataset.create", {"name": "tank/v"})
    api.call("pool.dataset.create", {"name": "tank/v/m1", "type": "VOLUME", "volsize": GiB})
    jid = api.call(
        "core.bulk",
        "iscsi.extent.create",
        [[{"name": "m1", "disk": "zvol/tank/v/m1"}], [{"name": "m1", "disk": "zvol/tank/v/m1"}]],
    )
    res = api.wait_job(jid)["result"]
    exp = load("bulk_job_result.json")
    assert [set(r) for r in res] == [set(r) for r in exp]
    assert res[1] == exp[1]
