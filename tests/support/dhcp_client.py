"""A minimal DHCP client for tests: send one DHCPDISCOVER, return the OFFER.

Stdlib only (an AF_PACKET raw socket), so it starts fast and runs anywhere as
root. Run it inside a network namespace with ``discover(netns, iface, mac, …)``
(which runs this file as a subprocess under ``ip netns exec``) or call
``discover_here`` when already inside one. The client needs no address on its
interface: it sends from 0.0.0.0 with the broadcast flag set, so the server
broadcasts its answer. Any MAC can be used as chaddr (and source MAC), which is
how tests play several machines.

PXE/iPXE knobs: ``arch`` (option 93, e.g. 0 BIOS, 7/9 x64 UEFI), ``pxe`` (adds
option 60 ``PXEClient:Arch:…`` and 94/97), ``user_class`` (option 77, e.g. "iPXE"),
``ipxe_features`` (option 175 sub-options, e.g. {17: b"\\x01"} for iSCSI).

CLI: ``python dhcp_client.py --iface veth0 --mac 52:54:00:00:00:01 [--arch 7] [--user-class iPXE]
[--ipxe] [--timeout 3]`` prints the offer as JSON (``null`` when none came).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

__all__ = ["Offer", "discover", "discover_here"]

ETH_P_IP = 0x0800
MAGIC = b"\x63\x82\x53\x63"


@dataclass
class Offer:
    message_type: int            # 2 = OFFER
    yiaddr: str
    siaddr: str
    server_id: str | None
    file: str                    # BOOTP file field (dhcp-boot)
    sname: str
    options: dict = field(default_factory=dict)   # code (str) -> hex string

    def option(self, code: int) -> bytes | None:
        v = self.options.get(str(code))
        return bytes.fromhex(v) if v is not None else None

    @property
    def bootfile(self) -> str:
        """The boot file name: BOOTP file field, else option 67."""
        if self.file:
            return self.file
        v = self.option(67)
        return v.rstrip(b"\0").decode(errors="replace") if v else ""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def build_discover(mac: str, xid: int, *, arch: int | None = None, pxe: bool = False,
                   user_class: str | None = None, ipxe_features: dict[int, bytes] | None = None,
                   hostname: str | None = None) -> bytes:
    """The BOOTP/DHCP payload of a DISCOVER."""
    chaddr = _mac_bytes(mac)
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr.ljust(16, b"\0"),
                        b"\0" * 64, b"\0" * 128)
    opts = bytearray(MAGIC)

    def opt(code: int, value: bytes) -> None:
        opts.extend([code, len(value)])
        opts.extend(value)

    opt(53, b"\x01")
    opt(55, bytes([1, 3, 6, 12, 15, 28, 43, 60, 66, 67, 93, 97, 175, 203]))
    if arch is not None:
        opt(93, struct.pack("!H", arch))
    if pxe:
        opt(60, f"PXEClient:Arch:{arch or 0:05d}:UNDI:002001".encode())
        opt(94, b"\x01\x02\x01")
        opt(97, b"\x00" + chaddr.rjust(16, b"\x11"))
    if user_class:
        opt(77, user_class.encode())
    if ipxe_features is not None:
        sub = bytearray()
        for code, value in sorted(ipxe_features.items()):
            sub.extend([code, len(value)])
            sub.extend(value)
        opt(175, bytes(sub))
    if hostname:
        opt(12, hostname.encode())
    opts.append(255)
    return bootp + bytes(opts)


def _frame(mac: str, payload: bytes) -> bytes:
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, random.randint(0, 0xFFFF), 0, 64, 17, 0,
                         b"\0" * 4, b"\xff" * 4)
    ip_hdr = ip_hdr[:10] + struct.pack("!H", _checksum(ip_hdr)) + ip_hdr[12:]
    return b"\xff" * 6 + _mac_bytes(mac) + struct.pack("!H", ETH_P_IP) + ip_hdr + udp


def parse_reply(frame: bytes, xid: int) -> Offer | None:
    if len(frame) < 14 + 20 + 8 + 240 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        return None
    udp = ip[ihl:]
    sport, dport = struct.unpack("!HH", udp[:4])
    if dport != 68 or sport != 67:
        return None
    b = udp[8:]
    if b[0] != 2 or struct.unpack("!I", b[4:8])[0] != xid or b[236:240] != MAGIC:
        return None
    yiaddr, siaddr = socket.inet_ntoa(b[16:20]), socket.inet_ntoa(b[20:24])
    sname = b[44:108].split(b"\0", 1)[0].decode(errors="replace")
    file = b[108:236].split(b"\0", 1)[0].decode(errors="replace")
    options: dict[str, str] = {}
    i = 240
    while i < len(b):
        code = b[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        n = b[i + 1]
        val = b[i + 2:i + 2 + n]
        options[str(code)] = options.get(str(code), "") + val.hex()
        i += 2 + n
    mt = int(options.get("53", "00"), 16)
    sid = socket.inet_ntoa(bytes.fromhex(options["54"])) if "54" in options else None
    return Offer(mt, yiaddr, siaddr, sid, file, sname, options)


def discover_here(iface: str, mac: str, *, timeout: float = 3.0, retries: int = 2, **kw) -> Offer | None:
    """Send a DISCOVER on ``iface`` (in the current namespace) and wait for the OFFER;
    resend (new xid) every timeout/(retries+1) seconds, accept an answer to any of them."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP)) as s:
        s.bind((iface, 0))
        xids: list[int] = []
        end = time.monotonic() + timeout
        step = timeout / (retries + 1)
        next_send = time.monotonic()
        while (now := time.monotonic()) < end:
            if now >= next_send:
                xid = random.randint(1, 0xFFFFFFFF)
                xids.append(xid)
                s.send(_frame(mac, build_discover(mac, xid, **kw)))
                next_send = now + step
            s.settimeout(max(0.01, min(next_send, end) - time.monotonic()))
            try:
                frame = s.recv(4096)
            except TimeoutError:
                continue
            for xid in xids:
                offer = parse_reply(frame, xid)
                if offer is not None:
                    return offer
    return None


