"""Real boots of the two other paths of the origin story: installing an OS onto the iSCSI disk
(``boot: install``) and the USB iPXE stick (``netprov-embedded.ipxe``), driven by `netprov apply`
against the TrueNAS simulator and a real sshd, like :mod:`tests.e2e.test_boot_cases`.

Install path. The "installer" is a real Debian kernel (``linux-image-cloud-amd64``, downloaded once
into a cache, :mod:`tests.support.installer`) with a busybox initramfs whose ``/init`` loads
``iscsi_ibft``, prints what the iBFT iPXE published says (initiator name, target name/address/port/
LUN, CHAP user, and whether the CHAP secret equals the one the test expects: digests are compared,
the secret is never printed) and powers off. The tests compare those lines with the inventory.

* ``TestInstallTftp`` (full DHCP; kernel and initrd in ``tftp_root``, named relative to the script):
  BIOS install with CHAP; a wrong CHAP secret (an inventory ``extra.ipxe`` line) fails at ``sanhook``
  and no kernel is fetched (dnsmasq's TFTP log); then the machine is switched to ``boot: sanboot``,
  applied again, and boots from its disk.
* ``TestInstallHttp`` (full DHCP, the inventory's ``http`` setting: scripts, kernel and initrd come
  from a web server): UEFI install with CHAP (OVMF's own PXE -> snponly.efi -> boot.ipxe over HTTP).

USB stick. ``TestUsbStick``: a LAN where only a plain DHCP server (the router) answers: the PXE
server's dnsmasq runs netprov's config with DHCPv4 switched off on its interface, so it only serves
TFTP. QEMU boots Debian's ``ipxe.lkrn`` with netprov's embedded script as its initrd (the script
iPXE runs; a real stick has it built in): it must find the PXE server, fetch the machine's script and
sanboot the disk; with the router and the PXE server unreachable it must say so and retry (every 5 s
without DHCP, every 30 s without its script, docs/usb-ipxe.md), and boot once they are back. UEFI: Debian's ipxe.efi on a FAT stick with the
script beside it as ``autoexec.ipxe`` is booted too; this iPXE build ignores the file (what the docs
say), and the test asserts exactly that.

Time: one kernel download (cached across runs) and one initramfs per session; the three labs are
started together before the first test (module-scoped fixtures), so their VMs' boots and waits
overlap: chi's DHCP and TFTP timeouts and retry sleeps cost little extra wall time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.netprov_world import (
    FAILED,
    PERMISSION_ERROR,
    UEFI_TIMEOUT,
    UNKNOWN,
    NetprovWorld,
    initiator_iqn,
    root_path,
    target_iqn,
)
from tests.support import bootlab, installer
from tests.support.diskimage import MARKER_PREFIX, marker

pytestmark = pytest.mark.e2e

LKRN = bootlab.IPXE_DIR / "ipxe.lkrn"
INSTALL_TIMEOUT_BIOS = 120.0
INSTALL_TIMEOUT_UEFI = UEFI_TIMEOUT + 30
KERNEL_ARGS = "console=ttyS0,115200n8"
CMDLINE = "quiet panic=-1"

SECRETS = {  # CHAP user -> the secret the NAS holds (the test's, never printed by the VM)
    "sigma": "Sigma-s3cret-001",
    "tau": "Tau-s3cret-00001",
    "upsilon": "Upsilon-s3cret-1",
}


@pytest.fixture
def timed(request):
    """Print how long the test itself took (the labs are started before, by ``_all_labs_at_once``)."""
    t0 = time.monotonic()
    yield
    print(f"\n{request.node.name}: {time.monotonic() - t0:.1f}s")


@contextlib.contextmanager
def _world(mode: str = "full", uefi: bool = False, **kw):
    bootlab.require_lab(uefi=uefi, ssh=True)
    d = bootlab.new_workdir()
    w = NetprovWorld(d, mode, **kw)
    try:
        yield w.start()
    finally:
        w.close()
        if os.environ.get("NETPROV_E2E_KEEP") == "1":
            print(f"\nboot lab work directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def _flat(vm) -> str:
    return vm.serial_text().replace("\n", "")


@pytest.fixture(scope="session")
def installer_files():
    """(vmlinuz, initrd) for the install cases: the cached Debian kernel, one initramfs per session."""
    bootlab.require_lab(ssh=True)
    t0 = time.monotonic()
    try:
        kernel = installer.fetch_kernel()
        busybox = installer.busybox_path()
    except (installer.FetchError, OSError, subprocess.SubprocessError) as exc:
        msg = f"installer kernel/busybox unavailable: {exc}"
        if os.environ.get("NETPROV_REQUIRE_E2E") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    d = bootlab.new_workdir()
    digests = {user: installer.digest(secret) for user, secret in SECRETS.items()}
    initrd = installer.build_initramfs(d / "initrd.img", kernel, digests, busybox=busybox)
    print(f"installer: kernel {kernel.version} + initramfs ({initrd.stat().st_size // 1024} KiB) "
          f"ready in {time.monotonic() - t0:.1f}s")
    yield kernel.vmlinuz, initrd
    shutil.rmtree(d, ignore_errors=True)


def _place(files, where: Path) -> None:
    """Put the installer's kernel and initrd where the user serves them from (0644, dirs 0755)."""
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o755)
    for src, name in zip(files, ("vmlinuz", "initrd.img"), strict=True):
        shutil.copyfile(src, where / name)
        (where / name).chmod(0o644)


