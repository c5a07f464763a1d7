"""Release-specific behaviour, each rule traced to the middleware source at the profile's tag.

FreeNAS 11.3 (TN-11.3-U5, src/middlewared/middlewared/plugins/iscsi.py, plugins/pool.py) and TrueNAS 26
(TS-26.0.0-BETA.3), plus the zvol-delete cascade shared by every release.
"""

from __future__ import annotations

import pytest
from simhelpers import RpcFailure, mk_stack, mk_zvol

from truenas_sim.profiles import PROFILE_ORDER

PW = "Root-pw-0001"


def _open(sim_factory, connect_factory, profile):
    sim = sim_factory(profile, users={"root": PW})
    c = connect_factory(sim, login=False)
    assert c.call("auth.login", "root", PW) is True
    return sim, c


@pytest.mark.parametrize("profile", PROFILE_ORDER)
def test_zvol_delete_leaves_a_disabled_extent(sim_factory, connect_factory, profile):
    """pool.dataset.delete asks each attachment delegate for query(path, enabled=True)
    (common/attachment/__init__.py get_query_filters; 11.3: plugins/iscsi.py ISCSIFSAttachmentDelegate.query):
    an extent that is disabled is not an attachment and survives the zvol."""
    _, api = _open(sim_factory, connect_factory, profile)
    mk_zvol(api, "tank/vols/m1")
    on = api.call("iscsi.extent.create", {"name": "on", "disk": "zvol/tank/vols/m1"})
    off = api.call("iscsi.extent.update", on["id"], {"enabled": False})
    assert off["enabled"] is False
    assert api.call("pool.dataset.delete", "tank/vols/m1") is True
    assert [e["name"] for e in api.call("iscsi.extent.query")] == ["on"]


def test_freenas_11_3_login_and_shapes(sim_factory, connect_factory):
    sim, api = _open(sim_factory, connect_factory, "11.3")
    assert api.call("system.version") == "FreeNAS-11.3-U5"
    # no API keys before 12 (plugins/api_key.py absent at TN-11.3-U5): the method does not exist
    with pytest.raises(RpcFailure) as ei:
        api.call("auth.login_with_api_key", sim.api_key)
    assert "not found" in ei.value.reason.lower() or "does not exist" in ei.value.reason.lower()
    # initiator groups carry a tag, assigned from len(groups)+1 when 0 (do_create); no "locked" on extents
    g1 = api.call("iscsi.initiator.create", {"initiators": ["iqn.x:a"]})
    g2 = api.call("iscsi.initiator.create", {"initiators": ["iqn.x:b"], "tag": 0})
    assert (g1["tag"], g2["tag"]) == (1, 2)
    ids = mk_stack(api, "m1")
    ext = api.call("iscsi.extent.query", [["id", "=", ids["extent"]]], {"get": True})
    assert "locked" not in ext
    # serial: a plain Str(max_length=16) schema error
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.update", ids["extent"], {"serial": "x" * 17})
    assert "Value greater than 16 not allowed" in ei.value.messages()
    # a missing zvol: os.path.exists(f'/dev/{disk}') -> "ZVOL zvol/... does not exist"
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.extent.create", {"name": "gone", "disk": "zvol/tank/vols/nope"})
    assert "ZVOL zvol/tank/vols/nope does not exist" in ei.value.messages()
    # CHAP credentials: delete is not checked against targets using the tag (check arrived in 12)
    a = api.call("iscsi.auth.create", {"tag": 7, "user": "u1", "secret": "0123456789ab"})
    t = api.call("iscsi.target.create", {"name": "chap", "groups": [{"portal": 1, "authmethod": "CHAP", "auth": 7}]})
    assert api.call("iscsi.auth.delete", a["id"]) is True
    assert api.call("iscsi.target.get_instance", t["id"])["name"] == "chap"
    # zvols: no managedby (12+) on pool.dataset.create; the comments property holds netprov's mark
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": "tank/vols/m9", "type": "VOLUME", "volsize": 2**30,
                                         "managedby": "netprov"})
    assert "pool_dataset_create.managedby" in ei.value.attrs()
    # zvol delete: extents and mappings go, the target stays (the orphan-target cleanup arrived in 12)
    assert api.call("pool.dataset.delete", "tank/vols/m1") is True
    assert api.call("iscsi.target.get_instance", ids["target"])["name"] == "m1"
    assert api.call("iscsi.targetextent.query") == []


