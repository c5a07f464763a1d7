"""End-to-end boots with hand-made PXE configs (phase 1): the lab itself is proven here.

Each test builds a PxeTree (TFTP root, dnsmasq drop-in, hostsdir) and a list of tgt targets,
hands them to the lab, and boots QEMU VMs that must reach ``NETPROV-BOOT-OK <name>`` on COM1
(or fail the way the case says). Phase 2 swaps :mod:`tests.e2e.handmade` for netprov's output.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e import handmade as hm
from tests.support import bootlab
from tests.support.bootlab import PxeTree
from tests.support.diskimage import MARKER_PREFIX, marker

pytestmark = pytest.mark.e2e

BIOS_TIMEOUT = 45
UEFI_TIMEOUT = 90
# iPXE's iSCSI login errors: wrong secret / refused initiator
PERMISSION_ERROR = r"Operation not permitted|Permission denied|410d613c|0x430d6601"
# tgt refuses an initiator outside the target's ACL as if the target did not exist (login status
# "not found"), which iPXE reports as "No such device (2c0d603b)".
REFUSED_ERROR = PERMISSION_ERROR + r"|No such device|2c0d603b"


def _mac(n: int) -> str:
    return f"52:54:00:99:00:{n:02x}"


def _serve(lab: bootlab.BootLab, machines, targets) -> PxeTree:
    tree = PxeTree.create(lab.workdir / "pxe")
    hm.write_tree(tree, lab.mode, machines)
    lab.serve(tree, targets)
    return tree


def _boot_ok(vm, timeout=BIOS_TIMEOUT) -> float:
    vm.wait_for(re.escape(marker(vm.name)), fail=[hm.FAILED_MESSAGE, hm.UNKNOWN_MESSAGE], timeout=timeout)
    took = vm.elapsed()
    print(f"{vm.name} ({vm.firmware}, {vm.lab.mode}) booted in {took:.1f}s")
    return took


def test_bios_full_dhcp_no_chap(make_lab, disk):
    lab = make_lab("full")
    alpha = hm.Machine("alpha", _mac(10), ip=f"{bootlab.SUBNET}.10")
    _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"))])
    vm = lab.vm("alpha", alpha.mac, firmware="bios")
    _boot_ok(vm)
    assert lab.leases().get(alpha.mac) == alpha.ip, lab.leases()
    assert lab.tgt.connected_initiators(alpha.target_iqn) == [alpha.initiator]


def test_bios_proxy_dhcp_beside_router(make_lab, disk):
    lab = make_lab("proxy")
    alpha = hm.Machine("alpha", _mac(11))
    _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"))])
    vm = lab.vm("alpha", alpha.mac, firmware="bios")
    _boot_ok(vm)
    # The router handed out the address; the PXE server only answered proxy-DHCP.
    addr = bootlab.read_leases(lab.router.lease_file).get(alpha.mac)
    assert addr and addr.startswith(f"{bootlab.SUBNET}.1"), bootlab.read_leases(lab.router.lease_file)
    assert bootlab.read_leases(lab.dnsmasq.lease_file) == {}
    assert f"gw {bootlab.ROUTER_IP}" in vm.serial_text()
    assert "proxy" in lab.dnsmasq.log().lower()


def test_uefi_own_pxe_gets_ipxe_efi_and_boots_iscsi(make_lab, disk):
    lab = make_lab("full", uefi=True)
    alpha = hm.Machine("alpha", _mac(12), ip=f"{bootlab.SUBNET}.12")
    _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"))])
    vm = lab.vm("alpha", alpha.mac, firmware="uefi")
    _boot_ok(vm, timeout=UEFI_TIMEOUT)
    log = lab.dnsmasq.log()
    # OVMF's own PXE (arch 7, not iPXE) was handed the iPXE EFI binary, then iPXE got boot.ipxe.
    assert "PXEClient:Arch:00007" in log
    assert re.search(r"bootfile-name\s+" + re.escape(hm.EFI_BINARY), log)
    assert re.search(r"bootfile-name\s+boot\.ipxe", log)
    assert "(efi)" in vm.serial_text()  # boot.ipxe saw ${platform} = efi


def test_uefi_proxy_dhcp_beside_router(make_lab, disk):
    """UEFI firmware beside a router: dnsmasq's proxy answers arch 7 (and its port-4011 request)."""
    lab = make_lab("proxy", uefi=True)
    alpha = hm.Machine("alpha", _mac(20))
    _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"))])
    vm = lab.vm("alpha", alpha.mac, firmware="uefi")
    _boot_ok(vm, timeout=UEFI_TIMEOUT)
    assert alpha.mac in bootlab.read_leases(lab.router.lease_file)
    assert f"sent {lab.tree.tftp_root}/{hm.EFI_BINARY}" in lab.dnsmasq.log()


