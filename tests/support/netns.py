"""Network namespaces and veth pairs for tests, always cleaned up.

    with Lab.create() as lab:                  # two namespaces joined by a veth pair
        lab.server_ns, lab.server_if, lab.server_ip    # "np-s-1a2b3c", "veth0", "10.99.<n>.1"
        lab.client_ns, lab.client_if                   # "np-c-1a2b3c", "veth0" (no address)
        lab.subnet                                     # "10.99.<n>"

Names are ``np-`` plus a random suffix; addresses are in 10.99.<n>.0/24 and exist
only inside the namespaces. ``Netns``/``veth_pair`` are the building blocks.
Deleting a namespace also deletes the veth ends inside it; processes still inside
must be stopped by the caller first (``Netns.pids()`` lists them).
"""

from __future__ import annotations

import random
import secrets
import subprocess
from dataclasses import dataclass
from typing import Self

from tests.support import register_netns, require_binary, require_root, unregister_netns

__all__ = ["Lab", "Netns", "run", "veth_pair"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, check=False, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res


@dataclass
class Netns:
    name: str

    @classmethod
    def create(cls, prefix: str = "np-") -> Netns:
        require_root()
        require_binary("ip")
        if not prefix.startswith("np-"):
            raise ValueError("test namespaces are named np-…")
        name = f"{prefix}{secrets.token_hex(3)}"
        run("ip", "netns", "add", name)
        register_netns(name)
        ns = cls(name)
        ns.exec("ip", "link", "set", "lo", "up")
        return ns

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.name, *args, check=check)

    def cmd(self, *args: str) -> list[str]:
        """argv running ``args`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def pids(self) -> list[int]:
        res = run("ip", "netns", "pids", self.name, check=False)
        return [int(p) for p in res.stdout.split()]

    def delete(self) -> None:
        run("ip", "netns", "del", self.name, check=False)
        unregister_netns(self.name)


def veth_pair(a: Netns, b: Netns, *, a_if: str = "veth0", b_if: str = "veth0",
              a_addr: str | None = None, b_addr: str | None = None) -> None:
    """Create a veth pair with one end in each namespace (renamed to a_if/b_if) and bring both up."""
    tag = secrets.token_hex(3)
    ta, tb = f"npa{tag}", f"npb{tag}"
    run("ip", "link", "add", ta, "type", "veth", "peer", "name", tb)
    try:
        run("ip", "link", "set", ta, "netns", a.name)
        run("ip", "link", "set", tb, "netns", b.name)
    except RuntimeError:
        run("ip", "link", "del", ta, check=False)
        raise
    for ns, tmp, name, addr in ((a, ta, a_if, a_addr), (b, tb, b_if, b_addr)):
        ns.exec("ip", "link", "set", tmp, "name", name)
        if addr:
            ns.exec("ip", "addr", "add", addr, "dev", name)
        ns.exec("ip", "link", "set", name, "up")


@dataclass
class Lab:
    """A server namespace and a client namespace on one 10.99.<n>.0/24 link."""

    server: Netns
    client: Netns
    subnet: str
    server_if: str = "veth0"
    client_if: str = "veth0"

    @property
    def server_ns(self) -> str:
        return self.server.name

    @property
    def client_ns(self) -> str:
        return self.client.name

    @property
    def server_ip(self) -> str:
        return f"{self.subnet}.1"

    @classmethod
    def create(cls) -> Lab:
        subnet = f"10.99.{random.randint(1, 254)}"
        suffix = secrets.token_hex(2)
        server = Netns.create(f"np-s{suffix}-")
        try:
            client = Netns.create(f"np-c{suffix}-")
        except Exception:
            server.delete()
            raise
        lab = cls(server, client, subnet)
        try:
            veth_pair(server, client, a_addr=f"{subnet}.1/24")
        except Exception:
            lab.delete()
            raise
        return lab

    def delete(self) -> None:
        self.client.delete()
        self.server.delete()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()
