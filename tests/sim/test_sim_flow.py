"""A whole provisioning round trip on every profile and both protocols (what netprov's engine does)."""

import pytest

from simhelpers import GiB, RpcFailure

CASES = [
    ("13", "legacy"),
    ("24.10", "legacy"),
    ("25.04", "jsonrpc"),
    ("25.04", "legacy"),
    ("25.10", "jsonrpc"),
]


@pytest.mark.parametrize("profile,kind", CASES)
def test_provision_and_teardown(sim_factory, connect_factory, profile, kind):
    sim = sim_factory(profile)
    sim.add_snapshot("tank/golden/debian@v1", volsize=4 * GiB)
    sim.knobs.zvol_device_lag = 1
    c = connect_factory(sim, kind=kind)
    core = profile == "13"
    snap_ns = "pool.snapshot" if profile == "25.10" else "zfs.snapshot"   # pool.snapshot.* from 25.10 only

    c.call("pool.dataset.create", {"name": "tank/netprov"})
    assert c.call(f"{snap_ns}.clone", {"snapshot": "tank/golden/debian@v1", "dataset_dst": "tank/netprov/m1"})
    body = {"name": "m1", "type": "DISK", "disk": "zvol/tank/netprov/m1", "comment": "netprov:m1"}
    for attempt in range(3):  # the zvol device may lag its creation on SCALE
        try:
            ext = c.call("iscsi.extent.create", body)
            break
        except RpcFailure as e:
            assert "does not exist" in e.messages()[0]
    assert attempt == (0 if core else 1)

    listen = [{"ip": "0.0.0.0", "port": 3260}] if core else [{"ip": "0.0.0.0"}]
    portal = c.call("iscsi.portal.create", {"comment": "netprov", "listen": listen})
    ini = c.call("iscsi.initiator.create", {"initiators": ["iqn.1993-08.org.debian:01:m1"], "comment": "m1"})
    c.call("iscsi.auth.create", {"tag": 3, "user": "m1", "secret": "abcdefghijkl"})
    tgt = c.call(
        "iscsi.target.create",
        {
            "name": "m1",
            "alias": None,
            "groups": [{"portal": portal["id"], "initiator": ini["id"], "authmethod": "CHAP", "auth": 3}],
        },
    )
    te = c.call("iscsi.targetextent.create", {"target": tgt["id"], "extent": ext["id"], "lunid": 0})

    svc = c.call("service.query", [["service", "=", "iscsitarget"]], {"get": True})
    if svc["state"] != "RUNNING":
        c.call("service.update", svc["id"], {"enable": True})
        assert c.call("service.start", "iscsitarget") is True
    sim.add_session("m1", "iqn.1993-08.org.debian:01:m1")
    with pytest.raises(RpcFailure):
        c.call("iscsi.target.delete", tgt["id"])

    sim.clear_sessions()
    assert c.call("iscsi.targetextent.delete", te["id"]) is True
    assert c.call("iscsi.extent.delete", ext["id"]) is True
    assert c.call("iscsi.target.delete", tgt["id"]) is True
    assert c.call("pool.dataset.delete", "tank/netprov/m1", {"recursive": False, "force": False}) is True
    assert c.call("iscsi.target.query") == [] and c.call("iscsi.extent.query") == []
    assert sim.reload_count >= 3