def test_chap_right_secret_boots_wrong_secret_fails_readably(make_lab, disk):
    lab = make_lab("full")
    good = hm.Machine("alpha", _mac(13), ip=f"{bootlab.SUBNET}.13", chap=("alpha-user", "alpha-secret-123"))
    bad = hm.Machine("beta", _mac(14), ip=f"{bootlab.SUBNET}.14", chap=("beta-user", "not-the-secret-1"))
    _serve(lab, [good, bad], [
        hm.target_for(good, disk("alpha"), chap=("alpha-user", "alpha-secret-123")),
        hm.target_for(bad, disk("beta"), chap=("beta-user", "beta-secret-4567")),
    ])
    vm_good = lab.vm("alpha", good.mac)
    vm_bad = lab.vm("beta", bad.mac)
    _boot_ok(vm_good)
    vm_bad.wait_for(re.escape(f"{hm.FAILED_MESSAGE} beta"), fail=[re.escape(marker("beta"))], timeout=BIOS_TIMEOUT)
    text = vm_bad.serial_text()
    assert re.search(PERMISSION_ERROR, text), text[-1500:]
    assert MARKER_PREFIX not in text
    assert lab.tgt.connected_initiators(bad.target_iqn) == []
    assert lab.tgt.connected_initiators(good.target_iqn) == [good.initiator]


def test_unknown_mac_gets_fallback_not_a_disk(make_lab, disk):
    lab = make_lab("full")
    alpha = hm.Machine("alpha", _mac(15), ip=f"{bootlab.SUBNET}.15")
    _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"), initiators=())])  # target open to anyone
    stranger = "52:54:00:99:ff:01"
    vm = lab.vm("stranger", stranger)
    vm.wait_for(re.escape(hm.UNKNOWN_MESSAGE), fail=[MARKER_PREFIX], timeout=BIOS_TIMEOUT)
    # ...then the fallback: the script exits, iPXE gives up ("No more network devices") and the
    # firmware moves on to its next boot device.
    vm.wait_for(r"No more network devices|No bootable device", fail=[MARKER_PREFIX], timeout=20)
    assert MARKER_PREFIX not in vm.serial_text()
    assert lab.tgt.connected_initiators(alpha.target_iqn) == []
    assert stranger in lab.leases()  # it got an address from the range, nothing more


def test_script_pointed_at_another_machines_target_is_refused(make_lab, disk):
    lab = make_lab("full")
    beta = hm.Machine("beta", _mac(17), ip=f"{bootlab.SUBNET}.17")
    # alpha's script names beta's target (a mix-up); beta's target only admits beta's initiator.
    alpha = hm.Machine("alpha", _mac(16), ip=f"{bootlab.SUBNET}.16", target_of="beta")
    _serve(lab, [alpha, beta], [hm.target_for(beta, disk("beta"))])
    vm_a = lab.vm("alpha", alpha.mac)
    vm_b = lab.vm("beta", beta.mac)
    vm_a.wait_for(re.escape(f"{hm.FAILED_MESSAGE} alpha"), fail=[MARKER_PREFIX], timeout=BIOS_TIMEOUT)
    _boot_ok(vm_b)  # the target itself is fine for its own machine
    text = vm_a.serial_text()
    assert re.search(REFUSED_ERROR, text), text[-1500:]
    assert MARKER_PREFIX not in text
    assert lab.tgt.connected_initiators(beta.target_iqn) == [beta.initiator]


def test_added_machine_boots_after_sighup_without_restart(make_lab, disk):
    lab = make_lab("full")
    alpha = hm.Machine("alpha", _mac(18), ip=f"{bootlab.SUBNET}.18")
    tree = _serve(lab, [alpha], [hm.target_for(alpha, disk("alpha"))])
    vm_a = lab.vm("alpha", alpha.mac)
    _boot_ok(vm_a)
    pid = lab.dnsmasq.pid
    serial_a = vm_a.serial_text()

    # netprov apply for a new machine: target on the NAS, host file + script on the PXE server, SIGHUP.
    beta = hm.Machine("beta", _mac(19), ip=f"{bootlab.SUBNET}.19")
    lab.tgt.add_target(hm.target_for(beta, disk("beta")))
    hm.add_machine(tree, beta)
    lab.sighup_dnsmasq()
    deadline = time.monotonic() + 5
    while "beta" not in lab.dnsmasq.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    vm_b = lab.vm("beta", beta.mac)
    _boot_ok(vm_b)

    assert lab.dnsmasq.pid == pid and lab.dnsmasq.running(), "dnsmasq was restarted"
    assert lab.leases().get(beta.mac) == beta.ip, lab.leases()  # the new host line was in effect
    # The running machine is undisturbed: still up, nothing new on its console, session still there.
    assert vm_a.alive()
    assert vm_a.serial_text() == serial_a
    assert lab.tgt.connected_initiators(alpha.target_iqn) == [alpha.initiator]
    assert lab.leases().get(alpha.mac) == alpha.ip