def _install_spec(mac: str, ip: str | None = None, **over) -> dict:
    spec = {"mac": mac, "boot": "install",
            "install": {"kernel": "installer/vmlinuz", "initrd": ["installer/initrd.img"],
                        "cmdline": CMDLINE},
            "extra": {"kernel_args": KERNEL_ARGS}}
    if ip:
        spec["ip"] = ip
    spec.update(over)
    return spec


def _wait_report(vm, timeout: float) -> dict[str, str]:
    """Wait for /init's report and the power-off; return the report."""
    vm.wait_for(re.escape(installer.REPORT_END),
                fail=[FAILED, UNKNOWN, r"Kernel panic", re.escape(MARKER_PREFIX)], timeout=timeout)
    try:
        vm.proc.wait(timeout=30)   # /init powers off: QEMU exits by itself
    except subprocess.TimeoutExpired:
        pytest.fail(f"{vm.name}: no power-off after the report:\n{vm.serial_text()[-1500:]}")
    print(f"{vm.name} ({vm.firmware}): installer report after {vm.elapsed():.1f}s")
    return installer.parse_report(vm.serial_text())


def _assert_ibft_is_the_inventory(report: dict[str, str], machine: str, vm) -> None:
    ctx = vm.serial_text()[-2500:]
    assert "error" not in report and not any(k == "insmod-failed" for k in report), ctx
    assert report["initiator-name"] == initiator_iqn(machine), ctx
    assert report["target-name"] == target_iqn(machine), ctx
    assert report["target-ip"] == bootlab.SERVER_IP, ctx
    assert report["target-port"] == "3260", ctx
    assert installer.lun_number(report["target-lun"]) == 1, ctx   # the inventory's storage.lun
    assert report["chap-type"] == "1", ctx                        # one-way CHAP
    assert report["chap-name"] == machine, ctx                    # the CHAP user (default: the machine name)
    assert report["chap-secret"] == "matches", ctx                # equal to the NAS's, compared in the VM
    assert report["nic-mac"] == vm.mac, ctx
    for secret in SECRETS.values():
        assert secret not in vm.serial_text()


# ================================================================ install: TFTP, full DHCP, BIOS

TFTP_MACHINES = {
    # BIOS install with CHAP; kernel and initrd from tftp_root ("installer/…" relative to the script)
    "sigma": _install_spec("52:54:00:99:08:0a", "10.99.0.80", chap={"secret": SECRETS["sigma"]}),
    # the same, but the machine presents a wrong secret (an inventory extra.ipxe line after netprov's
    # `set password`); the NAS keeps the right one
    "tau": _install_spec("52:54:00:99:08:0b", "10.99.0.81", chap={"secret": SECRETS["tau"]},
                         extra={"kernel_args": KERNEL_ARGS, "ipxe": ["set password Not-tau-s3cret-9"]}),
}