def test_truenas_26_shapes(sim_factory, connect_factory):
    sim, api = _open(sim_factory, connect_factory, "26")
    # zfs.snapshot.* is gone (plugins/zfs_/snapshot*.py absent at TS-26.0.0-BETA.3): pool.snapshot.* only
    resp = api.request("zfs.snapshot.query")
    assert resp.get("error")
    assert api.call("pool.snapshot.query") == []
    ids = mk_stack(api, "m1")
    ext = api.call("iscsi.extent.get_instance", ids["extent"])
    assert ext["dataset"] is None and ext["relative_path"] is None   # DISK extents: null (extents.py extend)
    g = api.call("iscsi.global.config")
    assert g["mode"] == 0 and "direct_config" in g
    # service.start is @private in 26 (plugins/service.py): still served, as the middleware only logs a warning
    # for private calls; netprov uses the public service.control job
    assert "service.start" in sim.nas.methods and "service.control" in sim.nas.methods


@pytest.mark.parametrize("profile", ["11.3", "13"])
def test_core_lacks_the_scale_only_rules(sim_factory, connect_factory, profile):
    """Rules that exist only in SCALE's plugins/iscsi_/*.py, not in CORE's plugins/iscsi.py."""
    sim, api = _open(sim_factory, connect_factory, profile)
    sim.add_snapshot("tank/golden/img@v1")
    # a snapshot extent need not be read-only (extents.py: "Must be set when disk is a ZFS Snapshot")
    assert api.call("iscsi.extent.create", {"name": "snap", "disk": "zvol/tank/golden/img@v1"})["ro"] is False
    # a CHAP group without an auth tag (targets.py: "Authentication group is required for CHAP ...")
    p = api.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0", "port": 3260}]})
    t = api.call("iscsi.target.create", {"name": "t", "groups": [{"portal": p["id"], "authmethod": "CHAP"}]})
    assert t["groups"][0]["auth"] is None
    # a second portal on the same ip:port: CORE's message, on .listen
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0", "port": 3260}]})
    assert ei.value.messages() == ["0.0.0.0:3260 already in use."]
    assert ei.value.attrs()[0].endswith(".listen")


@pytest.mark.parametrize("profile", ["25.10", "26"])
def test_dataset_name_rules_from_25_10(sim_factory, connect_factory, profile):
    """TS-25.10.1 plugins/pool_/dataset.py: the missing-parent message names the parent; the 200-character
    limit (ZFS_MAX_DATASET_NAME_LEN) is defined in api/v25_10_1/pool_dataset.py but not enforced."""
    _, api = _open(sim_factory, connect_factory, profile)
    with pytest.raises(RpcFailure) as ei:
        api.call("pool.dataset.create", {"name": "tank/nope/child"})
    assert ei.value.messages() == ["Parent dataset (tank/nope) does not exist."]
    long = "tank/" + "x" * 210
    assert api.call("pool.dataset.create", {"name": long})["id"] == long


@pytest.mark.parametrize("profile", ["11.3", "13"])
def test_core_target_name_message(sim_factory, connect_factory, profile):
    """TN-11.3-U5 / TN-13.0-U6.1 plugins/iscsi.py: the CORE wording (SCALE's starts with "Only")."""
    _, api = _open(sim_factory, connect_factory, profile)
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.target.create", {"name": "UPPER", "groups": []})
    assert ei.value.messages() == [
        "Lowercase alphanumeric characters plus dot (.), dash (-), and colon (:) are allowed."]
