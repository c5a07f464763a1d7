"""iSCSI object rules (truenas_sim/methods/iscsi_*.py; each message traced in docs/truenas-sources.md)."""

import pytest
from simhelpers import GiB, RpcFailure, mk_stack, mk_zvol


def portal(api, ip="0.0.0.0"):
    return api.call("iscsi.portal.create", {"listen": [{"ip": ip}]})


# ------------------------------------------------------------------------------------------- extents
def test_extent_entry_defaults(api):
    mk_zvol(api, "tank/v/m1")
    e = api.call("iscsi.extent.create", {"name": "m1", "disk": "zvol/tank/v/m1"})
    assert e["type"] == "DISK" and e["disk"] == e["path"] == "zvol/tank/v/m1"
    assert len(e["serial"]) == 15 and e["naa"].startswith("0x6589cfc000000") and len(e["naa"]) == 34
    assert e["filesize"] == "0" and e["blocksize"] == 512 and e["rpm"] == "SSD" and e["vendor"] == "TrueNAS"
    assert e["insecure_tpc"] is True and e["ro"] is False and e["enabled"] is True and e["locked"] is False


@pytest.mark.parametrize(
    "profile,msg",
    [
        ("25.04", "String should have at most 64 characters"),
        ("24.10", "The value may not be longer than 64 characters"),
    ],
)
def test_extent_name_max_64_on_scale(sim_factory, connect_factory, profile, msg):
    c = connect_factory(sim_factory(profile))
    mk_zvol(c, "tank/v/m1")
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.extent.create", {"name": "x" * 65, "disk": "zvol/tank/v/m1"})
    assert ei.value.messages() == [msg] and ei.value.attrs() == ["iscsi_extent_create.name"]
    c.call("iscsi.extent.create", {"name": "x" * 64, "disk": "zvol/tank/v/m1"})


