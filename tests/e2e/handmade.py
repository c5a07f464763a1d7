"""Hand-made PXE configuration for the boot lab (phase 1): what netprov's renderer will produce.

Written the way /work/shared/docs/pxe-facts.md section 6.1 and E describe: BIOS arch 0 ->
undionly.kpxe, UEFI arch 7/9 -> snponly.efi (non-iPXE clients only); iPXE clients (user class
``iPXE``) -> boot.ipxe; boot.ipxe chains ``${mac:hexhyp}.ipxe`` relative to its own URI and gives
unknown MACs a message + fallback; per-machine scripts set initiator-iqn (+ CHAP), then sanboot
the target with one retry and a readable failure message; host lines live in dhcp-hostsdir.

Public API: :class:`Machine`, :func:`write_tree`, :func:`add_machine`, :func:`machine_script`,
:func:`boot_script`, :func:`dropin`, :func:`host_line`, :data:`UNKNOWN_MESSAGE`,
:data:`FAILED_MESSAGE`, :data:`IQN_BASE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support import bootlab
from tests.support.bootlab import PxeTree
from tests.support.tgt import Target

IQN_BASE = "iqn.2005-10.org.freenas.ctl"
INITIATOR_BASE = "iqn.2026-11.lab.netprov"
UNKNOWN_MESSAGE = "NETPROV-UNKNOWN-MACHINE"
FAILED_MESSAGE = "NETPROV-BOOT-FAILED"
# snponly.efi rather than ipxe.efi: it drives the NIC through the firmware's SNP and starts in
# ~0.1 s under TCG, where ipxe.efi's native-driver probing takes ~4 s (both boot).
EFI_BINARY = "snponly.efi"


@dataclass
class Machine:
    name: str
    mac: str
    ip: str | None = None                   # fixed address (full-DHCP mode)
    chap: tuple[str, str] | None = None     # (user, secret) the machine presents
    target_of: str | None = None            # boot someone else's target (case 6); default: own

    @property
    def initiator(self) -> str:
        return f"{INITIATOR_BASE}:{self.name}"

    @property
    def target_iqn(self) -> str:
        return f"{IQN_BASE}:{self.target_of or self.name}"


def dropin(tree: PxeTree, mode: str) -> str:
    lines = [
        "# hand-made netprov-style drop-in",
        "enable-tftp",
        f"tftp-root={tree.tftp_root}",
        f"dhcp-hostsdir={tree.hosts_dir}",
        "dhcp-match=set:bios,option:client-arch,0",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-userclass=set:ipxe,iPXE",
    ]
    if mode == "full":
        lo, hi = bootlab.DHCP_RANGE
        lines += [
            f"dhcp-range={lo},{hi},{bootlab.NETMASK},1h",
            f"dhcp-boot=tag:bios,undionly.kpxe,,{bootlab.SERVER_IP}",
            f"dhcp-boot=tag:efi64,{EFI_BINARY},,{bootlab.SERVER_IP}",
            # written last: wins for iPXE clients (which also carry an arch tag)
            f"dhcp-boot=tag:ipxe,boot.ipxe,,{bootlab.SERVER_IP}",
            # iPXE's "no-pxedhcp" (175.176): no ProxyDHCP offer will come, so iPXE requests the
            # first offer at once instead of waiting ~2-3 s for one (full-DHCP mode only).
            "dhcp-option=tag:ipxe,encap:175,176,1",
        ]
    else:
        lines += [
            f"dhcp-range={bootlab.SUBNET}.0,proxy,{bootlab.NETMASK}",
            'pxe-service=tag:!ipxe,x86PC,"netprov (BIOS)",undionly.kpxe',
            f'pxe-service=tag:!ipxe,x86-64_EFI,"netprov (UEFI)",{EFI_BINARY}',
            f'pxe-service=tag:!ipxe,BC_EFI,"netprov (UEFI)",{EFI_BINARY}',
            'pxe-service=tag:ipxe,x86PC,"netprov (iPXE)",boot.ipxe',
            'pxe-service=tag:ipxe,x86-64_EFI,"netprov (iPXE)",boot.ipxe',
            'pxe-service=tag:ipxe,BC_EFI,"netprov (iPXE)",boot.ipxe',
            "dhcp-boot=tag:ipxe,boot.ipxe",
        ]
    return "\n".join(lines) + "\n"


def boot_script() -> str:
    return f"""#!ipxe
echo netprov: boot.ipxe for ${{mac}} (${{platform}})
imgfetch --name machine ${{mac:hexhyp}}.ipxe || goto unknown
imgexec machine || goto ended
:unknown
echo {UNKNOWN_MESSAGE} ${{mac}} is not in the inventory
echo netprov: falling back to the next boot device
sleep 2
exit 1
:ended
echo netprov: the machine script ended without booting
exit 1
"""


def machine_script(m: Machine, server_ip: str = bootlab.SERVER_IP, lun: int = 1) -> str:
    uri = f"iscsi:{server_ip}:::{lun:x}:{m.target_iqn}"
    chap = ""
    if m.chap:
        chap = f"set username {m.chap[0]}\nset password {m.chap[1]}\n"
    return f"""#!ipxe
echo netprov: {m.name} booting from {uri}
set initiator-iqn {m.initiator}
{chap}sanboot {uri} || goto retry
:retry
echo netprov: {m.name}: first attempt failed, retrying in 1 s
sleep 1
sanboot {uri} || goto failed
:failed
echo {FAILED_MESSAGE} {m.name}: could not boot from {uri}
echo netprov: check the CHAP secret and the target's initiator group
exit 1
"""


def host_line(m: Machine) -> str:
    parts = [m.mac]
    if m.ip:
        parts.append(m.ip)
    parts.append(m.name)
    return ",".join(parts) + "\n"


def add_machine(tree: PxeTree, m: Machine) -> None:
    """Per-machine script + host file (what `netprov apply` adds for a new machine)."""
    tree.write(f"{m.mac.lower().replace(':', '-')}.ipxe", machine_script(m))
    tree.write(m.name, host_line(m), where="hosts")


def write_tree(tree: PxeTree, mode: str, machines: list[Machine]) -> None:
    tree.install_ipxe_binaries()
    tree.write("netprov.conf", dropin(tree, mode), where="conf")
    tree.write("boot.ipxe", boot_script())
    for m in machines:
        add_machine(tree, m)


def target_for(m: Machine, backing: Path, chap: tuple[str, str] | None = None,
               initiators: tuple[str, ...] | None = None) -> Target:
    """The target serving machine ``m``'s disk: bound to ``m``'s initiator, CHAP as given."""
    return Target(iqn=f"{IQN_BASE}:{m.name}", backing=backing, lun=1,
                  initiators=(m.initiator,) if initiators is None else initiators, chap=chap)
