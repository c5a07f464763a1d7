"""Phase 2 prototype: VMs boot what `netprov apply` made (real CLI, real sshd, TrueNAS simulator).

netprov apply (a subprocess, as a user runs it) creates zvols/extents/targets on the simulator and
pushes the PXE files over SSH into the lab's tree, validating with ``dnsmasq --test`` and restarting
/ SIGHUP-ing the lab's real dnsmasq through the restart/reload commands of
:class:`tests.support.dnsmasq.Dnsmasq`. :mod:`tests.support.tgt_bridge` then makes tgtd serve what
the simulator holds, and QEMU boots it. The inventory maps the disk at ``lun: 1`` (tgt keeps LUN 0).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import bootlab, tgt_bridge
from tests.support.bootlab import PxeTree
from tests.support.diskimage import MARKER_PREFIX, marker
from tests.support.qemu import BootFailed

pytestmark = pytest.mark.e2e

INITIATOR_BASE = "iqn.2026-11.lab.netprov"
CHAP_SECRET = "Chap-s3cret-01"
MACHINES = {
    "alpha": "  alpha: {mac: '52:54:00:99:03:0a', ip: 10.99.0.50}\n",
    "beta": "  beta: {mac: '52:54:00:99:03:0b', firmware: uefi}\n",
    "gamma": "  gamma: {mac: '52:54:00:99:03:0c', ip: 10.99.0.52, chap: {secret_env: GAMMA_SECRET}}\n",
    "delta": "  delta: {mac: '52:54:00:99:03:0d', ip: 10.99.0.53}\n",
}
FAILED = r"netprov: FAILED to boot"
UNKNOWN = r"not in the inventory"


def _q(s: str) -> str:
    return json.dumps(str(s))  # a JSON string is a YAML double-quoted scalar


def _inventory(sim, sshd, lab: bootlab.BootLab, tree: PxeTree, machines: list[str]) -> str:
    dm = lab.dnsmasq
    return f"""\
version: 1
storage:
  nas:
    url: {sim.url}
    api_key_env: E2E_NAS_KEY
    parent: tank/netprov
    portal: {bootlab.SERVER_IP}:3260
    initiator_basename: {INITIATOR_BASE}
    lun: 1
pxe_servers:
  pxe:
    ssh: {{host: 127.0.0.1, port: {sshd.port}, user: {sshd.user}, identity_file: {_q(sshd.identity_file)},
          known_hosts: {_q(sshd.known_hosts)}, sudo: false}}
    mode: dhcp
    interface: {bootlab.SERVER_IF}
    address: {bootlab.SERVER_IP}
    subnet: {bootlab.SUBNET}.0/24
    range: {{start: {bootlab.DHCP_RANGE[0]}, end: {bootlab.DHCP_RANGE[1]}}}
    tftp_root: {_q(tree.tftp_root)}
    dnsmasq_dir: {_q(tree.conf_dir)}
    hosts_dir: {_q(tree.hosts_dir)}
    ipxe: {{source: /usr/lib/ipxe}}
    log_dhcp: true
    sanboot_attempts: 2
    retry_delay: 1
    test_command: "dnsmasq --test --conf-file={{conf}}"
    reload_command: {_q(dm.reload_command)}
    restart_command: {_q(dm.restart_command)}