@pytest.fixture(scope="module")
def install_tftp(installer_files):
    with _world("full") as w:
        _place(installer_files, w.tree.tftp_root / "installer")
        w.apply(TFTP_MACHINES)
        vms = {name: w.lab.vm(name, spec["mac"], memory=256) for name, spec in TFTP_MACHINES.items()}
        yield w, vms


class TestInstallTftp:
    def test_bios_install_with_chap_sees_the_inventory_in_the_ibft(self, install_tftp, timed):
        w, vms = install_tftp
        sigma = vms["sigma"]
        report = _wait_report(sigma, INSTALL_TIMEOUT_BIOS)
        _assert_ibft_is_the_inventory(report, "sigma", sigma)
        text = _flat(sigma)
        assert f"netprov: sigma: attaching {root_path('sigma')}, then booting the installer" in text
        # the kernel line netprov wrote, as the kernel got it: the installer's cmdline and kernel_args,
        # the initrd named, and edd=off on BIOS (else the EDD probe logs in a second time)
        cmdline = report["cmdline"].split()
        for arg in ("initrd=initrd0", *CMDLINE.split(), KERNEL_ARGS, "edd=off"):
            assert arg in cmdline, report["cmdline"]
        # the kernel and initrd came from tftp_root, to this machine
        log = w.lab.dnsmasq.log()
        for f in ("vmlinuz", "initrd.img"):
            assert f"sent {w.tree.tftp_root}/installer/{f} to 10.99.0.80" in log, log[-2000:]
        assert MARKER_PREFIX not in sigma.serial_text()   # the installer ran, not the disk

    def test_wrong_chap_secret_fails_at_sanhook_and_fetches_no_kernel(self, install_tftp, timed):
        w, vms = install_tftp
        tau = vms["tau"]
        tau.wait_for(f"{FAILED} tau", fail=[re.escape(installer.REPORT_END), re.escape(MARKER_PREFIX)],
                     timeout=INSTALL_TIMEOUT_BIOS)
        print(f"tau: FAILED message on screen by {tau.elapsed():.1f}s (checked then)")
        text = tau.serial_text()
        assert re.search(PERMISSION_ERROR, text), text[-2000:]
        assert "and the CHAP secret" in _flat(tau)
        # on_failure: exit -> the firmware moves on; by then the script is over
        tau.wait_for(r"No more network devices|No bootable device",
                     fail=[re.escape(installer.REPORT_END), re.escape(MARKER_PREFIX)], timeout=60)
        log = w.lab.dnsmasq.log()
        tau_lines = [line for line in log.splitlines() if "10.99.0.81" in line]
        # the script was fetched, then nothing else: no kernel, no initrd
        assert any("52-54-00-99-08-0b.ipxe" in line for line in tau_lines), tau_lines
        assert not [line for line in tau_lines if "installer/" in line], tau_lines
        assert installer.REPORT_PREFIX not in text and "Linux version" not in text
        assert SECRETS["tau"] not in text and "Not-tau-s3cret-9" not in text
        assert w.lab.tgt.connected_initiators(target_iqn("tau")) == []

    def test_switch_back_to_sanboot_boots_the_disk(self, install_tftp, timed):
        w, vms = install_tftp
        sigma = vms["sigma"]
        if sigma.alive():
            _wait_report(sigma, INSTALL_TIMEOUT_BIOS)
        machines = {**TFTP_MACHINES, "sigma": {**TFTP_MACHINES["sigma"], "boot": "sanboot"}}
        out = w.apply(machines)
        # docs/installing-an-os.md: one change, sigma's script; the zvol and iSCSI objects stay, and a
        # script change needs no dnsmasq reload
        assert "Plan: 0 to create, 1 to update, 0 to delete." in out, out[-3000:]
        assert "~ pxe.tftp[52-54-00-99-08-0a.ipxe]" in out and "storage:nas: 0+ 0~ 0-" in out, out[-3000:]
        assert "activation" not in out, out[-3000:]
        script = w.script(TFTP_MACHINES["sigma"]["mac"])
        assert "sanhook" not in script and "sanboot ${netprov-root}" in script
        again = w.lab.vm("sigma-2", TFTP_MACHINES["sigma"]["mac"])
        again.wait_for(re.escape(marker("sigma")), fail=[FAILED, UNKNOWN, re.escape(installer.REPORT_PREFIX)],
                       timeout=INSTALL_TIMEOUT_BIOS)
        assert f"netprov: sigma boots from {root_path('sigma')}" in _flat(again)
        print(f"sigma-2 booted its disk in {again.elapsed():.1f}s")


