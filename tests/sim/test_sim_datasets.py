"""pool.dataset / pool.snapshot rules (truenas_sim/methods/pool_dataset.py, zfs_snapshot.py; cited there)."""

import pytest
from simhelpers import GiB, RpcFailure, mk_stack, mk_zvol


def test_zvol_create_shape(api):
    api.call("pool.dataset.create", {"name": "tank/netprov"})
    r = api.call(
        "pool.dataset.create",
        {
            "name": "tank/netprov/m1",
            "type": "VOLUME",
            "volsize": 20 * GiB,
            "volblocksize": "16K",
            "sparse": True,
            "comments": "netprov:m1",
            "user_properties": [{"key": "netprov:machine", "value": "m1"}],
        },
    )
    assert r["id"] == r["name"] == "tank/netprov/m1" and r["type"] == "VOLUME" and r["pool"] == "tank"
    assert r["mountpoint"] is None and r["children"] == []
    assert r["volsize"] == {
        "parsed": 20 * GiB,
        "rawvalue": str(20 * GiB),
        "value": "20G",
        "source": "LOCAL",
        "source_info": None,
    }
    assert r["volblocksize"]["parsed"] == 16384 and r["volblocksize"]["value"] == "16K"
    assert r["comments"]["parsed"] == "netprov:m1"
    assert r["user_properties"] == {
        "netprov:machine": {
            "parsed": "m1",
            "rawvalue": "m1",
            "value": "m1",
            "source": "LOCAL",
            "source_info": None,
        }
    }
    assert "sparse" not in r


def test_comments_absent_when_unset(api):
    r = mk_zvol(api)
    assert "comments" not in r


def test_default_volblocksize_16k_on_scale(api):
    api.call("pool.dataset.create", {"name": "tank/v"})
    r = api.call("pool.dataset.create", {"name": "tank/v/a", "type": "VOLUME", "volsize": GiB})
    assert r["volblocksize"]["parsed"] == 16384
    with pytest.raises(RpcFailure) as ei:  # 8K multiple but not a 16K multiple
        api.call("pool.dataset.create", {"name": "tank/v/b", "type": "VOLUME", "volsize": 8192 * 3})
    assert ei.value.messages() == ["Volume size should be a multiple of volume block size"]
    assert ei.value.attrs() == ["pool_dataset_create.volsize"]


def test_core_checks_multiple_only_when_volblocksize_given(sim_factory, connect_factory):
    s = sim_factory("13")
    c = connect_factory(s)
    c.call("pool.dataset.create", {"name": "tank/v"})
    c.call("pool.dataset.create", {"name": "tank/v/a", "type": "VOLUME", "volsize": 8192 * 3 + 512})
    with pytest.raises(RpcFailure):
        c.call(
            "pool.dataset.create",
            {"name": "tank/v/b", "type": "VOLUME", "volsize": 8192 * 3 + 512, "volblocksize": "8K"},
        )


def test_volume_needs_volsize(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": "tank/a", "type": "VOLUME"})
    assert ei.value.messages() == ["This field is required for VOLUME"]


def test_fs_only_fields_rejected_for_volume(api):
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "pool.dataset.create", {"name": "tank/a", "type": "VOLUME", "volsize": GiB, "recordsize": "1M"}
        )
    assert ei.value.messages() == ["This field is not valid for VOLUME"]


@pytest.mark.parametrize(
    "name,msg",
    [
        ("tank", "You need a full name, e.g. pool/newdataset"),
        ("tank/bad*name", "Invalid dataset name"),
        ("tank/trailing ", "Invalid dataset name"),
        ("tank/missing/child", "Parent dataset does not exist for specified name"),
    ],
)
def test_dataset_name_rules(api, name, msg):
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": name, "type": "VOLUME", "volsize": GiB})
    assert msg in ei.value.messages()


def test_dataset_name_length_200_on_scale(api):
    with pytest.raises(RpcFailure):
        api.call("pool.dataset.create", {"name": "tank/" + "a" * 200})
    api.call("pool.dataset.create", {"name": "tank/" + "a" * 195})


