"""Issue 10 item 3, exactly as reported: after `netprov demo`, remove ramiel and change sachiel's MAC,
restart the simulator from the demo's state as its hints say, and `--target israfel` must touch
nothing of ramiel's or sachiel's. Real subprocesses, the TrueNAS simulator and the demo's local PXE
directory (the same push scripts as over SSH, run by a local shell).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from truenas_sim import Simulator

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Demo-s3cret-77"
OLD_MAC, NEW_MAC = "52:54:00:ab:cd:ef", "52:54:00:ab:cd:00"


def netprov(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netprov", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def demo(tmp_path: Path):
    """`netprov demo --workdir D`, the issue's edit, and the simulator restarted from D's state."""
    work = tmp_path / "D"
    env = {**os.environ, "NETPROV_DEMO_CHAP_SECRET": SECRET, "NO_COLOR": "1", "HOME": str(tmp_path)}
    env.pop("NETPROV_API_KEY", None)
    first = netprov("demo", "--workdir", str(work), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    inventory = work / "inventory.yaml"
    text = inventory.read_text()
    assert "  ramiel:\n" in text and text.rstrip().endswith("cmdline: priority=critical")
    text = text[:text.index("  ramiel:\n")].replace(OLD_MAC, NEW_MAC)     # ramiel is the last machine
    inventory.write_text(text)
    port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/", text).group(1))
    sim = Simulator(profile="25.04", api_key="1-demo", state=work / "truenas-state.json", port=port).start()
    try:
        yield work, inventory, {**env, "NETPROV_DEMO_API_KEY": "1-demo"}
    finally:
        sim.stop()


def test_target_israfel_leaves_removed_and_remacced_machines_alone(demo) -> None:
    work, inventory, env = demo
    pxe = work / "pxe-server"
    tftp, hosts = pxe / "srv/tftp", pxe / "etc/netprov/dnsmasq-hosts"
    before = snapshot(pxe)

    plan = netprov("plan", "--detailed-exitcode", "--target", "israfel", str(inventory), env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr          # israfel is converged: nothing to do
    for other in ("ramiel.conf", "52-54-00-aa-bb-01.ipxe", "52-54-00-ab-cd-ef.ipxe", "sachiel", "ramiel"):
        assert other not in plan.stdout, plan.stdout

    applied = netprov("apply", "--target", "israfel", "--auto-approve", str(inventory), env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert snapshot(pxe) == before                                    # not one byte of the PXE server changed
    assert OLD_MAC in (hosts / "sachiel.conf").read_text()

    # Targeting sachiel moves it to its new MAC: its old script goes with it, ramiel's files stay.
    plan = netprov("plan", "--target", "sachiel", str(inventory), env=env)
    assert plan.returncode == 0, plan.stderr
    assert "- pxe.tftp[52-54-00-ab-cd-ef.ipxe]" in plan.stdout and "ramiel" not in plan.stdout
    # issue 13 item 4: the plan says what happened (not only a delete and a create), under the machine
    group = plan.stdout[plan.stdout.index("# machine sachiel"):]
    assert group.splitlines()[1].strip().startswith(f"MAC changed from {OLD_MAC} to {NEW_MAC}"), plan.stdout
    assert "- pxe.tftp[52-54-00-ab-cd-ef.ipxe]" in group and "+ pxe.tftp[52-54-00-ab-cd-00.ipxe]" in group
    applied = netprov("apply", "--target", "sachiel", "--auto-approve", str(inventory), env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert NEW_MAC in (hosts / "sachiel.conf").read_text()
    assert (tftp / "52-54-00-ab-cd-00.ipxe").exists() and not (tftp / "52-54-00-ab-cd-ef.ipxe").exists()
    assert (hosts / "ramiel.conf").read_bytes() == before["etc/netprov/dnsmasq-hosts/ramiel.conf"]
    assert (tftp / "52-54-00-aa-bb-01.ipxe").read_bytes() == before["srv/tftp/52-54-00-aa-bb-01.ipxe"]

    # A removed machine's disk is kept unless the user passes the flag, which the refusal names.
    refusal = netprov("plan", str(inventory), env=env)
    assert refusal.returncode == 1 and "needs --allow-destroy" in refusal.stdout, refusal.stdout + refusal.stderr
    assert "needs allow_destroy" not in refusal.stdout + refusal.stderr

    # A removed machine is targeted by name (with --allow-destroy): its disk and its files, nothing else.
    applied = netprov("apply", "--target", "ramiel", "--allow-destroy", "--auto-approve", str(inventory), env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert not (hosts / "ramiel.conf").exists() and not (tftp / "52-54-00-aa-bb-01.ipxe").exists()
    final = netprov("plan", "--detailed-exitcode", str(inventory), env=env)
    assert final.returncode == 0, final.stdout + final.stderr       # the three targeted applies converged