# ================================================================ install: HTTP, UEFI

HTTP_MACHINES = {
    "upsilon": _install_spec("52:54:00:99:08:1a", "10.99.0.85", firmware="uefi",
                             chap={"secret": SECRETS["upsilon"]}),
}


@pytest.fixture(scope="module")
def install_http(installer_files):
    with _world("full", uefi=True, http=True) as w:
        _place(installer_files, w.http.docroot / "netprov" / "installer")
        # The web server runs as www-data (as Debian's do): a CHAP-bearing script (0640) must be in its
        # group. With the default secret_group (dip, dnsmasq's) it answers 404 and the machine falls
        # back to "not in the inventory" (seen; docs/chap.md says to set secret_group).
        w.apply(HTTP_MACHINES, server={"http": w.http_settings(), "secret_group": "www-data"})
        vms = {name: w.lab.vm(name, spec["mac"], firmware="uefi", memory=256)
               for name, spec in HTTP_MACHINES.items()}
        yield w, vms


class TestInstallHttp:
    def test_uefi_install_with_chap_over_http_sees_the_inventory_in_the_ibft(self, install_http,
                                                                             timed):
        w, vms = install_http
        upsilon = vms["upsilon"]
        report = _wait_report(upsilon, INSTALL_TIMEOUT_UEFI)
        _assert_ibft_is_the_inventory(report, "upsilon", upsilon)
        attaching = f"netprov: upsilon: attaching {root_path('upsilon')}, then booting the installer"
        assert attaching in _flat(upsilon)
        # boot.ipxe, the machine's script, the kernel and the initrd all came over HTTP
        got = {(path, status) for ip, _method, path, status in w.http.requests() if ip == "10.99.0.85"}
        for path in ("/netprov/boot.ipxe", "/netprov/52-54-00-99-08-1a.ipxe",
                     "/netprov/installer/vmlinuz", "/netprov/installer/initrd.img"):
            assert (path, 200) in got, (path, sorted(got), w.http.log_text()[-1500:])
        assert "installer/" not in w.lab.dnsmasq.log()   # nothing of the installer over TFTP
        # the kernel line netprov wrote, as the kernel got it: the initrd named (without it this iPXE's
        # UEFI boot finds no initramfs), no edd=off (pcbios only)
        cmdline = report["cmdline"].split()
        assert "initrd=initrd0" in cmdline and "edd=off" not in cmdline, report["cmdline"]


# ================================================================ the USB stick

USB = {
    "phi": {"mac": "52:54:00:99:09:0a"},
    "chi": {"mac": "52:54:00:99:09:0b"},
    "psi": {"mac": "52:54:00:99:09:0c", "firmware": "uefi"},
}
GAVE_UP = r"No more network devices|Nothing to boot|UEFI Interactive Shell|Shell>"
NO_SCRIPT = "netprov: could not fetch the script for"
NO_DHCP = "netprov: no DHCP answer; retrying in 5 s"
SILENT_MATCH = "dhcp-match=set:lab-silent,53"


def _usb_vm(w: NetprovWorld, name: str):
    """BIOS QEMU running Debian's ipxe.lkrn with the embedded script netprov pushed as the script it
    runs (what a stick built with EMBED= holds)."""
    embedded = w.tree.tftp_root / "netprov-embedded.ipxe"
    return w.lab.vm(name, USB[name]["mac"], extra=["-kernel", str(LKRN), "-initrd", str(embedded)])


def _link(w: NetprovWorld, port: str, up: bool) -> None:
    """Cut (or restore) a cable: ``srv`` (the PXE server) or ``rtr`` (the router), its port on the LAN
    bridge."""
    subprocess.run(["ip", "-n", w.lab.ns_lan, "link", "set", port, "up" if up else "down"], check=True)


