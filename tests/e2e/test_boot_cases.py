"""The seven boot cases, each driven by what `netprov apply` made (see :mod:`tests.e2e.netprov_world`).

`netprov apply` provisions the TrueNAS simulator and pushes dnsmasq's drop-in, host files, iPXE
binaries and scripts over SSH into the lab; the bridge makes tgtd serve the NAS's targets; QEMU
(TCG) PXE-boots VMs with the inventory's MACs and the test reads their serial port. Nothing netprov
wrote is edited: the "wrong" scripts of cases 4 and 6 come from the inventory's per-machine
``extra.ipxe`` lines (run after netprov sets the credentials and ``netprov-root``), the broken
template from an inventory ``templates:`` folder.

To stay within the time budget, VMs that can share an apply do: one full-DHCP lab with one apply
boots the machines of cases 1, 3, 4, 5 and 6 concurrently (class-scoped world, one test per case,
each with its own assertions); case 2 (and UEFI beside a router) shares a proxy-DHCP lab; case 7
and the broken-template check have their own labs (they need their own applies).
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.netprov_world import (
    FAILED,
    PERMISSION_ERROR,
    REFUSED_ERROR,
    UNKNOWN,
    NetprovWorld,
    initiator_iqn,
    root_path,
    target_iqn,
)
from tests.support import bootlab
from tests.support.diskimage import MARKER_PREFIX, marker

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def _world(mode: str = "full", uefi: bool = False):
    """A started :class:`NetprovWorld` in a fresh work directory; closed (and the directory
    removed unless ``NETPROV_E2E_KEEP=1``) whatever happens."""
    bootlab.require_lab(uefi=uefi, ssh=True)
    d = bootlab.new_workdir()
    w = NetprovWorld(d, mode)
    try:
        yield w.start()
    finally:
        w.close()
        if os.environ.get("NETPROV_E2E_KEEP") == "1":
            print(f"\nboot lab work directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def _flat(vm) -> str:
    """Serial text without line breaks (iPXE's BIOS console wraps at 80 columns)."""
    return vm.serial_text().replace("\n", "")


def _uefi_available() -> bool:
    return not bootlab.missing_requirements(uefi=True, ssh=True)


def _sessions(tgt) -> dict[str, list[str]]:
    """Target IQN -> initiators logged in, for every target tgtd serves."""
    return {iqn: tgt.connected_initiators(iqn) for iqn in tgt.targets}


# ================================================================ one full-DHCP lab, one apply

FULL = {
    # case 1: BIOS, full DHCP, no CHAP, fixed address
    "alpha": {"mac": "52:54:00:99:04:0a", "ip": "10.99.0.50"},
    # case 3: UEFI firmware's own PXE (arch 7); address from the range
    "beta": {"mac": "52:54:00:99:04:0b", "firmware": "uefi"},
    # case 4: CHAP, the script carries the secret the NAS has
    "gamma": {"mac": "52:54:00:99:04:0c", "ip": "10.99.0.52", "chap": {"secret": "Gamma-s3cret-01"}},
    # case 4: CHAP, but the machine presents a wrong secret (an inventory extra.ipxe line, run after
    # netprov's `set password`): the NAS's target keeps the right one
    "eta": {"mac": "52:54:00:99:04:0e", "ip": "10.99.0.53", "chap": {"secret": "Eta-s3cret-0001"},
            "extra": {"ipxe": ["set password Not-eta-s3cret-9"]}},
    # case 6: its script (its own initiator IQN) names alpha's target
    "iota": {"mac": "52:54:00:99:04:19", "ip": "10.99.0.54",
             "extra": {"ipxe": [f"set netprov-root {root_path('alpha')}"]}},
}
STRANGER = "52:54:00:99:04:ff"   # case 5: not in the inventory


def _firmware(spec: dict) -> str:
    return "uefi" if spec.get("firmware") == "uefi" else "bios"


@pytest.fixture(scope="class")
def full():
    """The full-DHCP world of :class:`TestFullDhcpLab`: applied, every VM started (torn down after
    the class's last test)."""
    with _world("full") as w:
        t0 = time.monotonic()
        w.apply(FULL)
        vms = {}
        for name, spec in FULL.items():
            if _firmware(spec) == "uefi" and not _uefi_available():
                continue  # its test fails / skips through require_lab(uefi=True)
            vms[name] = w.lab.vm(name, spec["mac"], firmware=_firmware(spec))
        vms["stranger"] = w.lab.vm("stranger", STRANGER)
        print(f"full lab: apply + VMs started in {time.monotonic() - t0:.1f}s")
        yield w, vms


class TestFullDhcpLab:
    """Cases 1, 3, 4, 5, 6: one full-DHCP lab, one `netprov apply`, six VMs booting at once."""

    def test_case1_bios_full_dhcp_no_chap_boots(self, full):
        w, vms = full
        alpha = vms["alpha"]
        w.boot_ok(alpha)
        # netprov's script booted LUN 1 of alpha's own target with alpha's initiator IQN...
        assert f"netprov: alpha boots from {root_path('alpha')}" in _flat(alpha), alpha.serial_text()[-1500:]
        assert w.lab.tgt.connected_initiators(target_iqn("alpha")) == [initiator_iqn("alpha")]
        # ...after netprov's dnsmasq handed out the inventory's fixed address (host file in hosts_dir).
        assert w.lab.leases().get(FULL["alpha"]["mac"]) == FULL["alpha"]["ip"], w.lab.leases()
        assert "set username" not in w.script(FULL["alpha"]["mac"])

    def test_case3_uefi_own_pxe_gets_ipxe_efi_and_boots_iscsi(self, full):
        bootlab.require_lab(uefi=True, ssh=True)
        w, vms = full
        beta = vms["beta"]
        w.boot_ok(beta)
        log = w.lab.dnsmasq.log()
        # OVMF's own PXE (arch 7, not iPXE) got netprov's iPXE EFI binary by TFTP, then iPXE got boot.ipxe.
        assert "PXEClient:Arch:00007" in log
        assert re.search(r"bootfile-name\s+snponly\.efi", log), log[-3000:]
        assert f"sent {w.tree.tftp_root}/snponly.efi" in log
        assert re.search(r"bootfile-name\s+boot\.ipxe", log)
        assert f"netprov: beta boots from {root_path('beta')}" in _flat(beta)
        assert w.lab.tgt.connected_initiators(target_iqn("beta")) == [initiator_iqn("beta")]
        addr = w.lab.leases().get(FULL["beta"]["mac"], "")
        assert addr.startswith(f"{bootlab.SUBNET}.1") and addr != bootlab.SERVER_IP, w.lab.leases()

    def test_case4_chap_right_secret_boots_wrong_secret_fails_readably(self, full):
        w, vms = full
        gamma, eta = vms["gamma"], vms["eta"]
        w.boot_ok(gamma)
        assert "set username gamma" in w.script(FULL["gamma"]["mac"])
        # The secret-bearing script is 0640, group dip (dnsmasq's compiled-in group, the lab's
        # dnsmasq runs with it): not world-readable, yet served by TFTP (gamma booted from it).
        st = (w.tree.tftp_root / f"{FULL['gamma']['mac'].replace(':', '-')}.ipxe").stat()
        assert (st.st_mode & 0o777, grp.getgrgid(st.st_gid).gr_name) == (0o640, "dip")
        assert w.lab.tgt.connected_initiators(target_iqn("gamma")) == [initiator_iqn("gamma")]
        # The target requires CHAP (from the NAS, secret read back redacted and supplied by the test).
        assert w.lab.tgt.targets[target_iqn("gamma")].chap == ("gamma", "Gamma-s3cret-01")

        text = w.boot_fails(eta)
        assert re.search(PERMISSION_ERROR, text), text[-2000:]
        assert f"{FAILED} eta from {root_path('eta')}" in _flat(eta)
        assert "and the CHAP secret" in _flat(eta)
        assert MARKER_PREFIX not in text
        assert w.lab.tgt.connected_initiators(target_iqn("eta")) == []
        # not a hang: after the message the script gives up (on_failure: exit) and the firmware moves on
        eta.wait_for(r"No more network devices|No bootable device", fail=[re.escape(MARKER_PREFIX)], timeout=30)

    def test_case5_unknown_mac_gets_fallback_not_a_disk(self, full):
        w, vms = full
        vm = vms["stranger"]
        vm.wait_for(UNKNOWN, fail=[re.escape(MARKER_PREFIX)], timeout=90)
        # ...then boot.ipxe's configured fallback (unknown: exit): iPXE gives up on the network and
        # the firmware moves on to its next boot device.
        vm.wait_for(r"falling back to the next boot device", fail=[re.escape(MARKER_PREFIX)], timeout=30)
        vm.wait_for(r"No more network devices|No bootable device", fail=[re.escape(MARKER_PREFIX)], timeout=30)
        text = vm.serial_text()
        assert f"no boot script for {STRANGER}" in _flat(vm), text[-1500:]
        assert MARKER_PREFIX not in text and FAILED not in text
        assert STRANGER in w.lab.leases()  # an address from the range, nothing more
        # No target anywhere has a session from anyone but its own machine.
        for iqn, initiators in _sessions(w.lab.tgt).items():
            assert set(initiators) <= {initiator_iqn(iqn.rsplit(":", 1)[1])}, (iqn, initiators)

    def test_case6_script_pointed_at_another_machines_target_is_refused(self, full):
        w, vms = full
        script = w.script(FULL["iota"]["mac"])
        # netprov's own line, then the inventory's extra line overriding it (no edit of the output)
        own, other = f"set netprov-root {root_path('iota')}", f"set netprov-root {root_path('alpha')}"
        assert own in script and other in script and script.index(own) < script.index(other), script
        assert f"set initiator-iqn {initiator_iqn('iota')}" in script

        iota = vms["iota"]
        text = w.boot_fails(iota)
        assert f"netprov: iota boots from {root_path('alpha')}" in _flat(iota)
        assert re.search(REFUSED_ERROR, text), text[-2000:]
        assert f"{FAILED} iota from {root_path('alpha')}" in _flat(iota)  # names what it really tried
        assert MARKER_PREFIX not in text  # above all, not alpha's disk
        w.boot_ok(vms["alpha"])  # alpha's target itself is fine for alpha
        assert w.lab.tgt.connected_initiators(target_iqn("alpha")) == [initiator_iqn("alpha")]
        assert all(initiator_iqn("iota") not in names for names in _sessions(w.lab.tgt).values())


# ================================================================ proxy-DHCP beside a router

PROXY = {
    "pi": {"mac": "52:54:00:99:05:0a"},
    "rho": {"mac": "52:54:00:99:05:0b", "firmware": "uefi"},
}


@pytest.fixture(scope="class")
def proxy():
    """The proxy-DHCP world of :class:`TestProxyDhcpLab`: applied, both VMs started."""
    with _world("proxy") as w:
        w.apply(PROXY)
        vms = {name: w.lab.vm(name, spec["mac"], firmware=_firmware(spec)) for name, spec in PROXY.items()
               if _firmware(spec) == "bios" or _uefi_available()}
        yield w, vms


class TestProxyDhcpLab:
    """Case 2 (and UEFI firmware beside a router): netprov's dnsmasq in proxy-DHCP mode, a separate
    router dnsmasq hands out addresses."""

    def test_case2_bios_proxy_dhcp_beside_router_boots(self, proxy):
        w, vms = proxy
        pi = vms["pi"]
        w.boot_ok(pi)
        assert w.lab.tgt.connected_initiators(target_iqn("pi")) == [initiator_iqn("pi")]
        # The router handed out the address (and the gateway); netprov's dnsmasq only answered proxy-DHCP.
        addr = bootlab.read_leases(w.lab.router.lease_file).get(PROXY["pi"]["mac"], "")
        assert addr.startswith(f"{bootlab.SUBNET}.1"), bootlab.read_leases(w.lab.router.lease_file)
        assert bootlab.read_leases(w.lab.dnsmasq.lease_file) == {}
        assert f"gw {bootlab.ROUTER_IP}" in pi.serial_text()
        assert "proxy" in w.lab.dnsmasq.log().lower()
        assert "dhcp-range=set:netprov,10.99.0.0,proxy" in (w.tree.conf_dir / "netprov.conf").read_text()

    def test_uefi_proxy_dhcp_beside_router_boots(self, proxy):
        """UEFI firmware beside a router: netprov's pxe-service lines answer arch 7 (the firmware's
        port-4011 request) with the iPXE EFI binary; iPXE then gets boot.ipxe by proxy-DHCP."""
        bootlab.require_lab(uefi=True, ssh=True)
        w, vms = proxy
        rho = vms["rho"]
        w.boot_ok(rho)
        assert PROXY["rho"]["mac"] in bootlab.read_leases(w.lab.router.lease_file)
        assert f"sent {w.tree.tftp_root}/snponly.efi" in w.lab.dnsmasq.log()
        assert w.lab.tgt.connected_initiators(target_iqn("rho")) == [initiator_iqn("rho")]


# ================================================================ case 7: a second apply adds a machine

def test_case7_added_machine_boots_after_sighup_without_restart():
    machines = {"alpha": {"mac": "52:54:00:99:06:0a", "ip": "10.99.0.60"}}
    with _world("full") as w:
        w.apply(machines)
        alpha = w.lab.vm("alpha", machines["alpha"]["mac"])
        w.boot_ok(alpha)
        pid, serial_a = w.lab.dnsmasq.pid, alpha.serial_text()
        assert w.lab.tgt.connected_initiators(target_iqn("alpha")) == [initiator_iqn("alpha")]
        hups = w.lab.dnsmasq.log_count("read " + str(w.tree.hosts_dir))

        machines["delta"] = {"mac": "52:54:00:99:06:0d", "ip": "10.99.0.63"}
        out = w.apply(machines)  # new target + host file + script: netprov only reloads (SIGHUP) dnsmasq
        assert 'activation: null -> "sighup"' in out and '"restart"' not in out, out[-3000:]
        assert w.lab.dnsmasq.pid == pid, "dnsmasq was restarted: " + w.lab.dnsmasq.log()[-1500:]
        assert w.lab.dnsmasq.wait_log_count("read " + str(w.tree.hosts_dir), hups + 2, timeout=5), \
            w.lab.dnsmasq.log()[-1500:]  # SIGHUP re-read both host files
        sync = w.reports[-1].sync
        assert sync.added == (target_iqn("delta"),) and target_iqn("alpha") in sync.unchanged, sync
        delta = w.lab.vm("delta", machines["delta"]["mac"])
        w.boot_ok(delta)
        assert w.lab.leases().get(machines["delta"]["mac"]) == "10.99.0.63", w.lab.leases()
        assert w.lab.dnsmasq.pid == pid
        # The running machine is undisturbed: still up, nothing new on its console, its session kept.
        assert alpha.alive() and alpha.serial_text() == serial_a
        assert w.lab.tgt.connected_initiators(target_iqn("alpha")) == [initiator_iqn("alpha")]
        assert w.lab.tgt.connected_initiators(target_iqn("delta")) == [initiator_iqn("delta")]


# ================================================================ the suite catches a broken template

def test_broken_template_makes_the_boot_fail():
    """A ``templates:`` override of machine.ipxe.j2 without the ``set initiator-iqn`` line: iPXE logs
    in with its default IQN, which the target's initiator group does not admit."""
    import netprov

    builtin = (Path(netprov.__file__).parent / "templates" / "machine.ipxe.j2").read_text()
    broken = "".join(line for line in builtin.splitlines(keepends=True)
                     if not line.lstrip().startswith("set initiator-iqn"))
    assert broken != builtin
    machines = {"kappa": {"mac": "52:54:00:99:07:0a", "ip": "10.99.0.70"}}
    with _world("full") as w:
        (w.workdir / "broken-templates").mkdir()
        (w.workdir / "broken-templates" / "machine.ipxe.j2").write_text(broken)
        w.apply(machines, templates="broken-templates")
        assert "initiator-iqn" not in w.script(machines["kappa"]["mac"])
        kappa = w.lab.vm("kappa", machines["kappa"]["mac"])
        text = w.boot_fails(kappa)
        assert re.search(REFUSED_ERROR, text), text[-2000:]
        assert marker("kappa") not in text
        assert w.lab.tgt.connected_initiators(target_iqn("kappa")) == []