def test_extent_name_unlimited_on_core(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    mk_zvol(c, "tank/v/m1")
    c.call("iscsi.extent.create", {"name": "x" * 100, "disk": "zvol/tank/v/m1"})


def test_extent_name_unique_and_quotes(api):
    mk_zvol(api, "tank/v/a")
    mk_zvol(api, "tank/v/b")
    api.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a"})
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/b"})
    assert ei.value.messages() == ["Extent name must be unique"]
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": 'b"', "disk": "zvol/tank/v/b"})
    assert ei.value.messages() == ["Double quotes are not allowed"]


def test_extent_names_colliding_after_scst_flattening_break_reload(api, sim):
    """`a.b` and `a_b` are distinct to the API but the same SCST device: the next reload fails."""
    api.call("service.start", "iscsitarget", {"silent": False})
    mk_zvol(api, "tank/v/a")
    mk_zvol(api, "tank/v/b")
    api.call("iscsi.extent.create", {"name": "m.1", "disk": "zvol/tank/v/a"})
    api.call("iscsi.extent.create", {"name": "m_1", "disk": "zvol/tank/v/b"})  # create does not reload
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": "t1", "groups": []})
    assert (
        ei.value.errno == 202
        and ei.value.reason == "[ESERVICESTARTFAILURE] The iscsitarget service failed to start"
    )
    # stopped service: no reload, no failure; but it will not start again either
    api.call("service.stop", "iscsitarget")
    assert api.call("service.start", "iscsitarget") is False
    with pytest.raises(RpcFailure):
        api.call("service.start", "iscsitarget", {"silent": False})


def test_core_has_no_scst_flattening(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    c.call("service.start", "iscsitarget")
    mk_zvol(c, "tank/v/a")
    mk_zvol(c, "tank/v/b")
    c.call("iscsi.extent.create", {"name": "m.1", "disk": "zvol/tank/v/a"})
    c.call("iscsi.extent.create", {"name": "m_1", "disk": "zvol/tank/v/b"})
    c.call("iscsi.target.create", {"name": "t1", "groups": []})


@pytest.mark.parametrize(
    "disk,attr,msg",
    [
        (None, "iscsi_extent_create.disk", "This field is required"),
        ("tank/v/m1", "iscsi_extent_create.disk", 'Disk name must start with "zvol/"'),
        (
            "zvol/tank/v/none",
            "iscsi_extent_create.disk",
            "Device '/dev/zvol/tank/v/none' for volume 'tank/v/none' does not exist",
        ),
        (
            "zvol/tank/v",
            "iscsi_extent_create.disk",
            "Device '/dev/zvol/tank/v' for volume 'tank/v' does not exist",
        ),
    ],
)
def test_extent_disk_must_be_existing_zvol(api, disk, attr, msg):
    mk_zvol(api, "tank/v/m1")
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": "e", "disk": disk})
    assert ei.value.attrs() == [attr] and ei.value.messages() == [msg]


def test_extent_disk_core_message(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.extent.create", {"name": "e", "disk": "zvol/tank/nope"})
    assert ei.value.messages() == ["Zvol tank/nope does not exist"]


def test_extent_space_in_zvol_name_maps_to_plus(api):
    api.call("pool.dataset.create", {"name": "tank/my vols"})
    api.call("pool.dataset.create", {"name": "tank/my vols/m1", "type": "VOLUME", "volsize": GiB})
    with pytest.raises(RpcFailure):
        api.call("iscsi.extent.create", {"name": "e1", "disk": "zvol/tank/my vols/m1"})
    e = api.call("iscsi.extent.create", {"name": "e1", "disk": "zvol/tank/my+vols/m1"})
    assert e["disk"] == "zvol/tank/my+vols/m1"


def test_zvol_device_lag_knob(api, sim):
    sim.knobs.zvol_device_lag = 2
    mk_zvol(api, "tank/v/m1")
    for _ in range(2):
        with pytest.raises(RpcFailure) as ei:
            api.call("iscsi.extent.create", {"name": "m1", "disk": "zvol/tank/v/m1"})
        assert ei.value.messages() == ["Device '/dev/zvol/tank/v/m1' for volume 'tank/v/m1' does not exist"]
    assert api.call("iscsi.extent.create", {"name": "m1", "disk": "zvol/tank/v/m1"})["id"] == 1
    sim.knobs.zvol_device_lag = 0
    mk_zvol(api, "tank/v/m2")
    api.call("iscsi.extent.create", {"name": "m2", "disk": "zvol/tank/v/m2"})


def test_snapshot_extent_requires_ro(api, sim):
    sim.add_snapshot("tank/golden/img@v1", volsize=GiB)
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": "g", "disk": "zvol/tank/golden/img@v1"})
    assert ei.value.attrs() == ["iscsi_extent_create.ro"]
    assert ei.value.messages() == ["Must be set when disk is a ZFS Snapshot"]
    api.call("iscsi.extent.create", {"name": "g", "disk": "zvol/tank/golden/img@v1", "ro": True})


@pytest.mark.parametrize(
    "profile,limit,msg",
    [
        ("25.04", 20, "Extent serial can not exceed 20 characters"),
        ("13", 15, "Maximum length of 15 characters is allowed for extent serial"),
    ],
)
def test_serial_rules(sim_factory, connect_factory, profile, limit, msg):
    c = connect_factory(sim_factory(profile))
    mk_zvol(c, "tank/v/a")
    mk_zvol(c, "tank/v/b")
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a", "serial": "s" * (limit + 1)})
    assert ei.value.messages() == [msg]
    c.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a", "serial": "s" * limit})
    if profile == "13":
        # no uniqueness rule on CORE (TN-13.0-U6.1 plugins/iscsi.py clean_name): a second extent may share it
        assert c.call("iscsi.extent.create", {"name": "b", "disk": "zvol/tank/v/b", "serial": "s" * limit})
        return
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.extent.create", {"name": "b", "disk": "zvol/tank/v/b", "serial": "s" * limit})
    assert ei.value.messages() == ["Serial number must be unique"]


def test_pydantic_extra_and_enum_messages(api):
    mk_zvol(api, "tank/v/a")
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a", "type": "BLOCK", "bogus": 1})
    assert sorted(ei.value.messages()) == [
        "Extra inputs are not permitted",
        "Input should be 'DISK' or 'FILE'",
    ]


def test_extent_update_reloads_twice_create_none(api, sim):
    api.call("service.start", "iscsitarget")
    mk_zvol(api, "tank/v/a")
    before = sim.reload_count
    e = api.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a"})
    assert sim.reload_count == before
    api.call("iscsi.extent.update", e["id"], {"comment": "x"})
    assert sim.reload_count == before + 2


def test_extent_update_rules(api):
    mk_zvol(api, "tank/v/a")
    mk_zvol(api, "tank/v/b")
    a = api.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a"})
    api.call("iscsi.extent.create", {"name": "b", "disk": "zvol/tank/v/b"})
    assert api.call("iscsi.extent.update", a["id"], {"comment": "c"})["comment"] == "c"  # own name ok
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.update", a["id"], {"name": "b"})
    assert ei.value.attrs() == ["iscsi_extent_update.name"]


def test_file_extent_rules(api):
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "iscsi.extent.create", {"name": "f", "type": "FILE", "path": "/mnt/tank/f.img", "filesize": 1000}
        )
    assert ei.value.messages() == ["File size (1000) must be a multiple of block size (512)"]
    with pytest.raises(RpcFailure):
        api.call("iscsi.extent.create", {"name": "f", "type": "FILE", "path": "/tmp/f.img", "filesize": 1024})
    e = api.call(
        "iscsi.extent.create", {"name": "f", "type": "FILE", "path": "/mnt/tank/f.img", "filesize": 1024}
    )
    assert e["disk"] is None and e["filesize"] == "1024"


# ------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("name", ["UPPER", "under_score", "sla/sh", "sp ace"])
def test_target_name_charset(api, name):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": name, "groups": []})
    # 25.04: the model's match_validator assertion (api/v25_04_0/iscsi_target.py:42 @ TS-25.04.2.4)
    assert ei.value.messages() == ["Assertion failed, Name can only contain lowercase alphanumeric "
                                   "charactersplus dot (.), dash (-), and colon (:)"]
    assert ei.value.attrs() == ["iscsi_target_create.name"]


def test_target_name_length_120_from_25_04(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.04"))
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.target.create", {"name": "a" * 121})
    assert ei.value.messages() == ["String should have at most 120 characters"]
    c.call("iscsi.target.create", {"name": "a" * 120})
    c13 = connect_factory(sim_factory("13"))
    c13.call("iscsi.target.create", {"name": "a" * 121})


@pytest.mark.parametrize(
    "profile,msg", [("25.04", "Target with this name already exists"), ("13", "Target name already exists")]
)
def test_target_name_unique(sim_factory, connect_factory, profile, msg):
    c = connect_factory(sim_factory(profile))
    c.call("iscsi.target.create", {"name": "m1"})
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.target.create", {"name": "m1"})
    assert ei.value.messages() == [msg]


def test_alias_rules(api):
    api.call("iscsi.target.create", {"name": "a", "alias": "boot"})
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": "b", "alias": "boot"})
    assert ei.value.messages() == ["Alias already exists"]
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": "b", "alias": "target"})
    assert ei.value.messages() == ["target is a reserved word"]


def test_empty_alias_core_vs_scale(sim_factory, connect_factory):
    c13 = connect_factory(sim_factory("13"))
    assert c13.call("iscsi.target.create", {"name": "a", "alias": ""})["alias"] == ""
    with pytest.raises(RpcFailure) as ei:
        c13.call("iscsi.target.create", {"name": "b", "alias": ""})
    assert ei.value.messages() == ["Alias already exists"]
    c13.call("iscsi.target.create", {"name": "b", "alias": None})
    c13.call("iscsi.target.create", {"name": "c", "alias": None})
    c25 = connect_factory(sim_factory("25.04"))
    assert c25.call("iscsi.target.create", {"name": "a", "alias": ""})["alias"] is None
    c25.call("iscsi.target.create", {"name": "b", "alias": ""})


def test_target_entry_per_profile(sim_factory, connect_factory):
    c25 = connect_factory(sim_factory("25.04"))
    p = portal(c25)
    t = c25.call("iscsi.target.create", {"name": "m1", "groups": [{"portal": p["id"]}]})
    assert t == {
        "id": 1,
        "name": "m1",
        "alias": None,
        "mode": "ISCSI",
        "groups": [{"portal": 1, "initiator": None, "authmethod": "NONE", "auth": None}],
        "auth_networks": [],
        "rel_tgt_id": 1,
        "iscsi_parameters": None,
    }
    c13 = connect_factory(sim_factory("13"))
    p = c13.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0", "port": 3260}]})
    t = c13.call("iscsi.target.create", {"name": "m1", "groups": [{"portal": p["id"]}]})
    assert set(t) == {"id", "name", "alias", "mode", "groups"}


def test_target_mode_fc_refused(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": "a", "mode": "FC"})
    assert ei.value.messages() == ["Fibre Channel not enabled"]


def test_groups_use_portal_and_initiator_ids_but_auth_tags(api):
    portal(api, "0.0.0.0")
    p2 = portal(api, "192.0.2.10")
    ini = api.call(
        "iscsi.initiator.create", {"initiators": ["iqn.1993-08.org.debian:01:m1"], "comment": "m1"}
    )
    api.call("iscsi.auth.create", {"tag": 1, "user": "u1", "secret": "abcdefghijkl"})
    mutual = api.call(
        "iscsi.auth.create",
        {"tag": 7, "user": "u2", "secret": "abcdefghijkl", "peeruser": "p", "peersecret": "mnopqrstuvwx"},
    )
    assert mutual["id"] == 2 and mutual["tag"] == 7
    # auth=2 is the *id* of the mutual entry, but groups take tags: tag 2 does not exist
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "iscsi.target.create",
            {
                "name": "a",
                "groups": [
                    {"portal": p2["id"], "initiator": ini["id"], "authmethod": "CHAP_MUTUAL", "auth": 2}
                ],
            },
        )
    assert ei.value.messages() == ["Authentication group not found"]
    # tag 1 exists but has no peer user
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "iscsi.target.create",
            {"name": "a", "groups": [{"portal": p2["id"], "authmethod": "CHAP_MUTUAL", "auth": 1}]},
        )
    assert ei.value.messages() == ["Authentication group 1 does not support CHAP Mutual"]
    t = api.call(
        "iscsi.target.create",
        {
            "name": "a",
            "groups": [{"portal": p2["id"], "initiator": ini["id"], "authmethod": "CHAP_MUTUAL", "auth": 7}],
        },
    )
    assert t["groups"][0]["auth"] == 7


def test_group_validation_messages(api):
    p = portal(api)
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "iscsi.target.create",
            {
                "name": "a",
                "groups": [
                    {"portal": p["id"]},
                    {"portal": p["id"]},
                    {"portal": 9},
                    {"portal": p["id"] + 100, "initiator": 5},
                    {"portal": p["id"], "authmethod": "CHAP"},
                ],
            },
        )
    msgs = ei.value.messages()
    assert f"Portal {p['id']} cannot be duplicated on a target" in msgs
    assert "9 Portal not found in database" in msgs
    assert "5 Initiator not found in database" in msgs
    assert "Authentication group is required for CHAP and CHAP Mutual" in msgs
    assert "iscsi_target_create.groups.2.portal" in ei.value.attrs()


def test_target_update_reports_create_prefix(api):
    api.call("iscsi.target.create", {"name": "a"})
    b = api.call("iscsi.target.create", {"name": "b"})
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.update", b["id"], {"name": "a"})
    assert ei.value.attrs() == ["iscsi_target_create.name"]
    assert api.call("iscsi.target.update", b["id"], {"alias": "bee"})["alias"] == "bee"


def test_rel_tgt_id_lowest_free(api):
    ids = [api.call("iscsi.target.create", {"name": n})["id"] for n in ("a", "b", "c")]
    api.call("iscsi.target.delete", ids[0])
    assert api.call("iscsi.target.create", {"name": "d"})["rel_tgt_id"] == 1


def test_target_delete_signature_per_profile(sim_factory, connect_factory):
    c24 = connect_factory(sim_factory("24.10"))
    t = c24.call("iscsi.target.create", {"name": "a"})
    with pytest.raises(RpcFailure):
        c24.call("iscsi.target.delete", t["id"], False, True)
    assert c24.call("iscsi.target.delete", t["id"], False) is True


def test_target_delete_removes_mappings_and_optionally_extents(api):
    a = mk_stack(api, "a")
    b = mk_stack(api, "b")
    assert api.call("iscsi.target.delete", a["target"], False, False) is True
    assert api.call("iscsi.targetextent.query", [["target", "=", a["target"]]]) == []
    assert [e["name"] for e in api.call("iscsi.extent.query")] == ["a", "b"]
    assert api.call("iscsi.target.delete", b["target"], False, True) is True
    assert [e["name"] for e in api.call("iscsi.extent.query")] == ["a"]


# ------------------------------------------------------------------------------------------- mappings
def test_lunid_auto_lowest_free_and_collision(api):
    t = api.call("iscsi.target.create", {"name": "t"})
    exts = []
    for i in range(4):
        mk_zvol(api, f"tank/v/z{i}")
        exts.append(api.call("iscsi.extent.create", {"name": f"z{i}", "disk": f"zvol/tank/v/z{i}"})["id"])
    m0 = api.call("iscsi.targetextent.create", {"target": t["id"], "extent": exts[0]})
    m2 = api.call("iscsi.targetextent.create", {"target": t["id"], "extent": exts[1], "lunid": 2})
    assert m0["lunid"] == 0 and m2["lunid"] == 2
    m1 = api.call("iscsi.targetextent.create", {"target": t["id"], "extent": exts[2], "lunid": None})
    assert m1["lunid"] == 1
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.targetextent.create", {"target": t["id"], "extent": exts[3], "lunid": 2})
    assert ei.value.messages() == ["LUN ID is already being used for this target."]
    assert ei.value.attrs() == ["iscsi_targetextent_create.lunid"]
    assert api.call("iscsi.targetextent.create", {"target": t["id"], "extent": exts[3]})["lunid"] == 3


@pytest.mark.parametrize(
    "profile,lunid,msg",
    [
        ("25.04", 16383, "LUN ID must be a positive integer and lower than 16382"),
        ("25.04", -1, "LUN ID must be a positive integer and lower than 16382"),
        ("13", 1024, "LUN ID must be a positive integer and lower than 1023"),
    ],
)
def test_lunid_range(sim_factory, connect_factory, profile, lunid, msg):
    c = connect_factory(sim_factory(profile))
    t = c.call("iscsi.target.create", {"name": "t"})
    mk_zvol(c, "tank/v/a")
    e = c.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a"})
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.targetextent.create", {"target": t["id"], "extent": e["id"], "lunid": lunid})
    assert msg in ei.value.messages()


def test_one_extent_per_target_on_scale(api):
    a = mk_stack(api, "a")
    t2 = api.call("iscsi.target.create", {"name": "t2"})
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.targetextent.create", {"target": t2["id"], "extent": a["extent"]})
    assert ei.value.messages() == ["Extent is already in use."]
    assert ei.value.attrs() == ["iscsi_targetextent_create.extent"]


def test_core_allows_extent_sharing_across_targets(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    mk_zvol(c, "tank/v/a")
    e = c.call("iscsi.extent.create", {"name": "a", "disk": "zvol/tank/v/a"})
    t1 = c.call("iscsi.target.create", {"name": "t1"})
    t2 = c.call("iscsi.target.create", {"name": "t2"})
    c.call("iscsi.targetextent.create", {"target": t1["id"], "extent": e["id"]})
    c.call("iscsi.targetextent.create", {"target": t2["id"], "extent": e["id"]})
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.targetextent.create", {"target": t2["id"], "extent": e["id"], "lunid": 5})
    assert ei.value.messages() == ["Extent is already in this target."]


def test_pydantic_prefix_for_mapping_schema_errors(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.targetextent.create", {"target": 1})
    assert ei.value.attrs() == ["iscsi_target_to_extent_create.extent"]
    assert ei.value.messages() == ["Field required"]


# ------------------------------------------------------------------------------------ sessions/in use
def test_in_use_refusals_driven_by_sessions(api, sim):
    a = mk_stack(api, "m1")
    sim.add_session("m1", "iqn.1993-08.org.debian:01:m1")
    sess = api.call("iscsi.global.sessions")
    assert sess[0]["target"] == "iqn.2005-10.org.freenas.ctl:m1"
    assert sess[0]["initiator"] == "iqn.1993-08.org.debian:01:m1"
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.delete", a["target"])
    assert ei.value.reason == "[EFAULT] Target m1 is in use."
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.delete", a["extent"])
    assert ei.value.reason == "[EFAULT] Associated target(s) iqn.2005-10.org.freenas.ctl:m1 is in use."
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.targetextent.delete", a["targetextent"])
    assert ei.value.reason == "[EFAULT] Associated target iqn.2005-10.org.freenas.ctl:m1 is in use."
    assert api.call("iscsi.targetextent.delete", a["targetextent"], True) is True
    sim.clear_sessions()
    assert api.call("iscsi.extent.delete", a["extent"]) is True


def test_force_deletes_target_in_use(api, sim):
    a = mk_stack(api, "m1")
    sim.add_session("iqn.2005-10.org.freenas.ctl:m1", "iqn.x:1")
    assert api.call("iscsi.target.delete", a["target"], True) is True
    assert api.call("iscsi.global.sessions") == []


def test_sessions_filterable(api, sim):
    sim.add_session("a", "iqn.x:1")
    sim.add_session("b", "iqn.x:2")
    assert api.call("iscsi.global.sessions", [["initiator", "=", "iqn.x:2"]], {"count": True}) == 1


# ------------------------------------------------------------------------------------------- portals
def test_portal_rules(api):
    p = portal(api)
    assert p == {"id": 1, "tag": 1, "comment": "", "listen": [{"ip": "0.0.0.0", "port": 3260}]}
    with pytest.raises(RpcFailure) as ei:
        portal(api, "0.0.0.0")
    assert ei.value.messages() == ["'0.0.0.0' IP is already in use."]
    with pytest.raises(RpcFailure) as ei:
        portal(api, "10.9.9.9")
    assert ei.value.messages() == ["IP 10.9.9.9 not configured on this system."]
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.portal.create", {"listen": []})
    assert ei.value.attrs() == ["iscsi_portal_create.listen"]


def test_portal_discovery_fields_rejected_on_25_04(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}], "discovery_authmethod": "NONE"})
    assert ei.value.messages() == ["Extra inputs are not permitted"]


