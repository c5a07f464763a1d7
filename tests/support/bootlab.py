"""The end-to-end boot lab: namespaces, a bridge, real dnsmasq + tgtd, QEMU VMs.

Topology (all inside network namespaces this module creates; nothing touches the host's
interfaces or services)::

    npe-b<pid>x<rand>-lan     bridge br0, one tap per VM (QEMU runs here)
        |  veth "srv" <-> "lan0"
    npe-b<pid>x<rand>-srv     lan0 = 10.99.0.1/24, fd99::1/64: dnsmasq (DHCP/proxy-DHCP + TFTP) and tgtd
        |  veth "rtr" <-> "lan0"          (proxy mode only)
    npe-b<pid>x<rand>-rtr     lan0 = 10.99.0.254/24, fd99::fe/64: a plain DHCP dnsmasq (the "router")

IPv6: the iPXE build under test waits ~13 s for IPv6 autoconfiguration at every stage unless a
router advertisement arrives, so one lab-owned dnsmasq answers with ``enable-ra`` +
``dhcp-range=fd99::,ra-only,64`` (the server's in full mode, the router's in proxy mode).

The configuration under test is pluggable: a test hands the lab a :class:`PxeTree` (a TFTP root,
a dnsmasq drop-in directory loaded with ``conf-dir``, and a ``dhcp-hostsdir`` directory) and a list
of :class:`tests.support.tgt.Target`. The e2e cases put netprov's output there: `netprov apply`
pushes it over SSH (:mod:`tests.e2e.netprov_world`), and :mod:`tests.support.tgt_bridge` makes
tgtd serve the targets the TrueNAS simulator holds. The lab's own dnsmasq main file only sets what belongs to the lab
(no DNS, ``log-dhcp``, the interface, ``no-ping``, RA, ``conf-dir``; pid/lease/log files are given
on the command line by :class:`tests.support.dnsmasq.Dnsmasq`); everything PXE comes from the tree.

Cleanup: every process is stopped by its PID and every namespace removed in :meth:`BootLab.close`
(idempotent, also registered with ``atexit``); :func:`sweep_leftovers` removes namespaces left by a
previous, killed run (only those whose creating PID is gone, so a parallel run is never touched).

Public API: :func:`missing_requirements`, :func:`require_lab`, :func:`new_workdir`,
:func:`sweep_leftovers`, :class:`PxeTree`,
:func:`read_leases`, :class:`BootLab` (``start``, ``serve``, ``add_tap``, ``vm``, ``sighup_dnsmasq``,
``restart_dnsmasq``, ``leases``, ``diagnostics``, ``close``) and the constants ``SERVER_IP``, ``ROUTER_IP``,
``SUBNET``, ``DHCP_RANGE``, ``IPXE_DIR``.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import subprocess
import weakref
from dataclasses import dataclass
from pathlib import Path

from tests.support import pid_alive, register_netns, unregister_netns
from tests.support import tgt as tgt_mod
from tests.support.dnsmasq import Dnsmasq

NS_PREFIX = "npe-"
_NS_RE = re.compile(r"^npe-b(\d+)x[0-9a-f]+-(lan|srv|rtr)$")

SUBNET = "10.99.0"
SERVER_IP = f"{SUBNET}.1"
ROUTER_IP = f"{SUBNET}.254"
NETMASK = "255.255.255.0"
DHCP_RANGE = (f"{SUBNET}.100", f"{SUBNET}.199")
ULA_PREFIX = "fd99::"
SERVER_IP6 = "fd99::1"
ROUTER_IP6 = "fd99::fe"
SERVER_IF = "lan0"          # the server's interface name inside its namespace
IPXE_DIR = Path("/usr/lib/ipxe")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def missing_requirements(uefi: bool = False, ssh: bool = False) -> list[str]:
    """What keeps the lab from running here (empty list: all good). Tests skip with this.
    ``ssh``: also the OpenSSH server and client (netprov pushes the PXE files over SSH)."""
    out: list[str] = []
    if os.geteuid() != 0:
        out.append("not root (network namespaces, taps and tgtd need root)")
    for b in ("ip", "dnsmasq", "tgtd", "tgtadm", "qemu-system-x86_64", "mkfs.fat", "mcopy", "mmd"):
        if shutil.which(b) is None:
            out.append(f"binary {b!r} not found")
    for f in (IPXE_DIR / "undionly.kpxe", IPXE_DIR / "ipxe.efi", Path("/usr/lib/ipxe/qemu/efi-virtio.rom")):
        if not f.exists():
            out.append(f"{f} not found (packages ipxe / ipxe-qemu)")
    if uefi:
        for f in (OVMF_CODE, OVMF_VARS):
            if not f.exists():
                out.append(f"{f} not found (package ovmf)")
    if not Path("/dev/net/tun").exists():
        out.append("/dev/net/tun missing")
    if ssh:
        path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
        for b in ("sshd", "ssh", "ssh-keygen"):
            if shutil.which(b, path=path) is None:
                out.append(f"binary {b!r} not found (packages openssh-server / openssh-client)")
    return out


def require_lab(uefi: bool = False, ssh: bool = False) -> None:
    """Skip the calling test when the lab can't run here, with the reason; with
    ``NETPROV_REQUIRE_E2E=1`` (CI) fail it instead: an e2e test must never silently not run."""
    import pytest

    missing = missing_requirements(uefi=uefi, ssh=ssh)
    if missing:
        reason = "boot lab unavailable: " + "; ".join(missing)
        if os.environ.get("NETPROV_REQUIRE_E2E") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), check=False, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _ns_list() -> list[str]:
    r = _run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _delete_ns(name: str) -> None:
    """Kill every process left in namespace ``name`` (by PID), then delete it."""
    r = _run("ip", "netns", "pids", name, check=False)
    for p in r.stdout.split():
        _kill_pid(int(p))
    _run("ip", "netns", "delete", name, check=False)


WORKDIR_PREFIX = "npe-lab-"
_WORKDIR_RE = re.compile(r"^npe-lab-(\d+)-")


def new_workdir(base: str = "/tmp") -> Path:
    """A fresh, world-traversable lab work directory named after this process (for the sweep).

    dnsmasq drops to its own user, so the TFTP root and hostsdir under it must be reachable:
    pytest's own tmp_path (0700) is not."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=base))
    d.chmod(0o755)
    return d


