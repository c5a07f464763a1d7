"""How to reach one PXE server and drive its dnsmasq: ``PxeSettings``, plain values only.

It holds no connection and runs nothing; ``boot_host.PxeHost`` takes these settings and does the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netprov.core.bootfiles import Root
from netprov.core.dnsmasq import SECRET_GROUP


@dataclass(frozen=True)
class PxeSettings:
    """How to reach one PXE server and drive its dnsmasq. Plain values only.

    Commands are run by ``sh -c`` on the server; with ``sudo=True`` and a non-root
    user they are wrapped as ``sudo -n sh -c '<command>'``. ``test_command`` may use
    ``{conf}`` (the generated test config) and ``{dnsmasq}``.
    """

    host: str
    roots: Mapping[Root, str]
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    ssh_config: str | None = None
    dnsmasq: str = "dnsmasq"
    test_command: str = "{dnsmasq} --test --conf-file={conf}"
    reload_command: str = "systemctl reload dnsmasq"
    restart_command: str = "systemctl restart dnsmasq"
    sudo: bool = False
    lock_path: str = "/run/lock/netprov.lock"
    secret_group: str = SECRET_GROUP
    flavor: str = "dnsmasq"            # "pihole": the read also checks Pi-hole reads the drop-in (docs/pihole.md)
    pihole_toml: str = "/etc/pihole/pihole.toml"
    server: str | None = None          # the BootFile.server name; defaults to host
    connect_timeout: float = 15.0      # connecting + logging in; also how long an unanswered peer is kept
    command_timeout: float = 300.0     # the deadline of each later step (read, lock, upload, commit)
    keepalive: float | None = None     # SSH keepalive interval; default min(10, connect_timeout / 3)

    @property
    def dnsmasq_dir_hint(self) -> str:
        return self.roots.get(Root.DNSMASQ, "/etc/dnsmasq.d") if self.roots else "/etc/dnsmasq.d"

    @property
    def server_name(self) -> str:
        return self.server or self.host