defaults: {{storage: nas, pxe_server: pxe, disk: {{size: 16M}}}}
machines:
""" + "".join(MACHINES[m] for m in machines)


@pytest.fixture
def world(make_lab, workdir):
    sim_mod = pytest.importorskip("netprov.sim.truenas")
    rpc = pytest.importorskip("netprov.adapters.truenas.rpc")
    from tests.support.sshd import SshServer

    lab = make_lab("full")
    tree = PxeTree.create(lab.workdir / "pxe")
    lab.serve(tree, targets=[])  # dnsmasq on an empty drop-in dir: netprov's apply restarts it
    sshd = SshServer.start(workdir / "sshd")
    sim = sim_mod.Simulator(profile="25.04").start()
    try:
        with rpc.TrueNASClient.connect(sim.url, rpc.Credentials(api_key=sim.api_key)) as c:
            c.call("pool.dataset.create", {"name": "tank/netprov", "type": "FILESYSTEM"})
        env = {**os.environ, "E2E_NAS_KEY": sim.api_key, "GAMMA_SECRET": CHAP_SECRET, "NO_COLOR": "1",
               "HOME": str(workdir)}
        yield lab, tree, sim, sshd, env, workdir, rpc
    finally:
        sim.stop()
        sshd.stop()


def _apply(world, machines: list[str]) -> None:
    lab, tree, sim, sshd, env, workdir, rpc = world
    inv = workdir / "inventory.yaml"
    inv.write_text(_inventory(sim, sshd, lab, tree, machines))
    r = subprocess.run([sys.executable, "-m", "netprov", "apply", "--auto-approve", str(inv)], check=False,
                       capture_output=True, text=True, env=env, cwd=workdir, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    (workdir / f"apply-{len(machines)}.log").write_text(r.stdout + r.stderr)
    with rpc.TrueNASClient.connect(sim.url, rpc.Credentials(api_key=sim.api_key)) as c:
        report = tgt_bridge.configure(lab.tgt, c, workdir / "zvols")
    assert all(lun.tgt_lun == 1 for lun in report.luns), report.luns


def _boot_ok(vm, timeout: float = 45) -> None:
    vm.wait_for(re.escape(marker(vm.name)), fail=[FAILED, UNKNOWN], timeout=timeout)


def test_netprov_apply_then_bios_and_uefi_boot(world):
    lab = world[0]
    bootlab.require_lab(uefi=True)
    _apply(world, ["alpha", "beta"])
    assert lab.dnsmasq.running(), lab.dnsmasq.log()[-2000:]
    alpha = lab.vm("alpha", "52:54:00:99:03:0a")
    beta = lab.vm("beta", "52:54:00:99:03:0b", firmware="uefi")  # OVMF's own PXE -> snponly.efi
    _boot_ok(alpha)
    _boot_ok(beta, timeout=90)
    assert lab.leases().get("52:54:00:99:03:0a") == "10.99.0.50"
    for name in ("alpha", "beta"):
        iqn = f"iqn.2005-10.org.freenas.ctl:{name}"
        assert lab.tgt.connected_initiators(iqn) == [f"{INITIATOR_BASE}:{name}"]


def test_netprov_adds_a_machine_with_sighup_only(world):
    lab = world[0]
    _apply(world, ["alpha"])
    alpha = lab.vm("alpha", "52:54:00:99:03:0a")
    _boot_ok(alpha)
    pid, serial_a = lab.dnsmasq.pid, alpha.serial_text()

    _apply(world, ["alpha", "delta"])  # new host file + script: netprov only SIGHUPs dnsmasq
    assert lab.dnsmasq.pid == pid, "dnsmasq is gone or was restarted: " + lab.dnsmasq.log()[-1500:]
    delta = lab.vm("delta", "52:54:00:99:03:0d")
    _boot_ok(delta)
    assert lab.leases().get("52:54:00:99:03:0d") == "10.99.0.53"
    assert alpha.alive() and alpha.serial_text() == serial_a
    assert lab.tgt.connected_initiators("iqn.2005-10.org.freenas.ctl:alpha") == [f"{INITIATOR_BASE}:alpha"]


def test_netprov_chap_machine_boots(world):
    lab, tree = world[0], world[1]
    _apply(world, ["gamma"])
    gamma = lab.vm("gamma", "52:54:00:99:03:0c")
    try:
        _boot_ok(gamma)
    finally:
        script = tree.tftp_root / "52-54-00-99-03-0c.ipxe"
        st = script.stat()
        print(f"gamma script mode {oct(st.st_mode & 0o777)} uid {st.st_uid} gid {st.st_gid}")
    assert MARKER_PREFIX in gamma.serial_text()