def test_portal_core_port_per_ip(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    p = c.call(
        "iscsi.portal.create",
        {
            "comment": "netprov",
            "discovery_authmethod": "NONE",
            "discovery_authgroup": None,
            "listen": [{"ip": "0.0.0.0", "port": 3261}],
        },
    )
    assert p["listen"] == [{"ip": "0.0.0.0", "port": 3261}] and p["discovery_authmethod"] == "NONE"


def test_portal_listen_port_follows_global(api):
    api.call("iscsi.global.update", {"listen_port": 3270})
    assert portal(api)["listen"] == [{"ip": "0.0.0.0", "port": 3270}]


def test_portal_delete_renumbers_tags_and_drops_groups(api):
    portal(api, "0.0.0.0")
    p2, p3 = portal(api, "::"), portal(api, "192.0.2.10")
    t = api.call("iscsi.target.create", {"name": "t", "groups": [{"portal": p2["id"]}, {"portal": p3["id"]}]})
    assert api.call("iscsi.portal.delete", p2["id"]) is True
    assert [(p["id"], p["tag"]) for p in api.call("iscsi.portal.query")] == [(1, 1), (3, 2)]
    assert api.call("iscsi.target.get_instance", t["id"])["groups"] == [
        {"portal": 3, "initiator": None, "authmethod": "NONE", "auth": None}
    ]


def test_ids_reused_after_deleting_highest(api):
    p1, p2 = portal(api, "0.0.0.0"), portal(api, "::")
    api.call("iscsi.portal.delete", p2["id"])
    assert portal(api, "::")["id"] == p2["id"]
    api.call("iscsi.portal.delete", p1["id"])
    assert portal(api, "0.0.0.0")["id"] == 3  # max(id)+1 (SQLite rowid semantics)


# ------------------------------------------------------------------------------------ initiators
def test_initiator_entry_and_delete_nulls_group(api):
    ini = api.call("iscsi.initiator.create", {"initiators": ["iqn.a:1", "iqn.a:2"], "comment": "m1"})
    assert ini == {"id": 1, "initiators": ["iqn.a:1", "iqn.a:2"], "comment": "m1"}
    p = portal(api)
    t = api.call(
        "iscsi.target.create", {"name": "t", "groups": [{"portal": p["id"], "initiator": ini["id"]}]}
    )
    api.call("iscsi.initiator.delete", ini["id"])
    assert api.call("iscsi.target.get_instance", t["id"])["groups"][0]["initiator"] is None


def test_initiator_core_auth_network(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    ini = c.call("iscsi.initiator.create", {"initiators": [], "auth_network": ["10.0.0.0/8"]})
    assert ini["auth_network"] == ["10.0.0.0/8"]


# ------------------------------------------------------------------------------------------- CHAP
# TS-25.04.2.4 plugins/iscsi_/auth.py validate() / _validate_secret()
@pytest.mark.parametrize(
    "data,attr,msg",
    [
        ({"secret": "short"}, "secret", "Secret must be between 12 and 16 characters."),
        ({"secret": "x" * 17}, "secret", "Secret must be between 12 and 16 characters."),
        ({"secret": " abcdefghijk"}, "secret", "Secret contains leading or trailing space."),
        ({"secret": "abcdefghij#k"}, "secret", "Secret contains invalid characters: #"),
        ({"peeruser": "p"}, "peersecret", "The peer secret is required if you set a peer user."),
        ({"peersecret": "mnopqrstuvwx"}, "peersecret", "The peer user is required if you set a peer secret."),
        (
            {"peeruser": "p", "peersecret": "short"},
            "peersecret",
            "Peer Secret must be between 12 and 16 characters.",
        ),
        (
            {"peeruser": "p", "peersecret": "abcdefghijkl"},
            "peersecret",
            "The peer secret cannot be the same as user secret.",
        ),
    ],
)
def test_chap_rules(api, data, attr, msg):
    body = {"tag": 1, "user": "u", "secret": "abcdefghijkl", **data}
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.create", body)
    assert ei.value.attrs() == [f"iscsi_auth_create.{attr}"] and ei.value.messages() == [msg]


def test_chap_hash_allowed_on_core(sim_factory, connect_factory):
    c = connect_factory(sim_factory("13"))
    r = c.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": "abcdefghij#k"})
    assert "discovery_auth" not in r


def test_auth_pydantic_prefix_is_data(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.create", {"tag": 1, "user": "u"})
    assert ei.value.attrs() == ["data.secret"]


def test_only_one_mutual_discovery_auth(api):
    api.call(
        "iscsi.auth.create",
        {
            "tag": 1,
            "user": "u",
            "secret": "abcdefghijkl",
            "peeruser": "p",
            "peersecret": "mnopqrstuvwx",
            "discovery_auth": "CHAP_MUTUAL",
        },
    )
    with pytest.raises(RpcFailure) as ei:
        api.call(
            "iscsi.auth.create",
            {
                "tag": 2,
                "user": "u",
                "secret": "abcdefghijkl",
                "peeruser": "p",
                "peersecret": "mnopqrstuvwx",
                "discovery_auth": "CHAP_MUTUAL",
            },
        )
    assert ei.value.attrs() == ["iscsi_auth_create.discovery_auth"]


def test_auth_delete_refused_for_last_entry_of_used_tag(api):
    p = portal(api)
    a1 = api.call("iscsi.auth.create", {"tag": 5, "user": "u1", "secret": "abcdefghijkl"})
    a2 = api.call("iscsi.auth.create", {"tag": 5, "user": "u2", "secret": "abcdefghijkl"})
    t = api.call(
        "iscsi.target.create", {"name": "t", "groups": [{"portal": p["id"], "authmethod": "CHAP", "auth": 5}]}
    )
    assert api.call("iscsi.auth.delete", a1["id"]) is True  # another entry keeps tag 5 alive
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.delete", a2["id"])
    # is_in_use(): the auth entry's id and the targets' ids (plugins/iscsi_/auth.py)
    assert ei.value.reason == (f"[EFAULT] Authorized access of {a2['id']} is being used by following "
                               f"target(s): {t['id']}")
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.update", a2["id"], {"tag": 6})
    assert ei.value.attrs() == ["iscsi_auth_update.tag"]


# ------------------------------------------------------------------------------------------- global
def test_global_config_per_profile(sim_factory, connect_factory):
    expected = {
        "25.04": {
            "id": 1,
            "basename": "iqn.2005-10.org.freenas.ctl",
            "isns_servers": [],
            "listen_port": 3260,
            "pool_avail_threshold": None,
            "alua": False,
            "iser": False,
        },
        "24.10": {
            "id": 1,
            "basename": "iqn.2005-10.org.freenas.ctl",
            "isns_servers": [],
            "listen_port": 3260,
            "pool_avail_threshold": None,
            "alua": False,
        },
        "13": {
            "id": 1,
            "basename": "iqn.2005-10.org.freenas.ctl",
            "isns_servers": [],
            "pool_avail_threshold": None,
            "alua": False,
        },
    }
    for profile, exp in expected.items():
        c = connect_factory(sim_factory(profile))
        assert c.call("iscsi.global.config") == exp


def test_global_update(api):
    r = api.call("iscsi.global.update", {"basename": "iqn.2024-01.lab.example"})
    assert r["basename"] == "iqn.2024-01.lab.example"
    with pytest.raises(RpcFailure):
        api.call("iscsi.global.update", {"listen_port": 80})


@pytest.mark.parametrize("profile", ["11.3", "13", "24.10"])
def test_chap_before_25_04_checks_only_the_length(sim_factory, connect_factory, profile):
    """TN-11.3-U5/TN-13.0-U6.1 plugins/iscsi.py, TS-24.10.2.2 plugins/iscsi_/auth.py: no space or '#' rule."""
    s = sim_factory(profile, users={"root": "Root-pw-0001"})
    c = connect_factory(s, login=False)
    assert c.call("auth.login", "root", "Root-pw-0001") is True
    assert c.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": " abcdefghij#"})["tag"] == 1
    with pytest.raises(RpcFailure) as ei:
        c.call("iscsi.auth.create", {"tag": 2, "user": "u", "secret": "abcdefghijkl", "peeruser": "p",
                                     "peersecret": "short"})
    assert ei.value.messages() == ["Peer Secret must be between 12 and 16 characters."]


def test_chap_25_04_reports_every_secret_error(api):
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": " a#"})
    assert ei.value.messages() == ["Secret must be between 12 and 16 characters.",
                                   "Secret contains leading or trailing space.",
                                   "Secret contains invalid characters: #"]
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": "abcdefghijkl",
                                       "discovery_auth": "CHAP_MUTUAL"})
    assert ei.value.messages() == ["Cannot specify CHAP_MUTUAL if peer_user has not been defined."]