def sweep_leftovers(base: str = "/tmp") -> list[str]:
    """Clean up after killed runs: for lab namespaces and work directories whose creating PID is
    gone, kill the processes left inside (by PID), delete the namespaces and the directories.
    Namespaces of a live process (a parallel run) are never touched. Returns what was removed."""
    gone = []
    for name in _ns_list():
        m = _NS_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            _delete_ns(name)
            gone.append(name)
    for d in Path(base).glob(f"{WORKDIR_PREFIX}*"):
        m = _WORKDIR_RE.match(d.name)
        if m and d.is_dir() and not pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(str(d))
    return gone


@dataclass
class PxeTree:
    """Where the configuration under test lives: what a PXE server would hold."""

    tftp_root: Path
    conf_dir: Path      # dnsmasq drop-ins (*.conf), loaded at start (change => restart)
    hosts_dir: Path     # dhcp-hostsdir (re-read on SIGHUP; additions also via inotify)

    @classmethod
    def create(cls, base: Path | str) -> PxeTree:
        base = Path(base)
        tree = cls(base / "tftp", base / "dnsmasq.d", base / "hosts.d")
        for d in (tree.tftp_root, tree.conf_dir, tree.hosts_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        return tree

    def install_ipxe_binaries(self, names: tuple[str, ...] = ("undionly.kpxe", "ipxe.efi", "snponly.efi")) -> None:
        """Copy the Debian iPXE binaries into the TFTP root (what netprov's BINARY files do)."""
        for n in names:
            dst = self.tftp_root / n
            shutil.copyfile(IPXE_DIR / n, dst)
            dst.chmod(0o644)

    def write(self, rel: str, text: str, where: str = "tftp", mode: int = 0o644) -> Path:
        """Write a text file under one of the roots (``tftp``, ``conf``, ``hosts``)."""
        root = {"tftp": self.tftp_root, "conf": self.conf_dir, "hosts": self.hosts_dir}[where]
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name("." + p.name + ".tmp")  # dot-files are ignored by dnsmasq's dirs
        tmp.write_text(text)
        tmp.chmod(mode)
        os.replace(tmp, p)
        return p


def read_leases(lease_file: Path) -> dict[str, str]:
    """MAC (lower case) -> IPv4 address from a dnsmasq lease file."""
    out: dict[str, str] = {}
    try:
        for line in Path(lease_file).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and ":" in parts[1]:
                out[parts[1].lower()] = parts[2]
    except FileNotFoundError:
        pass
    return out


def _dnsmasq_conf(lines: list[str], user: str | None) -> str:
    head = ["# boot lab: lab-owned main file", "port=0", "log-dhcp"]
    if user:
        head.append(f"user={user}")
    return "\n".join(head + lines) + "\n"


_LIVE_LABS: weakref.WeakSet[BootLab] = weakref.WeakSet()


@atexit.register
def _close_all_labs() -> None:
    for lab in list(_LIVE_LABS):
        lab.close()


class BootLab:
    """One isolated boot network. ``mode`` is ``"full"`` (the PXE server's dnsmasq also hands out
    addresses) or ``"proxy"`` (a router namespace hands out addresses; the PXE server's dnsmasq
    runs in proxy-DHCP mode beside it)."""

    def __init__(self, workdir: Path | str, mode: str = "full", dnsmasq_user: str | None = None):
        if mode not in ("full", "proxy"):
            raise ValueError(mode)
        self.mode = mode
        # None: dnsmasq drops to its compiled-in user and group (Debian's dnsmasq-base: nobody and
        # "dip"; the packaged service passes its own user, the group stays "dip"). Files it serves
        # by TFTP or re-reads on SIGHUP must be readable by them: a 0640 file only with group dip.
        # "root" keeps root, and then TFTP serves world-readable files only.
        self.dnsmasq_user = dnsmasq_user
        self.workdir = Path(workdir)
        tag = f"npe-b{os.getpid()}x{secrets.token_hex(3)}"
        self.ns_lan = f"{tag}-lan"
        self.ns_srv = f"{tag}-srv"
        self.ns_rtr = f"{tag}-rtr"
        self._namespaces: list[str] = []
        self._taps = 0
        self.dnsmasq: Dnsmasq | None = None
        self.router: Dnsmasq | None = None
        self.tgt: tgt_mod.Tgtd | None = None
        self.vms: list = []
        self.tree: PxeTree | None = None
        self._closed = False
        _LIVE_LABS.add(self)

    # ---- topology -----------------------------------------------------------------------
    def _ns_add(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        register_netns(name)  # the shared atexit cleanup deletes it too
        _run("ip", "-n", name, "link", "set", "lo", "up")
        # No DAD: addresses usable at once, and the RA goes out without delay.
        _run("ip", "netns", "exec", name, "sysctl", "-q", "-w",
             "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")

    def _attach(self, ns: str, bridge_port: str, ip4: str, ip6: str) -> None:
        _run("ip", "-n", self.ns_lan, "link", "add", bridge_port, "type", "veth",
             "peer", "name", SERVER_IF, "netns", ns)
        _run("ip", "-n", self.ns_lan, "link", "set", bridge_port, "master", "br0", "up")
        _run("ip", "-n", ns, "addr", "add", f"{ip4}/24", "dev", SERVER_IF)
        _run("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", SERVER_IF, "nodad")
        _run("ip", "-n", ns, "link", "set", SERVER_IF, "up")

    def start(self) -> BootLab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # dnsmasq drops to its own user: it must reach the tree
        try:
            self._ns_add(self.ns_lan)
            self._ns_add(self.ns_srv)
            _run("ip", "-n", self.ns_lan, "link", "add", "br0", "type", "bridge",
                 "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0")
            _run("ip", "-n", self.ns_lan, "link", "set", "br0", "up")
            self._attach(self.ns_srv, "srv", SERVER_IP, SERVER_IP6)
            if self.mode == "proxy":
                self._ns_add(self.ns_rtr)
                self._attach(self.ns_rtr, "rtr", ROUTER_IP, ROUTER_IP6)
            self.tgt = tgt_mod.Tgtd(self.workdir / "tgt", SERVER_IP, netns=self.ns_srv).start()
            if self.mode == "proxy":
                self.router = Dnsmasq.start(self.ns_rtr, self.workdir / "dnsmasq-router", _dnsmasq_conf([
                    f"interface={SERVER_IF}",
                    "bind-interfaces",
                    "no-ping",
                    f"dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},{NETMASK},1h",
                    f"dhcp-option=option:router,{ROUTER_IP}",
                    "dhcp-authoritative",
                    "enable-ra",
                    f"dhcp-range={ULA_PREFIX},ra-only,64",
                ], self.dnsmasq_user))
        except BaseException:
            self.close()
            raise
        return self

    def add_tap(self) -> str:
        """A new tap on the bridge (in the LAN namespace); QEMU opens it by name."""
        name = f"tap{self._taps}"
        self._taps += 1
        _run("ip", "-n", self.ns_lan, "tuntap", "add", "dev", name, "mode", "tap")
        _run("ip", "-n", self.ns_lan, "link", "set", name, "master", "br0", "up")
        return name

    # ---- services -----------------------------------------------------------------------
    def serve(self, tree: PxeTree, targets: list[tgt_mod.Target] | tuple | None = None,
              extra_lines: list[str] | tuple[str, ...] = ()) -> Dnsmasq:
        """Start the PXE server's dnsmasq on ``tree``; configure tgtd with ``targets`` unless None
        (e.g. when :func:`tests.support.tgt_bridge.configure` already did).

        The main file written by the lab holds only ``port=0``, ``log-dhcp``, the interface,
        (full mode) the RA lines, ``extra_lines`` and ``conf-dir=<tree.conf_dir>,*.conf``; the
        returned :class:`tests.support.dnsmasq.Dnsmasq` offers ``restart_command`` /
        ``reload_command`` strings a PXE-server config (netprov over SSH) can run."""
        self.tree = tree
        # dnsmasq drops to its own user after reading its conf files: the TFTP root and the
        # hostsdir (re-read on SIGHUP) must be reachable by that user (0755 dirs, 0644 files).
        for d in (tree.tftp_root, tree.conf_dir, tree.hosts_dir):
            d.chmod(0o755)
        lines = [f"interface={SERVER_IF}", "bind-interfaces"]
        if self.mode == "full":
            # no-ping: dnsmasq would ping each new dynamic address for ~3 s before offering it;
            # nobody else lives on the lab's LAN. Fixed (dhcp-host) addresses are not pinged anyway.
            lines += ["no-ping", "enable-ra", f"dhcp-range={ULA_PREFIX},ra-only,64"]
        lines += list(extra_lines)
        lines.append(f"conf-dir={tree.conf_dir},*.conf")
        if self.dnsmasq:
            self.dnsmasq.stop()
        self.dnsmasq = Dnsmasq.start(self.ns_srv, self.workdir / "dnsmasq-pxe",
                                     _dnsmasq_conf(lines, self.dnsmasq_user))
        assert self.tgt is not None
        if targets is not None:
            self.tgt.configure(list(targets))
        return self.dnsmasq

    def sighup_dnsmasq(self) -> None:
        assert self.dnsmasq is not None
        self.dnsmasq.sighup()

    def restart_dnsmasq(self) -> None:
        assert self.dnsmasq is not None
        self.dnsmasq.restart()

    def leases(self) -> dict[str, str]:
        """MAC -> IPv4 from whichever dnsmasq hands out addresses in this mode."""
        d = self.router if self.mode == "proxy" else self.dnsmasq
        return read_leases(d.lease_file) if d else {}

    def vm(self, name: str, mac: str, firmware: str = "bios", **kw):
        """Start a VM on a new tap (see :class:`tests.support.qemu.Vm`)."""
        from tests.support.qemu import Vm
        vm = Vm(self, name=name, mac=mac, firmware=firmware, **kw).start()
        self.vms.append(vm)
        return vm

    def diagnostics(self, tail: int = 3000) -> str:
        """Log tails of everything in the lab, for assertion messages."""
        parts = []
        if self.dnsmasq:
            parts.append(f"--- dnsmasq (pxe) log ---\n{self.dnsmasq.log()[-tail:]}")
        if self.router:
            parts.append(f"--- dnsmasq (router) log ---\n{self.router.log()[-tail:]}")
        if self.tgt:
            parts.append(f"--- tgtd log ---\n{self.tgt.log_text()[-tail:]}")
        for vm in self.vms:
            parts.append(f"--- serial {vm.name} ---\n{vm.serial_text()[-tail:]}")
        return "\n".join(parts)

    # ---- teardown -----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for vm in self.vms:
            try:
                vm.stop()
            except Exception:  # noqa: BLE001, S110 - cleanup goes on whatever failed
                pass
        for d in (self.dnsmasq, self.router):
            if d:
                try:
                    d.stop()
                except Exception:  # noqa: BLE001, S110 - cleanup goes on whatever failed
                    pass
        if self.tgt:
            try:
                self.tgt.stop()
            except Exception:  # noqa: BLE001, S110 - cleanup goes on whatever failed
                pass
        for ns in reversed(self._namespaces):
            _delete_ns(ns)
            unregister_netns(ns)
        self._namespaces.clear()
        _LIVE_LABS.discard(self)

    def __enter__(self) -> BootLab:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
