"""Which NAS releases netprov drives, as a user sees it: real `netprov` subprocesses against the simulator.

The demo runs on the new profiles (FreeNAS 11.3, TrueNAS 26) and one existing one; a NAS newer than the
newest release netprov knows is driven like TrueNAS 26 after one warning line; one older than FreeNAS 11.3 is
refused in one line naming its version, with nothing changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from truenas_sim import Simulator
from tests.support.cli_lab import create_parent, local_server_inventory, netprov


@pytest.mark.parametrize("profile", ["11.3", "26", "13"])
def test_demo_converges_on_the_profile(profile, tmp_path):
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(tmp_path), "NETPROV_DEMO_CHAP_SECRET": "Demo-chap-0001"}
    r = netprov("demo", "--profile", profile, "--workdir", str(tmp_path / "demo"), env=env,
                cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    inv = (tmp_path / "demo" / "inventory.yaml").read_text()
    if profile == "11.3":   # no API keys on 11.3: the demo logs in with a username and password
        assert "username: root" in inv and "api_key_env" not in inv
    assert "Demo-chap-0001" not in r.stdout + r.stderr


def _storage_only(tmp_path: Path, sim: Simulator) -> tuple[Path, dict]:
    inv = tmp_path / "inventory.yaml"
    commands = "".join(f'    {c}_command: "true"\n' for c in ("test", "reload", "restart"))
    inv.write_text(local_server_inventory(
        sim.url, tmp_path, server_keys=commands,
        machines='  alpha: {mac: "52:54:00:10:00:01", disk: {size: 8G}, pxe_server: pxe}\n'))
    return inv, {**os.environ, "TEST_NAS_KEY": sim.api_key, "NO_COLOR": "1", "HOME": str(tmp_path)}


def test_newer_release_runs_like_the_newest_with_one_warning(tmp_path):
    with Simulator(profile="26", version="TrueNAS-27.04.0") as sim:
        create_parent(sim)
        inv, env = _storage_only(tmp_path, sim)
        r = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        warnings = [ln for ln in r.stderr.splitlines() if "newer than the newest release netprov knows" in ln]
        assert len(warnings) == 1 and "TrueNAS-27.04.0" in warnings[0], r.stderr
        # driven like 26: the iSCSI service was started through the service.control job
        assert sim.round_trips["service.control"] == 1 and "service.start" not in sim.round_trips


def test_older_than_11_3_is_refused_naming_the_version(tmp_path):
    with Simulator(profile="11.3", version="FreeNAS-11.2-U8", users={"root": "Root-pw-0001"}) as sim:
        inv, env = _storage_only(tmp_path, sim)
        text = inv.read_text().replace("api_key_env: TEST_NAS_KEY", "username: root\n    password_env: TEST_NAS_PW")
        inv.write_text(text)
        env["TEST_NAS_PW"] = "Root-pw-0001"
        before = sim.nas.datasets.copy()
        r = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "FreeNAS-11.2-U8" in lines[0] and "older than FreeNAS 11.3" in lines[0], r.stderr
        assert sim.nas.datasets.keys() == before.keys()
        assert not [m for m in sim.round_trips if m.endswith((".create", ".update", ".delete"))]