def _efi_stick(w: NetprovWorld) -> Path:
    """A FAT "stick": Debian's ipxe.efi as \\EFI\\BOOT\\BOOTX64.EFI, netprov's embedded script as
    ``autoexec.ipxe`` beside it and at the root (where newer iPXE builds look for it)."""
    img = w.lab.workdir / "efi-stick.img"
    script = w.tree.tftp_root / "netprov-embedded.ipxe"
    subprocess.run(["mkfs.fat", "-C", "-n", "NETPROVUSB", str(img), str(16 * 1024)],
                   check=True, capture_output=True)
    for cmd in (["mmd", "-i", str(img), "::/EFI", "::/EFI/BOOT"],
                ["mcopy", "-i", str(img), str(bootlab.IPXE_DIR / "ipxe.efi"), "::/EFI/BOOT/BOOTX64.EFI"],
                ["mcopy", "-i", str(img), str(script), "::/EFI/BOOT/autoexec.ipxe"],
                ["mcopy", "-i", str(img), str(script), "::/autoexec.ipxe"]):
        subprocess.run(cmd, check=True, capture_output=True)
    return img


class _Unplugged:
    """chi's boot with both cables out, the router's and the PXE server's: started at once, and a
    watcher thread plugs the router back in when chi has said it got no DHCP answer, then the PXE
    server when chi has said it could not fetch its script. So one VM shows both retry loops of the
    embedded script, and the other labs' boots overlap its timeouts and retry sleeps."""

    def __init__(self, w: NetprovWorld):
        self.w = w
        self.error: BaseException | None = None
        self.seen: dict[str, float] = {}    # message -> seconds after QEMU start
        _link(w, "rtr", up=False)
        _link(w, "srv", up=False)
        self.vm = _usb_vm(w, "chi")
        self.thread = threading.Thread(target=self._watch, name="usb-unplugged", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        try:
            for message, port in ((NO_DHCP, "rtr"), (NO_SCRIPT, "srv")):
                self.vm.wait_for(re.escape(message), fail=[re.escape(MARKER_PREFIX)], timeout=150)
                self.seen[message] = self.vm.elapsed()
                _link(self.w, port, up=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            _link(self.w, "rtr", up=True)
            _link(self.w, "srv", up=True)

    def join(self, raise_error: bool = True) -> None:
        self.thread.join(timeout=330)
        assert not self.thread.is_alive(), "the watcher of chi's serial console did not finish"
        if self.error and raise_error:
            raise self.error


@pytest.fixture(scope="module")
def usb():
    bootlab.require_lab(ssh=True)
    if not LKRN.exists():
        why = f"{LKRN} missing (package ipxe)"
        (pytest.fail if os.environ.get("NETPROV_REQUIRE_E2E") == "1" else pytest.skip)(why)
    # proxy mode: the router hands out addresses; the PXE server's dnsmasq runs netprov's config, but
    # its lab-owned main file ignores every DHCP request (option 53 is in each one), so nothing on
    # this LAN offers PXE; it serves TFTP only. (no-dhcpv4-interface would switch TFTP off too.)
    with _world("proxy", dnsmasq_extra=(SILENT_MATCH, "dhcp-ignore=tag:lab-silent")) as w:
        w.apply(USB)
        w.unplugged = _Unplugged(w)
        stick = _efi_stick(w)
        w.psi = w.lab.vm("psi", USB["psi"]["mac"], firmware="uefi", extra=[
            "-drive", f"file={stick},format=raw,if=none,id=stick", "-device", "qemu-xhci",
            "-device", "usb-storage,drive=stick,bootindex=0"])
        try:
            yield w
        finally:
            w.unplugged.vm.stop()   # a watcher still waiting sees QEMU gone and ends at once
            w.unplugged.thread.join(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _all_labs_at_once(request):
    """Start every lab of this module (and its first VMs) before the first test: the boots and the
    waits of the three labs overlap instead of adding up."""
    bootlab.require_lab(uefi=True, ssh=True)
    t0 = time.monotonic()
    for name in ("usb", "install_tftp", "install_http"):
        request.getfixturevalue(name)
    print(f"\ninstall/usb labs: started, applied and first VMs running in {time.monotonic() - t0:.1f}s")


class TestUsbStick:
    def test_stick_finds_the_pxe_server_and_sanboots(self, usb, timed):
        w = usb
        w.unplugged.join(raise_error=False)   # both cables are back in (chi's test judges chi)
        phi = _usb_vm(w, "phi")
        w.boot_ok(phi)
        text = _flat(phi)
        assert f"netprov: phi boots from {root_path('phi')}" in text
        assert w.lab.tgt.connected_initiators(target_iqn("phi")) == [initiator_iqn("phi")]
        # the address came from the router; netprov's dnsmasq saw the stick's requests and answered
        # none (no PXE offered on this LAN), it only served the script by TFTP
        addr = bootlab.read_leases(w.lab.router.lease_file).get(USB["phi"]["mac"], "")
        assert addr.startswith(f"{bootlab.SUBNET}.1"), bootlab.read_leases(w.lab.router.lease_file)
        log = w.lab.dnsmasq.log()
        seen = [line for line in log.splitlines()
                if f"PXE({bootlab.SERVER_IF}) {USB['phi']['mac']}" in line]
        assert seen and all(line.endswith("proxy-ignored") for line in seen), log[-2000:]
        assert "sent size" not in log and "bootfile-name" not in log, log[-2000:]
        assert f"sent {w.tree.tftp_root}/52-54-00-99-09-0a.ipxe to {addr}" in log, log[-2000:]

    def test_unreachable_router_and_server_are_said_on_screen_and_retried(self, usb, timed):
        """docs/usb-ipxe.md: the script retries for ever, every 5 s without a DHCP answer and every 30 s
        when it can't fetch the machine's script (an unreachable server included), and the machine
        boots once they are back. chi starts with both cables out (see :class:`_Unplugged`)."""
        w = usb
        w.unplugged.join()
        chi = w.unplugged.vm
        seen = w.unplugged.seen
        print(f"chi: 'no DHCP answer' after {seen[NO_DHCP]:.1f}s, "
              f"'could not fetch' after {seen[NO_SCRIPT]:.1f}s")
        text = _flat(chi)
        said = (f"{NO_SCRIPT} {USB['chi']['mac']} from tftp://{bootlab.SERVER_IP} (missing, or the server "
                "is unreachable: see the error above); retrying in 30 s")
        assert said in text, text[-1500:]
        assert "Connection timed out" in text, text[-1500:]   # iPXE's own error, just before
        # the order on screen: no DHCP answer; then (router back) an address; then the server unreachable
        i_dhcp, i_said = text.index(NO_DHCP), text.index(said)
        assert i_dhcp < i_said, text[-2500:]
        assert re.search(r"Configuring \(net0 [0-9a-f:]+\)\.* ok", text[i_dhcp:i_said]), text[-2500:]
        # it retries and boots once the server is back
        w.boot_ok(chi, timeout=150)
        assert w.lab.tgt.connected_initiators(target_iqn("chi")) == [initiator_iqn("chi")]
        assert USB["chi"]["mac"] in bootlab.read_leases(w.lab.router.lease_file)

    def test_uefi_stick_debian_ipxe_efi_ignores_autoexec_ipxe(self, usb, timed):
        """What docs/usb-ipxe.md says of a UEFI stick without building iPXE: OVMF boots the FAT stick's
        \\EFI\\BOOT\\BOOTX64.EFI (Debian 12's ipxe.efi, 1.0.0+git-20190125) with netprov's embedded
        script beside it (and at the root) as ``autoexec.ipxe``. This build never runs it: it does its
        built-in DHCP boot, gets an address from the router and no boot file, and gives up. Newer iPXE
        reads autoexec.ipxe; when Debian's does, this test fails and the docs must change."""
        w = usb
        psi = w.psi
        psi.wait_for(GAVE_UP, fail=[re.escape(MARKER_PREFIX)], timeout=UEFI_TIMEOUT)
        print(f"psi: the stick's ipxe.efi had given up by {psi.elapsed():.1f}s (checked then)")
        text = psi.serial_text()
        assert "USB HARDDRIVE" in text and "iPXE" in text, text[-2000:]   # the stick's iPXE ran
        assert f"gw {bootlab.ROUTER_IP}" in text, text[-2000:]            # and took the router's address
        assert "Nothing to boot" in text, text[-2000:]
        assert "netprov:" not in text, text[-2000:]                        # no line of the script ran
        assert "52-54-00-99-09-0c.ipxe" not in w.lab.dnsmasq.log() + text  # its machine script never fetched