def discover(netns: str, iface: str, mac: str, *, timeout: float = 3.0, arch: int | None = None,
             pxe: bool = False, user_class: str | None = None, ipxe: bool = False,
             hostname: str | None = None) -> Offer | None:
    """Run the client inside ``netns`` (a subprocess under ``ip netns exec``); return the OFFER or None.
    ``ipxe=True`` adds option 175 with the iSCSI feature (as iPXE builds with SAN support send)."""
    argv = ["ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__),
            "--iface", iface, "--mac", mac, "--timeout", str(timeout)]
    if arch is not None:
        argv += ["--arch", str(arch)]
    if pxe:
        argv.append("--pxe")
    if user_class:
        argv += ["--user-class", user_class]
    if ipxe:
        argv.append("--ipxe")
    if hostname:
        argv += ["--hostname", hostname]
    res = subprocess.run(argv, capture_output=True, check=False, text=True, timeout=timeout + 10)
    if res.returncode != 0:
        raise RuntimeError(f"dhcp client failed: {res.stderr.strip()}")
    data = json.loads(res.stdout)
    return Offer(**data) if data else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--mac", required=True)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--arch", type=int)
    ap.add_argument("--pxe", action="store_true")
    ap.add_argument("--user-class")
    ap.add_argument("--ipxe", action="store_true")
    ap.add_argument("--hostname")
    a = ap.parse_args(argv)
    offer = discover_here(a.iface, a.mac, timeout=a.timeout, arch=a.arch, pxe=a.pxe or a.arch is not None,
                          user_class=a.user_class, ipxe_features={17: b"\x01"} if a.ipxe else None,
                          hostname=a.hostname)
    print(json.dumps(asdict(offer) if offer else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
