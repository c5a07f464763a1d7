"""The TrueNAS -> tgt bridge: unit checks of the mapping (no root needed), and its incremental
application to a real tgtd (e2e, no VM). Real boots from what the simulator holds, with secrets read
back redacted through a read-only key, are the cases of :mod:`tests.e2e.test_boot_cases`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import tgt_bridge

BASENAME = "iqn.2005-10.org.freenas.ctl"
INITIATOR_BASE = "iqn.2026-11.lab.netprov"


def _state(**over) -> dict:
    s = {
        "global": {"id": 1, "basename": BASENAME, "listen_port": 3260},
        "targets": [{"id": 1, "name": "alpha", "alias": None, "mode": "ISCSI",
                     "groups": [{"portal": 1, "initiator": 1, "authmethod": "CHAP", "auth": 7}],
                     "auth_networks": []}],
        "extents": [{"id": 3, "name": "alpha", "type": "DISK", "disk": "zvol/tank/netprov/alpha",
                     "path": "zvol/tank/netprov/alpha", "enabled": True, "ro": False, "blocksize": 512}],
        "targetextents": [{"id": 1, "target": 1, "extent": 3, "lunid": 1}],
        "initiators": [{"id": 1, "initiators": [f"{INITIATOR_BASE}:alpha"], "comment": "alpha"}],
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
    assert t.initiators == (f"{INITIATOR_BASE}:alpha",)
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

def _tgt_state(tgt) -> dict[str, str]:
    """Target IQN -> its block of ``tgtadm --op show`` (ACLs, accounts, LUNs)."""
    out: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=Target \d+: )", tgt.show()):
        m = re.match(r"Target \d+: (\S+)", block)
        if m:
            out[m.group(1)] = block
    return out


@pytest.mark.e2e
def test_configure_is_incremental_on_a_real_tgtd(make_lab, workdir):
    """A second configure leaves an unchanged target alone (same tid: sessions would survive),
    re-creates a changed one, adds a new one, removes a vanished one, and keeps a CHAP account
    bound to the targets that still use it."""
    lab = make_lab("full")
    image_dir = workdir / "zvols"
    first = tgt_bridge.configure(lab.tgt, _state(), image_dir)
    assert first.sync.added == (f"{BASENAME}:alpha",)
    alpha_tid = lab.tgt.tid(f"{BASENAME}:alpha")
    image = first.lun_for("alpha").image
    mtime = image.stat().st_mtime_ns

    base = _state()
    beta = {**base["targets"][0], "id": 2, "name": "beta",
            "groups": [{"portal": 1, "initiator": 2, "authmethod": "NONE", "auth": None}]}
    state = _state(
        targets=[*base["targets"], beta],
        extents=[*base["extents"], {"id": 4, "name": "beta", "type": "DISK", "disk": "zvol/tank/netprov/beta",
                                    "enabled": True}],
        targetextents=[*base["targetextents"], {"id": 2, "target": 2, "extent": 4, "lunid": 1}],
        initiators=[*base["initiators"], {"id": 2, "initiators": [f"{INITIATOR_BASE}:beta"], "comment": "beta"}],
    )
    second = tgt_bridge.configure(lab.tgt, state, image_dir)
    assert second.sync.added == (f"{BASENAME}:beta",) and second.sync.unchanged == (f"{BASENAME}:alpha",)
    assert lab.tgt.tid(f"{BASENAME}:alpha") == alpha_tid
    assert image.stat().st_mtime_ns == mtime  # the image under a running VM is never rewritten
    shown = _tgt_state(lab.tgt)
    accounts = shown[f"{BASENAME}:alpha"].split("Account information:")[1].split("ACL information:")[0]
    assert accounts.split() == ["alpha"], shown  # CHAP account still bound
    assert f"{INITIATOR_BASE}:beta" in shown[f"{BASENAME}:beta"]

    # beta's initiator group changes, alpha vanishes from the NAS
    state["targets"] = [beta]
    state["targetextents"] = [state["targetextents"][1]]
    state["initiators"][1] = {"id": 2, "initiators": [f"{INITIATOR_BASE}:beta2"], "comment": "beta"}
    third = tgt_bridge.configure(lab.tgt, state, image_dir)
    assert third.sync.changed == (f"{BASENAME}:beta",) and third.sync.removed == (f"{BASENAME}:alpha",)
    shown = _tgt_state(lab.tgt)
    assert list(shown) == [f"{BASENAME}:beta"]
    assert f"{INITIATOR_BASE}:beta2" in shown[f"{BASENAME}:beta"]
    assert f"{INITIATOR_BASE}:beta\n" not in shown[f"{BASENAME}:beta"]
