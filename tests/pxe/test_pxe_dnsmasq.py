"""Push + activation against a real dnsmasq in a network namespace, checked with a DHCP client.

The PXE server is this machine over SSH (sshd on 127.0.0.1); its dnsmasq runs in a
namespace with conf-dir = the DNSMASQ root and dhcp-hostsdir = the HOSTS root, and is
restarted / SIGHUPed by netprov through the commands in PxeSettings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import Activation, activation_of
from netprov.errors import PushError
from tests.pxe.conftest import plan_on
from tests.support.dhcp_client import discover

SERVER = "pxe1"
MAC = "52:54:00:aa:bb:01"
MAC2 = "52:54:00:aa:bb:02"


def conf(body: str, path: str = "netprov.conf") -> BootFile:
    return BootFile(SERVER, Root.DNSMASQ, path, f"# Managed by netprov\n{body}\n".encode(), Kind.CONFIG)


def hostfile(body: str, path: str = "nodes") -> BootFile:
    return BootFile(SERVER, Root.HOSTS, path, f"# Managed by netprov\n{body}\n".encode(), Kind.HOSTS)


def offer(env, mac=MAC, **kw):
    o = discover(env.lab.client_ns, env.lab.client_if, mac, **kw)
    assert o is not None, f"no DHCP answer; dnsmasq log:\n{env.dm.log()[-2000:]}"
    return o


def push(env, files):
    with env.host() as h:
        plan = plan_on(h, files)
        return plan, h.apply(plan)


def test_hosts_change_uses_sighup_and_is_visible(dhcp_env):
    env = dhcp_env
    base = conf("dhcp-boot=first.0")
    plan, rep = push(env, [base, hostfile(f"{MAC},{env.lab.subnet}.42")])
    assert activation_of(plan) == Activation.RESTART          # first push brings the drop-in
    pid = env.dm.pid
    assert offer(env).yiaddr == f"{env.lab.subnet}.42"

    marker = "read " + str(Path(env.roots[Root.HOSTS], "nodes"))
    seen = env.dm.log_count(marker)
    plan, rep = push(env, [base, hostfile(f"{MAC},{env.lab.subnet}.43\n{MAC2},{env.lab.subnet}.44")])
    assert activation_of(plan) == Activation.SIGHUP and rep.activation == Activation.SIGHUP
    assert env.dm.pid == pid, "a hosts-only change must not restart dnsmasq"
    # inotify may read the renamed file too; the SIGHUP adds one more read on top.
    assert env.dm.wait_log_count(marker, seen + 1)
    o = offer(env)
    assert o.yiaddr == f"{env.lab.subnet}.43" and o.bootfile == "first.0"
    assert offer(env, MAC2).yiaddr == f"{env.lab.subnet}.44"


def test_config_change_restarts_and_is_visible(dhcp_env):
    env = dhcp_env
    push(env, [conf("dhcp-boot=first.0")])
    pid1 = env.dm.pid
    assert offer(env).bootfile == "first.0"
    plan, _rep = push(env, [conf("dhcp-boot=second.0")])
    assert activation_of(plan) == Activation.RESTART
    assert env.dm.pid and env.dm.pid != pid1
    assert offer(env).bootfile == "second.0"


def test_config_failing_test_is_never_activated(dhcp_env):
    env = dhcp_env
    push(env, [conf("dhcp-boot=good.0")])
    pid = env.dm.pid
    live = Path(env.roots[Root.DNSMASQ], "netprov.conf")
    old = live.read_bytes()
    with pytest.raises(PushError, match=r"(?s)rejected.*bad dhcp-range at line 3 of .*netprov.conf \(new version\)"):
        push(env, [conf("dhcp-boot=good.0\ndhcp-range=this-is-not-a-range")])
    assert live.read_bytes() == old
    assert env.dm.pid == pid
    assert offer(env).bootfile == "good.0"


def test_failed_restart_rolls_back_and_dhcp_keeps_running(dhcp_env):
    env = dhcp_env
    push(env, [conf("dhcp-boot=good.0")])
    live = Path(env.roots[Root.DNSMASQ], "netprov.conf")
    old = live.read_bytes()
    # Passes `dnsmasq --test` (it does not check that tftp-root exists) but fails at start (exit 3).
    bad = conf("dhcp-boot=bad.0\nenable-tftp\ntftp-root=/nonexistent/netprov-test")
    with pytest.raises(PushError, match="rolled back.*OLD configuration") as ei:
        push(env, [bad])
    assert "tftp" in str(ei.value).lower()
    assert live.read_bytes() == old
    assert env.dm.running()
    assert offer(env).bootfile == "good.0"
    assert not list(Path(env.roots[Root.DNSMASQ]).glob(".netprov.*"))
    # The plan still shows the change (nothing half-applied), and the lock is free again.
    with env.host() as h:
        assert activation_of(plan_on(h, [bad])) == Activation.RESTART


def test_dot_files_in_hostsdir_are_ignored_by_dnsmasq(dhcp_env):
    """netprov's temporaries/backups live in the hostsdir for a moment: dnsmasq must skip them,
    even when SIGHUPed (by anyone) while they exist."""
    env = dhcp_env
    push(env, [hostfile(f"{MAC},{env.lab.subnet}.42")])
    Path(env.roots[Root.HOSTS], ".netprov.0000.1.tmp").write_text(f"{MAC2},{env.lab.subnet}.77\n")
    Path(env.roots[Root.HOSTS], "nodes~").write_text(f"{MAC2},{env.lab.subnet}.78\n")
    marker = "read " + str(Path(env.roots[Root.HOSTS], "nodes"))
    seen = env.dm.log_count(marker)
    env.dm.sighup()
    assert env.dm.wait_log_count(marker, seen + 1), "dnsmasq did not handle the SIGHUP"
    assert offer(env).yiaddr == f"{env.lab.subnet}.42"       # after the SIGHUP was handled
    assert offer(env, MAC2).yiaddr not in (f"{env.lab.subnet}.77", f"{env.lab.subnet}.78")


def test_dhcp_client_arch_and_ipxe_options_reach_dnsmasq_tags(dhcp_env):
    """The shared DHCP client's option 93 / 77 / 175 are seen by dnsmasq's tag rules."""
    env = dhcp_env
    push(env, [conf("\n".join([
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe-iscsi,175,17",
        "dhcp-boot=undionly.kpxe",
        "dhcp-boot=tag:efi64,ipxe.efi",
        "dhcp-boot=tag:ipxe,boot.ipxe",
        "dhcp-boot=tag:ipxe-iscsi,tag:ipxe,boot-san.ipxe",
    ]))])
    assert offer(env, arch=0).bootfile == "undionly.kpxe"
    assert offer(env, arch=7).bootfile == "ipxe.efi"
    assert offer(env, arch=9).bootfile == "ipxe.efi"
    assert offer(env, arch=7, user_class="iPXE").bootfile == "boot.ipxe"
    assert offer(env, arch=7, user_class="iPXE", ipxe=True).bootfile == "boot-san.ipxe"
