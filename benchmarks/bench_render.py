"""Validate + render a generated N-machine inventory; prints wall time and peak memory.

Usage: python benchmarks/bench_render.py [N ...]   (default: 1000 10000)
"""

from __future__ import annotations

import sys
import time
import tracemalloc


def make_inventory(n: int) -> str:
    lines = [
        "version: 1",
        "storage:",
        "  nas: {url: wss://nas.lan/api/current, api_key_env: NAS_KEY, parent: tank/netboot, portal: 10.0.0.10}",
        "pxe_servers:",
        "  pxe:",
        "    ssh: {host: pxe.lan}",
        "    mode: dhcp",
        "    interface: eth0",
        "    address: 10.0.0.5",
        "    subnet: 10.0.0.0/16",
        "    range: {start: 10.0.200.1, end: 10.0.250.254}",
        "defaults: {storage: nas, pxe_server: pxe, disk: {size: 32G, sparse: true}}",
        "machines:",
    ]
    for i in range(n):
        mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        ip = f"10.0.{1 + i // 250}.{1 + i % 250}"
        fw = "uefi" if i % 3 == 0 else "bios"
        lines.append(f"  node{i:05d}: {{mac: '{mac}', ip: {ip}, firmware: {fw}}}")
    return "\n".join(lines) + "\n"


def bench(n: int, repeat: int = 3) -> None:
    """Best-of-``repeat`` wall times (no tracing), then one traced run for peak Python memory."""
    from netprov.core.inventory_load import parse_inventory
    from netprov.core.boot_render import Renderer

    text = make_inventory(n)
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        t0 = time.perf_counter()
        loaded = parse_inventory(text, f"<{n} machines>")
        t1 = time.perf_counter()
        files = Renderer().render(loaded, {})
        t2 = time.perf_counter()
        if (t2 - t0) < sum(best):
            best = (t1 - t0, t2 - t1)
    tracemalloc.start()
    Renderer().render(parse_inventory(text, "traced"), {})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    v, r = best
    print(f"| {n:>6} | {v:7.3f} s | {r:7.3f} s | {v + r:7.3f} s | {len(files):>6} | {peak / 2**20:7.1f} MiB |")


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print("| machines | validate (best of 3) | render | total | files | peak Python memory (tracemalloc run) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        bench(n)


if __name__ == "__main__":
    main()
