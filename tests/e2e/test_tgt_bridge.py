"""The TrueNAS -> tgt bridge: unit checks of the mapping (no root needed), and one real boot of a
VM from what the TrueNAS simulator holds (e2e)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e import handmade as hm
from tests.support import bootlab, tgt_bridge
from tests.support.bootlab import PxeTree
from tests.support.diskimage import marker

BASENAME = "iqn.2005-10.org.freenas.ctl"


def _state(**over) -> dict:
    s = {
        "global": {"id": 1, "basename": BASENAME, "listen_port": 3260},
        "targets": [{"id": 1, "name": "alpha", "alias": None, "mode": "ISCSI",
                     "groups": [{"portal": 1, "initiator": 1, "authmethod": "CHAP", "auth": 7}],
                     "auth_networks": []}],
        "extents": [{"id": 3, "name": "alpha", "type": "DISK", "disk": "zvol/tank/netprov/alpha",
                     "path": "zvol/tank/netprov/alpha", "enabled": True, "ro": False, "blocksize": 512}],
        "targetextents": [{"id": 1, "target": 1, "extent": 3, "lunid": 1}],
        "initiators": [{"id": 1, "initiators": [f"{hm.INITIATOR_BASE}:alpha"], "comment": "alpha"}],
        "auths": [{"id": 1, "tag": 7, "user": "alpha", "secret": "alpha-secret-12", "peeruser": "",
                   "peersecret": ""}],
    }
    s.update(over)
    return s


def _fake_image(path: Path, name: str) -> Path:
    path.write_text(name)
    return path


def test_plan_maps_iqn_lun_initiators_and_chap(tmp_path):
    r = tgt_bridge.plan(_state(), tmp_path, make_image=_fake_image)
    (t,) = r.targets
    assert t.iqn == f"{BASENAME}:alpha" and t.lun == 1
    assert t.initiators == (f"{hm.INITIATOR_BASE}:alpha",)
    assert t.chap == ("alpha", "alpha-secret-12") and t.mutual is None
    assert r.lun_for("alpha").disk_name == "alpha" and r.lun_for("alpha").backing == "tank/netprov/alpha"
    assert t.backing.read_text() == "alpha"


def test_lun0_needs_a_shift(tmp_path):
    state = _state(targetextents=[{"id": 1, "target": 1, "extent": 3, "lunid": 0}])
    with pytest.raises(tgt_bridge.BridgeError, match="LUN 0"):
        tgt_bridge.plan(state, tmp_path, make_image=_fake_image)
    r = tgt_bridge.plan(state, tmp_path, make_image=_fake_image, lun_shift=1)
    assert r.targets[0].lun == 1 and r.lun_for("alpha").nas_lunid == 0 and r.lun_for("alpha").uri_lun == "1"


def test_redacted_secret_comes_from_env_or_fails_clearly(tmp_path):
    state = _state(auths=[{"id": 1, "tag": 7, "user": "alpha", "secret": tgt_bridge.REDACTED,
                           "peeruser": "", "peersecret": ""}])
    with pytest.raises(tgt_bridge.BridgeError, match="NETPROV_E2E_CHAP_ALPHA"):
        tgt_bridge.plan(state, tmp_path, make_image=_fake_image)
    env = {"NETPROV_E2E_CHAP_ALPHA": "from-the-env-1"}
    r = tgt_bridge.plan(state, tmp_path, make_image=_fake_image, secrets=tgt_bridge.secrets_from_env(environ=env))
    assert r.targets[0].chap == ("alpha", "from-the-env-1")


def test_unmapped_target_is_not_exported_and_empty_group_allows_all(tmp_path):
    state = _state(
        targets=[*_state()["targets"],
                 {"id": 2, "name": "lonely", "groups": [], "auth_networks": []},
                 {"id": 3, "name": "open", "groups": [{"portal": 1, "initiator": 2, "authmethod": "NONE",
                                                       "auth": None}], "auth_networks": []}],
        initiators=[*_state()["initiators"], {"id": 2, "initiators": [], "comment": "everyone"}],
        extents=[*_state()["extents"], {"id": 4, "name": "open", "type": "DISK", "disk": "zvol/tank/x+y/open",
                                        "enabled": True}],
        targetextents=[*_state()["targetextents"], {"id": 2, "target": 3, "extent": 4, "lunid": 1}],
    )
    r = tgt_bridge.plan(state, tmp_path, make_image=_fake_image)
    assert [t.iqn for t in r.targets] == [f"{BASENAME}:alpha", f"{BASENAME}:open"]
    assert r.targets[1].initiators == () and r.targets[1].chap is None
    assert r.lun_for("open").backing == "tank/x y/open"
    assert any("lonely" in n and "not exported" in n for n in r.notes)


def test_core_naming_keeps_full_iqn(tmp_path):
    state = _state(targets=[{**_state()["targets"][0], "name": "iqn.2000-01.com.example:disk1"}])
    assert tgt_bridge.plan(state, tmp_path, make_image=_fake_image, core_naming=True).targets[0].iqn == \
        "iqn.2000-01.com.example:disk1"


# --------------------------------------------------------------------------------------------- e2e

API_KEY = "1-" + "b" * 64


@pytest.mark.e2e
def test_vm_boots_what_the_simulated_nas_holds(make_lab, workdir, monkeypatch):
    sim_mod = pytest.importorskip("netprov.sim.truenas")
    rpc = pytest.importorskip("netprov.adapters.truenas.rpc")
    lab = make_lab("full")
    alpha = hm.Machine("alpha", "52:54:00:99:01:0a", ip=f"{bootlab.SUBNET}.30", chap=("alpha", "alpha-secret-12"))
    with sim_mod.Simulator(profile="25.04", api_key=API_KEY) as sim:
        # What `netprov apply` would create (hand-made here): zvol, extent, CHAP, initiator group, target, LUN 1.
        with rpc.TrueNASClient.connect(sim.url, rpc.Credentials(api_key=API_KEY)) as c:
            c.call("pool.dataset.create", {"name": "tank/netprov", "type": "FILESYSTEM"})
            c.call("pool.dataset.create", {"name": "tank/netprov/alpha", "type": "VOLUME", "volsize": 16 * 2**20,
                                           "volblocksize": "16K"})
            portal = c.call("iscsi.portal.create", {"comment": "lab", "listen": [{"ip": "0.0.0.0"}]})
            ig = c.call("iscsi.initiator.create", {"initiators": [alpha.initiator], "comment": "alpha"})
            c.call("iscsi.auth.create", {"tag": 1, "user": "alpha", "secret": "alpha-secret-12",
                                         "peeruser": "", "peersecret": ""})
            t = c.call("iscsi.target.create", {"name": "alpha", "alias": None, "mode": "ISCSI", "groups": [
                {"portal": portal["id"], "initiator": ig["id"], "authmethod": "CHAP", "auth": 1}]})
            e = c.call("iscsi.extent.create", {"name": "alpha", "type": "DISK", "disk": "zvol/tank/netprov/alpha"})
            c.call("iscsi.targetextent.create", {"target": t["id"], "extent": e["id"], "lunid": 1})
        # A read-only key sees the CHAP secret redacted: the bridge takes it from the test's env.
        ro_key = sim.add_api_key(roles=["SHARING_ISCSI_READ"])
        with rpc.TrueNASClient.connect(sim.url, rpc.Credentials(api_key=ro_key)) as c:
            state = tgt_bridge.nas_state(c)
    assert state["auths"][0]["secret"] == tgt_bridge.REDACTED
    monkeypatch.setenv("NETPROV_E2E_CHAP_ALPHA", "alpha-secret-12")
    report = tgt_bridge.configure(lab.tgt, state, workdir / "zvols", secrets=tgt_bridge.secrets_from_env())
    lun = report.lun_for("alpha")
    assert lun.iqn == f"{BASENAME}:alpha" and lun.tgt_lun == 1

    tree = PxeTree.create(lab.workdir / "pxe")
    hm.write_tree(tree, "full", [alpha])
    lab.serve(tree)  # targets=None: tgtd keeps what the bridge configured
    vm = lab.vm("alpha", alpha.mac)
    vm.wait_for(re.escape(marker("alpha")), fail=[hm.FAILED_MESSAGE], timeout=45)
    assert lab.tgt.connected_initiators(lun.iqn) == [alpha.initiator]
