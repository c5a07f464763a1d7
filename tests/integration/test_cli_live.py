"""`netprov` as a user runs it: real subprocesses against the TrueNAS simulator and a real sshd.

plan -> plan --out -> apply PLAN -> plan (empty); a stale saved plan is refused; state pull
feeds an offline plan; bad credentials fail in one line with nothing changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from truenas_sim import Simulator
from tests.support.cli_lab import create_parent, ssh_server_inventory
from tests.support.sshd import SshServer

SECRET = "Chap-s3cret-01"
ALPHA_AND_BETA = """\
  alpha: {mac: 52:54:00:10:00:01, chap: {secret_env: ALPHA_SECRET}}
  beta: {mac: 52:54:00:10:00:02, firmware: uefi}
"""


def netprov(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netprov", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=180)


@pytest.fixture
def lab(tmp_path: Path):
    sshd = SshServer.start(tmp_path / "sshd")
    sim = Simulator(profile="25.04").start()
    try:
        create_parent(sim)
        pxe = tmp_path / "pxe"
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(ssh_server_inventory(sim.url, sshd, pxe, machines=ALPHA_AND_BETA,
                                                  test_command="dnsmasq --test --conf-file={conf}"))
        env = {**os.environ, "TEST_NAS_KEY": sim.api_key, "ALPHA_SECRET": SECRET, "NO_COLOR": "1",
               "HOME": str(tmp_path)}
        yield sim, sshd, inventory, env, pxe, tmp_path
    finally:
        sim.stop()
        sshd.stop()


@pytest.mark.skipif(not Path("/usr/lib/ipxe/undionly.kpxe").exists(), reason="Debian ipxe package not installed")
def test_plan_apply_plan_against_simulator_and_sshd(lab) -> None:
    sim, sshd, inventory, env, pxe, tmp = lab
    first = netprov("plan", "--detailed-exitcode", str(inventory), env=env, cwd=tmp)
    assert first.returncode == 2, first.stderr
    assert "+ zvol[tank/netboot/alpha]" in first.stdout and "+ pxe.tftp[52-54-00-10-00-01.ipxe]" in first.stdout
    assert SECRET not in first.stdout + first.stderr

    saved = netprov("plan", "--out", str(tmp / "plan.json"), str(inventory), env=env, cwd=tmp)
    assert saved.returncode == 0, saved.stderr
    assert SECRET not in (tmp / "plan.json").read_text()

    applied = netprov("apply", str(tmp / "plan.json"), env=env, cwd=tmp)
    assert applied.returncode == 0, applied.stderr
    assert "Converged" in applied.stderr
    script = pxe / "tftp/52-54-00-10-00-01.ipxe"
    assert SECRET in script.read_text() and (script.stat().st_mode & 0o777) == 0o640
    assert (pxe / "tftp/undionly.kpxe").read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    assert (pxe / "hosts/alpha.conf").exists() and (pxe / "dnsmasq.d/netprov.conf").exists()
    state = sim.dump_state()
    assert SECRET not in applied.stdout + applied.stderr

    again = netprov("plan", "--detailed-exitcode", str(inventory), env=env, cwd=tmp)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout

    # A saved plan goes stale when the NAS changes behind it.
    stale_plan = tmp / "stale.json"
    inventory.write_text(inventory.read_text() + "  gamma: {mac: 52:54:00:10:00:03}\n")
    assert netprov("plan", "--out", str(stale_plan), str(inventory), env=env, cwd=tmp).returncode == 0
    from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
    with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as c:
        c.call("pool.dataset.create", {"name": "tank/netboot/intruder", "type": "VOLUME", "volsize": 16 * 2**20,
                                       "volblocksize": "16K"})
    refused = netprov("apply", str(stale_plan), env=env, cwd=tmp)
    assert refused.returncode == 1
    assert "stale" in refused.stderr
    assert not (pxe / "hosts/gamma.conf").exists()

    # state pull -> offline plan sees the same world (gamma still to create).
    pulled = netprov("state", "pull", str(inventory), "--out", str(tmp / "state.json"), env=env, cwd=tmp)
    assert pulled.returncode == 0, pulled.stderr
    assert SECRET not in (tmp / "state.json").read_text()
    offline = netprov("plan", "--state", str(tmp / "state.json"), "--json", str(inventory), env=env, cwd=tmp)
    assert offline.returncode == 0, offline.stderr
    changes = [c for c in json.loads(offline.stdout)["changes"] if c["action"] != "no-op"]
    unrelated = [c["address"] for c in changes
                 if not ("gamma" in c["address"] or "52-54-00-10-00-03" in c["address"]
                         or c["kind"] in ("service", "activation"))]
    assert changes and not unrelated, unrelated
    assert state  # the simulator held the applied objects


def test_bad_api_key_is_one_line_and_changes_nothing(lab) -> None:
    sim, sshd, inventory, env, pxe, tmp = lab
    env = {**env, "TEST_NAS_KEY": "1-wrongwrongwrong"}
    out = netprov("apply", "--auto-approve", str(inventory), env=env, cwd=tmp)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "1-wrongwrongwrong" not in out.stderr
    assert not pxe.exists()


def _run_on_terminal(args: list[str], answer: str, env: dict, cwd: Path) -> tuple[int, str]:
    """Run netprov on a pseudo-terminal (stdin, stdout and stderr), type ``answer`` at its prompt."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "netprov", *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**env, "TERM": "dumb"}, cwd=cwd, close_fds=True)
    os.close(slave)
    out = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"Apply these changes?" in out:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, out.decode(errors="replace")


