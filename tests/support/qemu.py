"""QEMU VMs for the boot lab: BIOS (SeaBIOS + iPXE NIC ROM) or UEFI (OVMF doing its own PXE).

Every VM runs inside the lab's LAN namespace on its own tap (``-netdev tap,ifname=tapN,
script=no,downscript=no``) with ``-accel tcg``: /dev/kvm on these machines is a nested software
KVM that cannot run firmware. Hardware KVM (``kvm_intel``/``kvm_amd`` in /proc/modules) is used
when ``NETPROV_E2E_KVM=1`` asks for it and it is really there.

* ``firmware="bios"``: ``-machine pc,graphics=off`` makes SeaBIOS copy the text console (iPXE's
  messages) to COM1; the virtio-net NIC keeps QEMU's default iPXE ROM, so the client is iPXE from
  its first DHCP request (there is no legacy PXE ROM in QEMU; the ``undionly.kpxe`` hand-off is
  therefore not exercised by a BIOS VM).
* ``firmware="uefi"``: OVMF pflash (code read-only, a private copy of the VARS), NIC with
  ``romfile=`` empty so OVMF's own PXE (client arch 7) runs and dnsmasq must hand out the iPXE EFI
  binary. OVMF's console is the serial port.
* ``firmware="uefi-ipxe"``: OVMF with the NIC's iPXE ROM (the client is iPXE from the start).

The serial port goes to a file; :meth:`Vm.wait_for` polls it for a success regex or any of the
failure regexes, with a bounded timeout (also against the text with line breaks removed: iPXE's BIOS
console wraps long lines at 80 columns). :meth:`Vm.stop` kills QEMU by its PID.

Public API: :class:`Vm` (``start``, ``wait_for``, ``serial_text``, ``alive``, ``stop``,
``elapsed``), :class:`BootTimeout`, :class:`BootFailed`, :func:`accel`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[c()][0-9A-Za-z]?")


def accel() -> str:
    """``kvm`` only when asked for and a hardware KVM module is loaded; else ``tcg``."""
    if os.environ.get("NETPROV_E2E_KVM") == "1" and Path("/dev/kvm").exists():
        try:
            mods = Path("/proc/modules").read_text()
        except OSError:
            mods = ""
        if re.search(r"^kvm_(intel|amd) ", mods, re.MULTILINE):
            return "kvm"
    return "tcg"


class BootTimeout(AssertionError):
    pass


class BootFailed(AssertionError):
    pass


class Vm:
    def __init__(self, lab, name: str, mac: str, firmware: str = "bios", memory: int | None = None,
                 extra: list[str] | None = None):
        if firmware not in ("bios", "uefi", "uefi-ipxe"):
            raise ValueError(firmware)
        self.lab = lab
        self.name = name
        self.mac = mac.lower()
        self.firmware = firmware
        self.memory = memory or (256 if firmware.startswith("uefi") else 128)
        self.extra = extra or []
        self.dir = Path(lab.workdir) / f"vm-{name}"
        self.serial = self.dir / "serial.log"
        self.proc: subprocess.Popen | None = None
        self.tap: str | None = None
        self.started_at: float | None = None

    def command(self) -> list[str]:
        assert self.tap is not None
        nic = f"virtio-net-pci,netdev=n0,mac={self.mac}"
        cmd = ["qemu-system-x86_64", "-accel", accel(), "-m", str(self.memory), "-nodefaults",
               "-display", "none", "-no-reboot", "-serial", f"file:{self.serial}",
               "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no"]
        if self.firmware == "bios":
            cmd += ["-machine", "pc,graphics=off", "-device", nic, "-boot", "n"]
        else:
            vars_copy = self.dir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            cmd += ["-machine", "q35",
                    "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
            cmd += ["-device", nic + (",romfile=" if self.firmware == "uefi" else "")]
        return cmd + self.extra

    def start(self) -> Vm:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serial.write_bytes(b"")
        self.tap = self.lab.add_tap()
        cmd = ["ip", "netns", "exec", self.lab.ns_lan, *self.command()]
        with open(self.dir / "qemu.stderr", "wb") as err:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def serial_text(self, clean: bool = True) -> str:
        try:
            raw = self.serial.read_bytes().decode("latin-1")
        except FileNotFoundError:
            return ""
        return _ANSI.sub("", raw).replace("\r", "") if clean else raw

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def elapsed(self) -> float:
        return time.monotonic() - (self.started_at or time.monotonic())

    def wait_for(self, pattern: str, fail: list[str] | tuple[str, ...] = (), timeout: float = 60.0,
                 ) -> re.Match:
        """Poll the serial log until ``pattern`` matches; raise :class:`BootFailed` when a
        ``fail`` regex matches first, or :class:`BootTimeout` (with the lab's logs) at ``timeout``."""
        rx = re.compile(pattern)
        frx = [re.compile(f) for f in fail]
        deadline = time.monotonic() + timeout
        while True:
            text = self.serial_text()
            # iPXE's BIOS console wraps at 80 columns: also match with the line breaks removed.
            flat = text.replace("\n", "")
            m = rx.search(text) or rx.search(flat)
            if m:
                return m
            for f in frx:
                fm = f.search(text) or f.search(flat)
                if fm:
                    raise BootFailed(f"{self.name}: failure pattern {f.pattern!r} after {self.elapsed():.1f}s\n"
                                     + self.lab.diagnostics())
            if self.proc is not None and self.proc.poll() is not None:
                raise BootFailed(f"{self.name}: QEMU exited ({self.proc.returncode}) before {pattern!r}; "
                                 f"stderr: {(self.dir / 'qemu.stderr').read_text(errors='replace')[-1000:]}\n"
                                 + self.lab.diagnostics())
            if time.monotonic() > deadline:
                raise BootTimeout(f"{self.name}: no {pattern!r} within {timeout}s\n" + self.lab.diagnostics())
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.proc = None