def test_parent_may_not_be_zvol(api):
    mk_zvol(api, "tank/v/z")
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": "tank/v/z/child", "type": "VOLUME", "volsize": GiB})
    assert "parent may not be a ZFS volume" in ei.value.messages()[0]


def test_create_ancestors(api):
    api.call(
        "pool.dataset.create",
        {"name": "tank/a/b/c", "type": "VOLUME", "volsize": GiB, "create_ancestors": True},
    )
    assert api.call("pool.dataset.query", [["id", "=", "tank/a/b"]], {"get": True})["type"] == "FILESYSTEM"


def test_core_has_no_user_properties_or_create_ancestors(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    with pytest.raises(RpcFailure) as ei:
        c.call(
            "pool.dataset.create",
            {
                "name": "tank/a",
                "type": "VOLUME",
                "volsize": GiB,
                "user_properties": [{"key": "a:b", "value": "c"}],
            },
        )
    assert ei.value.messages() == ["Field was not expected"]
    assert "user_properties" not in c.call("pool.dataset.query", [["id", "=", "tank"]], {"get": True})


def test_80_percent_rule_and_force_size(api):
    api.call("pool.dataset.create", {"name": "tank/v"})
    big = 4 * 1024**4 - 16384 * 1024
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": "tank/v/big", "type": "VOLUME", "volsize": big})
    assert "80%" in ei.value.messages()[0]
    api.call(
        "pool.dataset.create", {"name": "tank/v/big", "type": "VOLUME", "volsize": big, "force_size": True}
    )


def test_update_grow_shrink_and_immutable_volblocksize(api):
    mk_zvol(api, "tank/v/m1", GiB)
    r = api.call("pool.dataset.update", "tank/v/m1", {"volsize": 2 * GiB})
    assert r["volsize"]["parsed"] == 2 * GiB
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.update", "tank/v/m1", {"volsize": GiB})
    assert ei.value.messages() == ["You cannot shrink a zvol from GUI, this may lead to data loss."]
    assert ei.value.attrs() == ["pool_dataset_update.volsize"]
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.update", "tank/v/m1", {"volblocksize": "64K"})
    assert ei.value.attrs() == ["pool_dataset_update.volblocksize"]
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.update", "tank/v/m1", {"volsize": 2 * GiB + 8192})
    assert ei.value.messages() == ["Volume size should be a multiple of volume block size"]


def test_update_comments_and_user_properties(api):
    mk_zvol(api, "tank/v/m1", user_properties=[{"key": "netprov:a", "value": "1"}])
    r = api.call(
        "pool.dataset.update",
        "tank/v/m1",
        {
            "comments": "hello",
            "user_properties_update": [
                {"key": "netprov:b", "value": "2"},
                {"key": "netprov:a", "remove": True},
            ],
        },
    )
    assert r["comments"]["parsed"] == "hello"
    assert set(r["user_properties"]) == {"netprov:b"}


def test_update_missing_dataset(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.update", "tank/nope", {"comments": "x"})
    assert ei.value.extra == [[None, "PoolDataset tank/nope does not exist", 2]]


def test_delete_children_need_recursive(api):
    mk_zvol(api, "tank/v/m1")
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.delete", "tank/v", {"recursive": False, "force": False})
    assert ei.value.errno == 39 and "filesystem has children" in ei.value.reason
    assert api.call("pool.dataset.delete", "tank/v", {"recursive": True}) is True
    assert api.call("pool.dataset.query", [["id", "^", "tank/v"]]) == []


def test_zvol_delete_cascades_extents_mappings_and_orphan_targets(api, sim):
    a = mk_stack(api, "m1")
    # a second target that still has another LUN must survive
    mk_zvol(api, "tank/vols/m2")
    e2 = api.call("iscsi.extent.create", {"name": "m2", "disk": "zvol/tank/vols/m2"})
    t2 = api.call("iscsi.target.create", {"name": "m2", "groups": []})
    api.call("iscsi.targetextent.create", {"target": t2["id"], "extent": e2["id"]})
    mk_zvol(api, "tank/vols/m3")
    e3 = api.call("iscsi.extent.create", {"name": "m3", "disk": "zvol/tank/vols/m3"})
    api.call("iscsi.targetextent.create", {"target": t2["id"], "extent": e3["id"], "lunid": 1})
    lonely = api.call("iscsi.target.create", {"name": "lonely", "groups": []})  # never had a LUN: untouched
    sim.add_session("m1", "iqn.1993-08.org.debian:01:m1")  # the delegate does not check sessions

    assert api.call("pool.dataset.delete", "tank/vols/m1") is True
    assert api.call("pool.dataset.delete", "tank/vols/m3") is True
    assert api.call("iscsi.extent.query", [], {"select": ["name"]}) == [{"name": "m2"}]
    assert [t["name"] for t in api.call("iscsi.target.query")] == ["m2", "lonely"]
    assert api.call("iscsi.targetextent.query", [], {"select": ["extent"]}) == [{"extent": e2["id"]}]
    assert lonely["id"] in [t["id"] for t in api.call("iscsi.target.query")]
    assert a["target"] not in [t["id"] for t in api.call("iscsi.target.query")]


def test_snapshot_create_clone_and_golden_seed(sim, api):
    seeded = sim.add_snapshot("tank/golden/debian@v1", volsize=4 * GiB)
    assert seeded["disk"] == "zvol/tank/golden/debian@v1"
    snaps = api.call("zfs.snapshot.query", [["dataset", "=", "tank/golden/debian"]])
    assert [s["snapshot_name"] for s in snaps] == ["v1"]
    api.call("pool.dataset.create", {"name": "tank/netprov"})
    assert (
        api.call(
            "zfs.snapshot.clone", {"snapshot": "tank/golden/debian@v1", "dataset_dst": "tank/netprov/m1"}
        )
        is True
    )
    clone = api.call("pool.dataset.query", [["id", "=", "tank/netprov/m1"]], {"get": True})
    assert clone["type"] == "VOLUME" and clone["volsize"]["parsed"] == 4 * GiB
    assert clone["origin"]["parsed"] == "tank/golden/debian@v1"
    # a snapshot with a dependent clone cannot go, nor can its zvol
    with pytest.raises(RpcFailure):
        api.call("zfs.snapshot.delete", "tank/golden/debian@v1")
    with pytest.raises(RpcFailure):
        api.call("pool.dataset.delete", "tank/golden/debian", {"recursive": True})
    snap = api.call("zfs.snapshot.create", {"dataset": "tank/netprov/m1", "name": "s1"})
    assert snap["id"] == "tank/netprov/m1@s1"
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.delete", "tank/netprov/m1")
    assert "has children" in ei.value.reason
    assert api.call("pool.dataset.delete", "tank/netprov/m1", {"recursive": True}) is True
    assert api.call("zfs.snapshot.delete", "tank/golden/debian@v1") is True


def test_core_uses_zfs_snapshot_namespace(sim_factory, connect_factory):
    s = sim_factory("13")
    s.add_snapshot("tank/golden/img@v1", volsize=GiB)
    c = connect_factory(s, kind="legacy")
    assert c.request("pool.snapshot.query")["error"]["error"] == 201
    assert c.call("zfs.snapshot.query")[0]["id"] == "tank/golden/img@v1"


def test_managedby_ip_stamping_core_only(sim_factory, connect_factory):
    s13, s25 = sim_factory("13"), sim_factory("25.04")
    for s, expected in ((s13, "netprov@127.0.0.1"), (s25, "netprov")):
        c = connect_factory(s)
        r = c.call("pool.dataset.create", {"name": "tank/x", "managedby": "netprov"})
        assert r["managedby"]["parsed"] == expected


def test_strict_int_volsize_on_25_10(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.10"))
    with pytest.raises(RpcFailure) as ei:
        c.call("pool.dataset.create", {"name": "tank/a", "type": "VOLUME", "volsize": "1073741824"})
    assert ei.value.messages() == ["Input should be a valid integer"]


def test_dataset_query_options(api):
    mk_zvol(api, "tank/v/m1")
    r = api.call("pool.dataset.query", [["id", "=", "tank/v"]], {"extra": {"retrieve_children": False}})
    assert r[0]["children"] == []
    r = api.call("pool.dataset.query", [["id", "=", "tank/v"]])
    assert [c["id"] for c in r[0]["children"]] == ["tank/v/m1"]
    r = api.call("pool.dataset.query", [["properties.volsize.parsed", "=", GiB]])
    assert r == []  # no such nesting in entries
    r = api.call("pool.dataset.query", [["volsize.parsed", "=", GiB]], {"select": ["id", "volsize.parsed"]})
    assert r == [{"id": "tank/v/m1", "volsize": {"parsed": GiB}}]


@pytest.mark.parametrize("profile,has_pool_snapshot", [("13", False), ("24.10", False), ("25.04", False),
                                                       ("25.10", True)])
def test_pool_snapshot_namespace_only_from_25_10(sim_factory, connect_factory, profile, has_pool_snapshot):
    """pool.snapshot.* first appears in TS-25.10 (middleware commit 5d42c5cfbd); zfs.snapshot.* is on all."""
    s = sim_factory(profile)
    s.add_snapshot("tank/golden/img@v1", volsize=GiB)
    c = connect_factory(s)
    assert c.call("zfs.snapshot.query")[0]["id"] == "tank/golden/img@v1"
    if has_pool_snapshot:
        assert c.call("pool.snapshot.query")[0]["id"] == "tank/golden/img@v1"
    else:
        assert c.request("pool.snapshot.query")["error"]


@pytest.mark.parametrize("profile", ["13", "25.04", "25.10"])
def test_promote_moves_snapshots_so_the_origin_can_go(sim_factory, connect_factory, profile):
    """zfs promote: the clone takes its origin snapshot and the older ones; the old zvol becomes its clone and can
    be destroyed without taking any data (the net under netprov's destroys, ADR 0006)."""
    s = sim_factory(profile)
    c = connect_factory(s)
    ns = "pool.snapshot" if profile == "25.10" else "zfs.snapshot"
    mk_zvol(c, "tank/vols/m1")
    s.write_data("tank/vols/m1", "old")
    c.call(f"{ns}.create", {"dataset": "tank/vols/m1", "name": "a"})
    s.write_data("tank/vols/m1", "newer")
    c.call(f"{ns}.create", {"dataset": "tank/vols/m1", "name": "b"})
    s.write_data("tank/vols/m1", "newest")
    c.call(f"{ns}.create", {"dataset": "tank/vols/m1", "name": "c"})
    # a snapshot dies with its zvol: a plain delete refuses, a recursive one would take it
    with pytest.raises(RpcFailure):
        c.call("pool.dataset.delete", "tank/vols/m1", {"recursive": False})
    c.call(f"{ns}.clone", {"snapshot": "tank/vols/m1@b", "dataset_dst": "tank/vols/kept"})
    assert s.read_data("tank/vols/kept") == "newer"
    with pytest.raises(RpcFailure) as ei:
        c.call("pool.dataset.promote", "tank/vols/m1")
    assert "Only cloned datasets can be promoted" in ei.value.reason
    assert c.call("pool.dataset.promote", "tank/vols/kept") is None
    snaps = {x["id"] for x in c.call(f"{ns}.query")}
    assert snaps == {"tank/vols/kept@a", "tank/vols/kept@b", "tank/vols/m1@c"}
    origin = {d["id"]: d["origin"]["parsed"] for d in c.call("pool.dataset.query", [["id", "^", "tank/vols/"]])}
    assert origin == {"tank/vols/m1": "tank/vols/kept@b", "tank/vols/kept": ""}
    c.call(f"{ns}.delete", "tank/vols/m1@c")
    assert c.call("pool.dataset.delete", "tank/vols/m1", {"recursive": False}) is True
    assert s.read_data("tank/vols/kept") == "newer" and s.read_data("tank/vols/kept@a") == "old"
    # the kept zvol, with its snapshots, can itself go only recursively (nothing depends on it now)
    with pytest.raises(RpcFailure):
        c.call("pool.dataset.delete", "tank/vols/kept", {"recursive": False})
    assert c.call("pool.dataset.delete", "tank/vols/kept", {"recursive": True}) is True
    assert c.call(f"{ns}.query") == []
