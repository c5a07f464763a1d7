"""`netprov status` as a user runs it: the CLI in a subprocess against the TrueNAS simulator and a
local-transport PXE server. One world walked through: nothing made yet, converged, a machine booted
(a live iSCSI session, with the address the NAS reports), a disk resized on the NAS, a boot file
deleted on the PXE server, and a NAS that refuses the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from tests.support.cli_lab import inventory_text, netprov, sim_fixture  # noqa: F401 (a fixture)

MACHINES = {"m1": "52:54:00:41:00:01", "m2": "52:54:00:41:00:02"}


def _rows(stdout: str) -> dict[str, str]:
    """The table's rows by machine name (the first word)."""
    return {line.split()[0]: line for line in stdout.splitlines()[1:] if line and not line.startswith(" ")
            and line.split()[0] in MACHINES}


def test_status_walks_a_world_from_empty_to_booted_to_drifted(sim, tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory_text(sim.url, tmp_path, machines=MACHINES))
    env = {**os.environ, "NAS_KEY": sim.api_key, "NO_COLOR": "1"}

    empty = netprov("status", str(inv), env=env, cwd=tmp_path)
    assert empty.returncode == 2, empty.output
    assert _rows(empty.stdout)["m1"].split()[1:4] == ["5", "missing", "(of"], empty.stdout

    assert netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path).returncode == 0
    calls_before = dict(sim.calls) if hasattr(sim, "calls") else None
    done = netprov("status", str(inv), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.output
    assert done.stdout.splitlines()[0].split() == ["MACHINE", "NAS", "BOOT", "FILES", "BOOTED"]
    for name in MACHINES:
        assert _rows(done.stdout)[name].split() == [name, "5", "present", "2", "current", "no"], done.stdout
    assert "2 of 2 machine(s) as the inventory says; 0 booted now." in done.stdout
    del calls_before

    # m1 boots: its iPXE initiator logs in to its target (the simulator reports initiator_addr).
    sim.add_session("m1", "iqn.2010-04.org.ipxe:m1")
    booted = netprov("status", "--json", str(inv), env=env, cwd=tmp_path)
    assert booted.returncode == 0, booted.output           # a session is not drift
    data = json.loads(booted.stdout)
    m1, m2 = (next(m for m in data["machines"] if m["name"] == n) for n in ("m1", "m2"))
    assert m1["booted"] and m1["sessions"] == [{"initiator": "iqn.2010-04.org.ipxe:m1", "address": "192.0.2.100",
                                                "expected_initiator": True}]
    assert not m2["booted"] and data["converged"]

    # Someone grows m2's disk on the NAS, and m1's boot script disappears from the TFTP root.
    with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as c:
        c.call("pool.dataset.update", "tank/netboot/m2", {"volsize": 32 * 1024 * 1024})
    (tmp_path / "pxe" / "tftp" / "52-54-00-41-00-01.ipxe").unlink()
    drift = netprov("status", str(inv), env=env, cwd=tmp_path)
    assert drift.returncode == 2, drift.output
    rows = _rows(drift.stdout)
    assert rows["m1"].split()[1:] == ["5", "present", "1", "missing", "(of", "2)", "yes:", "192.0.2.100"], rows
    # a shrink is a replace of the disk (its extent, target and mapping go with it): one drifted object
    assert rows["m2"].split()[1:3] == ["1", "drifted"] and rows["m2"].split()[-1] == "no", rows
    assert "  m1: pxe.tftp[52-54-00-41-00-01.ipxe] missing" in drift.stdout
    assert "  m2: zvol[tank/netboot/m2] drifted" in drift.stdout
    assert "--allow-destroy" in drift.stdout or "allow_destroy" in drift.stdout   # the shrink apply would refuse
    assert "0 of 2 machine(s) as the inventory says; 1 booted now." in drift.stdout

    bad = netprov("status", str(inv), env={**env, "NAS_KEY": "wrong-key"}, cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.output, bad.output
    assert bad.stderr.strip().startswith("error:") and bad.stdout == ""