def test_apply_asks_on_a_terminal_and_only_yes_applies(lab) -> None:
    sim, sshd, inventory, env, pxe, tmp = lab
    code, out = _run_on_terminal(["apply", str(inventory)], "no", env, tmp)
    assert code == 1 and "Cancelled; nothing was changed." in out, out[-2000:]
    assert not pxe.exists()
    code, out = _run_on_terminal(["apply", str(inventory)], "yes", env, tmp)
    assert code == 0 and "Converged" in out, out[-2000:]
    assert (pxe / "tftp/boot.ipxe").exists()
    assert SECRET not in out


@pytest.mark.skipif(not Path("/usr/lib/ipxe/undionly.kpxe").exists(), reason="Debian ipxe package not installed")
def test_destroyed_disk_is_kept_unless_no_snapshot(lab) -> None:
    """Issue 10 item 4: the plan shows the net; `apply PLAN` keeps the saved names; --no-snapshot opts out."""
    sim, sshd, inventory, env, pxe, tmp = lab
    assert netprov("apply", "--auto-approve", str(inventory), env=env, cwd=tmp).returncode == 0
    sim.write_data("tank/netboot/beta", "beta's disk")
    text = inventory.read_text()
    inventory.write_text(text.replace("  beta: {mac: 52:54:00:10:00:02, firmware: uefi}\n", ""))
    shown = netprov("plan", "--allow-destroy", str(inventory), env=env, cwd=tmp)
    assert 'snapshot: "tank/netboot/beta@netprov-' in shown.stdout and 'kept_as: "tank/netboot/beta.netprov-retired-' \
        in shown.stdout, shown.stdout
    saved = netprov("plan", "--allow-destroy", "--out", str(tmp / "p.json"), str(inventory), env=env, cwd=tmp)
    assert saved.returncode == 0, saved.stderr
    [zdel] = [c for c in json.loads((tmp / "p.json").read_text())["changes"] if c["address"] == "zvol[tank/netboot/beta]"]
    applied = netprov("apply", str(tmp / "p.json"), env=env, cwd=tmp)
    assert applied.returncode == 0, applied.stderr
    assert sim.read_data(zdel["after"]["kept_as"]) == "beta's disk"      # the names the saved plan showed
    assert sim.read_data(zdel["after"]["kept_as"] + "@" + zdel["after"]["snapshot"].split("@")[1]) == "beta's disk"

    inventory.write_text(inventory.read_text().replace(
        "  alpha: {mac: 52:54:00:10:00:01, chap: {secret_env: ALPHA_SECRET}}\n",
        "  gamma: {mac: 52:54:00:10:00:03}\n"))
    plain = netprov("plan", "--allow-destroy", "--no-snapshot", str(inventory), env=env, cwd=tmp)
    assert "--no-snapshot: nothing is kept" in plain.stdout and "kept_as" not in plain.stdout
    gone = netprov("apply", "--allow-destroy", "--no-snapshot", "--auto-approve", str(inventory), env=env, cwd=tmp)
    assert gone.returncode == 0, gone.stderr
    names = set(sim.nas.datasets)
    assert "tank/netboot/alpha" not in names and not any(n.startswith("tank/netboot/alpha.") for n in names)
