"""PXE faults against a real sshd: connections cut or silenced at each step, a server that lacks
what apply needs, symlinked roots, and server output that carries CHAP secrets.

Each test that can hang on a broken build is bounded twice: pytest-timeout, and its own
step deadlines (a subprocess timeout for the network-namespace ones).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.adapters.pxe.ssh import SshConnection, connect
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.errors import PathConfinementError, PushError
from tests.pxe.conftest import SERVER, has_changes, make_roots, plan_on
from tests.support.cli_lab import create_parent, ssh_server_inventory
from tests.support.sshd import SshServer

HDR = b"#!ipxe\n# Managed by netprov\n"
ROOT = Path(__file__).resolve().parents[2]


def script(path: str, body: str = "chain boot.ipxe", **kw) -> BootFile:
    return BootFile(SERVER, Root.TFTP, path, HDR + body.encode() + b"\n", Kind.SCRIPT, **kw)


def conf(path: str, body: str) -> BootFile:
    return BootFile(SERVER, Root.DNSMASQ, path, b"# Managed by netprov\n" + body.encode() + b"\n", Kind.CONFIG)


def live_files(*dirs: str) -> dict[str, bytes]:
    out = {}
    for d in dirs:
        for p in Path(d).rglob("*"):
            if p.is_file() and not p.name.startswith(".netprov"):
                out[str(p)] = p.read_bytes()
    return out


def _children(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def kill_sessions(srv: SshServer) -> int:
    """SIGKILL the per-connection sshd processes of ``srv`` (not the listener, not the commands
    they started): every open connection to it drops at once. Returns how many were killed."""
    n = 0
    for pid in _children(srv.pid):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("sshd"):
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
    return n


@pytest.fixture
def own_sshd(tmp_path):
    """An sshd of this test's own (its sessions may be killed without touching other tests)."""
    srv = SshServer.start(tmp_path / "own-sshd")
    yield srv
    srv.stop()


def own_settings(srv: SshServer, tmp_path: Path, **kw) -> PxeSettings:
    log = tmp_path / "activations.log"
    base = dict(server=SERVER, roots=make_roots(tmp_path / "srv"), lock_path=str(tmp_path / "netprov.lock"),
                dnsmasq="/usr/sbin/dnsmasq", test_command="true",
                restart_command=f"echo restart >> {log}", reload_command=f"echo sighup >> {log}",
                connect_timeout=5, command_timeout=20)
    return PxeSettings(**(base | srv.settings_kwargs() | kw))


class CuttingConnection(SshConnection):
    """A real SSH connection whose server side is killed while a command containing ``marker``
    runs (as a dropped link or a crashed sshd would)."""

    srv: SshServer
    marker: str
    cuts: int = 0

    def open_channel(self, command, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN201
        if self.marker not in command:
            return super().open_channel(command, *args, **kw)
        # The server starts the command half a second late, so the cut lands while it runs.
        ch = super().open_channel("sleep 0.5; " + command, *args, **kw)
        self.cuts += kill_sessions(self.srv)
        return ch


def cutting_host(srv: SshServer, settings: PxeSettings, marker: str) -> tuple[PxeHost, CuttingConnection]:
    conn = connect(**srv.settings_kwargs())
    conn.__class__ = CuttingConnection
    conn.srv, conn.marker = srv, marker
    return PxeHost(settings, connection=conn), conn


# ----------------------------------------------------------------------------- reads cut short


@pytest.mark.parametrize("marker", ["F|%s", "END|"], ids=["fetch-old-texts", "walk"])
def test_connection_cut_during_plan_read_is_one_line(own_sshd, tmp_path, marker):
    """Issue 10 item 7: a cut during plan's file read was `ValueError: subsection not found`."""
    settings = own_settings(own_sshd, tmp_path)
    with PxeHost(settings) as h:
        h.apply(plan_on(h, [script("a.ipxe", "echo one")]))
    host, conn = cutting_host(own_sshd, settings, marker)
    with host, pytest.raises(PushError) as ei:
        plan_on(host, [script("a.ipxe", "echo two")])      # differs: the old text is fetched for the diff
    assert conn.cuts, "the server side was not killed"
    msg = str(ei.value)
    assert "\n" not in msg and "nothing was changed" in msg and "reading files on pxe1" in msg


# ----------------------------------------------------------------------------- the lock


def test_connection_cut_while_taking_the_lock_says_so(own_sshd, tmp_path):
    """Was: "could not take the lock …: no answer (is flock(1) installed?)"."""
    settings = own_settings(own_sshd, tmp_path)
    host, conn = cutting_host(own_sshd, settings, "NETPROV-LOCK-OK")
    with host:
        plan = plan_on(host, [script("a.ipxe")])
        with pytest.raises(PushError) as ei:
            host.apply(plan)
    msg = str(ei.value)
    assert conn.cuts and "lost while taking the lock" in msg and "nothing was changed" in msg
    assert "flock" not in msg
    assert not Path(settings.roots[Root.TFTP], "a.ipxe").exists()


# ----------------------------------------------------------------------------- the commit


def test_commit_finished_although_the_connection_died(own_sshd, tmp_path):
    """The connection dies while dnsmasq restarts; the server-side commit goes on and finishes.
    netprov reconnects, sees it finished, and says so (was: "lost while committing" / "commit
    ended unexpectedly")."""
    started, release = tmp_path / "restart-started", tmp_path / "restart-release"
    settings = own_settings(own_sshd, tmp_path, restart_command=(
        f"touch {started}; i=0; while [ ! -e {release} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done"))
    cut = {}

    def cutter() -> None:
        for _ in range(400):                       # bounded: 20 s
            if started.exists():
                cut["n"] = kill_sessions(own_sshd)
                release.touch()
                return
            time.sleep(0.05)
    t = threading.Thread(target=cutter, daemon=True)
    with PxeHost(settings) as h:
        plan = plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0"), script("a.ipxe")])
        t.start()
        report = h.apply(plan)
    t.join(30)
    assert cut.get("n"), "the connection was not cut during the restart"
    assert "finished the commit" in report.output and "restarted" in report.output
    assert Path(settings.roots[Root.DNSMASQ], "netprov.conf").exists()
    with PxeHost(settings) as h:
        assert not has_changes(plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0"), script("a.ipxe")]))


def test_commit_past_its_deadline_is_reported_as_still_running(own_sshd, tmp_path):
    """A restart that hangs: the commit step's deadline ends the wait; netprov checks the server
    again and says the commit is still running there (not "ended unexpectedly")."""
    release = tmp_path / "restart-release"
    settings = own_settings(own_sshd, tmp_path, command_timeout=1, restart_command=(
        f"i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"))
    try:
        with PxeHost(settings) as h:
            with pytest.raises(PushError) as ei:
                h.apply(plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0")]))
        msg = str(ei.value)
        assert "no answer within 1 s" in msg and "still running" in msg and "run netprov plan" in msg
    finally:
        release.touch()
    # The server finishes on its own; a fresh plan then converges.
    status = Path(settings.lock_path + ".last")
    for _ in range(200):
        if status.exists() and status.read_text().split()[-1] == "done":
            break
        time.sleep(0.05)
    with PxeHost(replace(settings, command_timeout=20)) as h:
        assert not has_changes(plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0")]))


def test_lost_commit_that_never_started_says_live_files_are_unchanged(settings, tmp_path):
    """The answer is lost and the server holds no outcome for this commit (the script never
    arrived, or arrived cut short): netprov says so, after checking, instead of guessing."""
    from netprov.adapters.pxe.fileops import build_ops as _build_ops
    from netprov.core.fileplan import Activation

    with PxeHost(settings) as h:
        h.apply(plan_on(h, [script("a.ipxe", "echo one")]))          # an earlier apply's outcome is on file
        plan = plan_on(h, [script("a.ipxe", "echo two")])
        ops = _build_ops(plan, None, settings.roots, "feedbeef")
        with pytest.raises(PushError) as ei:
            h._after_lost_commit(ops, Activation.NONE, "the connection dropped")
    msg = str(ei.value)
    assert "the commit never started on pxe1" in msg and "the live files are unchanged" in msg
    assert Path(settings.roots[Root.TFTP], "a.ipxe").read_bytes().endswith(b"echo one\n")


def test_truncated_commit_script_changes_nothing(tmp_path):
    """The commit script is one compound command: cut anywhere in transit, sh runs none of it."""
    from netprov.adapters.pxe.fileops import build_ops as _build_ops
    from netprov.adapters.pxe.scripts import commit_script as _commit_script
    from netprov.core.fileplan import RemoteManifest, activation_of, plan_files

    roots = make_roots(tmp_path / "srv")
    for d in roots.values():
        os.makedirs(d)
    s = PxeSettings(host="h", server=SERVER, roots=roots, lock_path=str(tmp_path / "lock"),
                    restart_command="true", reload_command="true")
    plan = plan_files([script("a.ipxe"), script("b.ipxe")], RemoteManifest(SERVER, roots))
    ops = _build_ops(plan, RemoteManifest(SERVER, roots), roots, "cafe0001")
    for o in ops.writes:
        Path(o.tmp).write_bytes(o.content or b"")
    text = _commit_script(ops, activation_of(plan), s, "root")
    for cut in range(0, len(text) - 2, max(1, len(text) // 40)):
        res = subprocess.run(["sh", "-s"], input=text[:cut], text=True, capture_output=True, check=False)
        assert "NETPROV" not in res.stdout
        assert not Path(roots[Root.TFTP], "a.ipxe").exists() and not Path(roots[Root.TFTP], "b.ipxe").exists()
    res = subprocess.run(["sh", "-s"], input=text, text=True, capture_output=True, check=False)
    assert "NETPROV-DONE" in res.stdout and Path(roots[Root.TFTP], "b.ipxe").exists()


# ----------------------------------------------------------------------------- preflight


def sshd_with_path(tmp_path: Path, drop: tuple[str, ...] = (), replace_with: dict[str, str] | None = None
                   ) -> SshServer:
    """An sshd whose sessions run with a PATH holding this machine's commands, less ``drop``,
    with some replaced by small scripts (``replace_with``: name -> sh script body)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True)
    for name, body in (replace_with or {}).items():
        (bindir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bindir / name).chmod(0o755)
    for d in ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        for name in os.listdir(d):
            if name not in drop and not (bindir / name).exists():
                (bindir / name).symlink_to(os.path.join(d, name))
    return SshServer.start(tmp_path / "sshd",
                           extra_config=f'ForceCommand PATH={bindir} exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"')


@pytest.fixture(scope="module")
def no_flock_sshd(tmp_path_factory):
    """An sshd whose sessions run with a PATH holding every command of this machine but flock,
    and whose `stat` answers nonsense in a directory holding a file named GARBLE."""
    real_stat = subprocess.run(["sh", "-c", "command -v stat"], capture_output=True, text=True,
                               check=True).stdout.strip()
    srv = sshd_with_path(tmp_path_factory.mktemp("noflock"), drop=("flock",), replace_with={
        "stat": f"if [ -e ./GARBLE ]; then echo 'S|9z|-1|regular file|./boot.ipxe'; else exec {real_stat} \"$@\"; fi"})
    yield srv
    srv.stop()


def test_garbled_read_answer_is_one_line(no_flock_sshd, tmp_path):
    """A server whose `stat` answers nonsense (a broken or hostile tool): one line, no traceback."""
    settings = own_settings(no_flock_sshd, tmp_path)
    for d in settings.roots.values():
        os.makedirs(d)
    Path(settings.roots[Root.TFTP], "boot.ipxe").write_bytes(HDR)
    Path(settings.roots[Root.TFTP], "GARBLE").write_bytes(b"")
    with PxeHost(settings) as h, pytest.raises(PushError) as ei:
        plan_on(h, [script("boot.ipxe")])
    assert "garbled" in str(ei.value) and "\n" not in str(ei.value)


def test_missing_flock_is_a_plan_time_error(no_flock_sshd, tmp_path):
    """Was: after the NAS changes, "another netprov apply holds the lock"."""
    settings = own_settings(no_flock_sshd, tmp_path)
    with PxeHost(settings) as h:
        with pytest.raises(PushError) as ei:
            plan_on(h, [script("a.ipxe")])
        assert "missing command(s): flock" in str(ei.value) and "nothing was changed" in str(ei.value)
        assert h._last is not None and h._last.preflight
    assert not Path(settings.roots[Root.TFTP], "a.ipxe").exists()


def test_unwritable_root_is_a_plan_time_error(sshd, tmp_path):
    """A root the SSH user cannot create (its parent is immutable: not even root may write) is
    found by the read, before anything is written anywhere."""
    locked = tmp_path / "immutable"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        roots = make_roots(tmp_path / "srv") | {Root.TFTP: str(locked / "tftp")}
        settings = PxeSettings(server=SERVER, roots=roots, lock_path=str(tmp_path / "netprov.lock"),
                               test_command="true", restart_command="true", reload_command="true",
                               **sshd.settings_kwargs())
        with PxeHost(settings) as h:
            with pytest.raises(PushError, match=f"cannot write to tftp_root {locked}/tftp"):
                plan_on(h, [script("a.ipxe"), conf("netprov.conf", "dhcp-boot=a.0")])
        assert not Path(roots[Root.DNSMASQ]).exists()
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=False)


def test_converged_server_needs_no_tools(no_flock_sshd, tmp_path):
    """Nothing to change: the plan is fine even where apply could not run (read-only use)."""
    settings = own_settings(no_flock_sshd, tmp_path)
    with PxeHost(settings) as h:
        assert not has_changes(plan_on(h, []))


def test_missing_flock_stops_apply_before_any_nas_change(no_flock_sshd, tmp_path):
    """The whole CLI: plan and apply fail in one line naming flock, and the NAS is untouched."""
    from truenas_sim import Simulator

    pxe = tmp_path / "pxe"
    sim = Simulator(profile="25.04").start()
    try:
        create_parent(sim)
        before = sim.dump_state()
        inventory = tmp_path / "inventory.yaml"
        alpha = "  alpha: {mac: 52:54:00:10:00:01, chap: {secret_env: ALPHA_SECRET}}\n"
        inventory.write_text(ssh_server_inventory(sim.url, no_flock_sshd, pxe, machines=alpha))
        env = {**os.environ, "TEST_NAS_KEY": sim.api_key, "ALPHA_SECRET": "Chap-s3cret-01", "NO_COLOR": "1",
               "HOME": str(tmp_path)}
        for args in (["plan"], ["apply", "--auto-approve"]):
            res = subprocess.run([sys.executable, "-m", "netprov", *args, str(inventory)], capture_output=True,
                                 text=True, env=env, cwd=tmp_path, timeout=120)
            assert res.returncode == 1, res.stdout + res.stderr
            assert "Traceback" not in res.stderr and "flock" in res.stderr, res.stderr
            assert "holds the lock" not in res.stderr
        assert sim.dump_state() == before            # no NAS change at all
        assert not pxe.exists() or not any(p.is_file() for p in pxe.rglob("*"))
    finally:
        sim.stop()


# ----------------------------------------------------------------------------- symlinked roots


@pytest.mark.parametrize("where", ["root", "ancestor"])
def test_symlinked_root_is_refused(host, settings, tmp_path, where):
    """Issue 10 item 6: a tftp_root symlinked to /etc had 10 files written into /etc."""
    outside = tmp_path / "outside-etc"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    tftp = Path(settings.roots[Root.TFTP])
    if where == "root":
        tftp.parent.mkdir(parents=True, exist_ok=True)
        tftp.symlink_to(outside)
        roots = settings.roots
    else:
        link = tmp_path / "via-link"
        link.symlink_to(outside)
        roots = settings.roots | {Root.TFTP: str(link / "tftp")}
    h = PxeHost(replace(settings, roots=roots))
    with h, pytest.raises(PathConfinementError) as ei:
        plan_on(h, [script("boot.ipxe"), script("a.ipxe"), conf("netprov.conf", "dhcp-boot=a.0")])
    msg = str(ei.value)
    assert "tftp_root" in msg and "symlink" in msg and str(outside) in msg and "nothing was changed" in msg
    assert sorted(p.name for p in outside.rglob("*")) == ["passwd"]


# ----------------------------------------------------------------------------- secrets in server output


@pytest.mark.parametrize("second_restart", ["fails", "works"], ids=["dhcp-down", "rolled-back"])
def test_failed_restart_output_never_shows_chap_secrets(settings, roots, tmp_path, second_restart):
    """Issue 10 item 9: the rollback and "DHCP IS DOWN" messages printed the restart command's
    output unmasked, here the old and the new iPXE script with their CHAP secrets."""
    old, new = "Old-s3cret-0042", "New-s3cret-0042"

    def files(secret: str) -> list[BootFile]:
        body = f"set username alpha\nset password {secret}\nset reverse-password {secret}\nsanboot iscsi:x"
        return [script("s.ipxe", body, secret=True, secrets=(secret,)), conf("netprov.conf", f"# {secret[:3]}")]
    with PxeHost(settings) as h:
        h.apply(plan_on(h, files(old)))
    live = Path(roots[Root.TFTP], "s.ipxe")
    counter = tmp_path / "restarts"
    again = "exit 0" if second_restart == "works" else "exit 3"
    restart = (f"cat {live}; echo 'secret={new}'; n=$(cat {counter} 2>/dev/null || echo 0); "
               f"echo $((n+1)) > {counter}; if [ $n -ge 1 ]; then {again}; fi; exit 3")
    broken = replace(settings, restart_command=restart)
    with PxeHost(broken) as h:
        with pytest.raises(PushError) as ei:
            h.apply(plan_on(h, files(new)))
    msg = str(ei.value)
    assert ("DHCP IS DOWN" in msg) == (second_restart == "fails")
    assert ("rolled back" in msg) == (second_restart == "works")
    assert "set password ********" in msg                       # the output is shown, masked
    assert old not in msg and new not in msg
    assert live.read_text().count(old) == 2                       # rolled back to the old file


# ----------------------------------------------------------------------------- deadlines in general


def test_frozen_server_read_hits_its_deadline(own_sshd, tmp_path):
    """The server stops answering (its sshd is frozen with SIGSTOP: TCP still acknowledges, so
    keepalives cannot tell): only the step's own deadline ends the wait. Opening a channel had
    none (paramiko's default is an hour)."""
    settings = own_settings(own_sshd, tmp_path, command_timeout=1)
    host = PxeHost(settings)
    host.conn.run("true")                                   # connected and logged in
    frozen, result = [], {}

    def plan() -> None:
        try:
            plan_on(host, [script("a.ipxe")])
        except Exception as exc:  # noqa: BLE001 - inspected below
            result["exc"] = exc
    t = threading.Thread(target=plan, daemon=True)
    try:
        for pid in _children(own_sshd.pid):
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        t.start()
        t.join(60)                                          # bounded even if the code hangs
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        t.join(10)
        host.close()
    assert frozen and not t.is_alive(), "plan hung on a frozen server"
    exc = result.get("exc")
    assert isinstance(exc, PushError), repr(exc)
    assert "no answer within 1 s" in str(exc) and "nothing was changed" in str(exc)


# ----------------------------------------------------------------------------- a blackholed server


_DRIVER = r"""
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[2])
from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import plan_files
def plan_on(h, fs):
    return plan_files(fs, h.read(fs))
def has_changes(cs):
    return any(c.is_change for c in cs)
a = json.loads(sys.argv[1])
roots = {Root(k): v for k, v in a["roots"].items()}
s = PxeSettings(server="pxe1", roots=roots, **a["settings"])
hdr = b"#!ipxe\n# Managed by netprov\n"
def files(v):
    return [BootFile("pxe1", Root.TFTP, f"n{i}.ipxe", hdr + f"echo {v} {i}\n".encode() + b"x" * 20000, Kind.SCRIPT)
            for i in range(8)] + [BootFile("pxe1", Root.DNSMASQ, "netprov.conf",
                                           b"# Managed by netprov\n# " + v.encode() + b"\n", Kind.CONFIG)]
with PxeHost(s) as h:
    h.apply(plan_on(h, files("v1")))
h = PxeHost(s)
plan = plan_on(h, files("v2"))
done = []
def cut(event, change):
    if event == a["cut_at"] and not done:
        done.append(1)
        subprocess.run(a["cut"], check=True)
out = {"cut": False}
try:
    h.apply(plan, progress=cut)
    out.update(ok=True)
except Exception as exc:
    out.update(ok=False, type=type(exc).__name__, error=str(exc))
out["cut"] = bool(done)
h.close()
import pathlib
live = [p.read_bytes() for d in roots.values() for p in pathlib.Path(d).rglob("*")
        if p.is_file() and not p.name.startswith(".netprov")]
out["live_before_rerun"] = sorted({"v1" if (b"echo v1" in x or b"# v1" in x) else "other" for x in live})
if a.get("recover_host"):
    import dataclasses
    s2 = dataclasses.replace(s, host=a["recover_host"])
    out["retries"] = []
    for attempt in range(40):                 # bounded: a lock nobody lets go fails the test
        try:
            with PxeHost(s2) as h2:
                h2.apply(plan_on(h2, files("v2")))
                out["converged"] = not has_changes(plan_on(h2, files("v2")))
            break
        except Exception as exc:
            out["retries"].append(str(exc)[:200])
            time.sleep(0.5)
print(json.dumps(out))
"""


@pytest.fixture
def ns_lab(tmp_path):
    """sshd inside a server namespace on 10.99.n.1:2222; the client side is a second namespace.
    A second link (10.98.n.0/24, server .1) stays up when a test cuts the first."""
    from tests.support import kill_pid, register_pid, require_binary
    from tests.support.netns import Lab, veth_pair

    require_binary("ip", "sshd")
    keys = SshServer.start(tmp_path / "keys")       # throwaway loopback sshd: reuse its keys and config
    keys.stop()
    lab = Lab.create()
    procs = []
    try:
        client_ip = f"{lab.subnet}.2"
        lab.client.exec("ip", "addr", "add", f"{client_ip}/24", "dev", lab.client_if)
        alt = lab.subnet.replace("10.99.", "10.98.")
        veth_pair(lab.server, lab.client, a_if="veth1", b_if="veth1", a_addr=f"{alt}.1/24", b_addr=f"{alt}.2/24")
        cfg = (keys.dir / "sshd_config").read_text().replace(
            f"ListenAddress 127.0.0.1:{keys.port}", "ListenAddress 0.0.0.0:2222").replace(
            "sshd.pid", "sshd-ns.pid")
        (keys.dir / "sshd_ns_config").write_text(cfg)
        log = keys.dir / "sshd-ns.log"
        with open(log, "wb") as logf:
            p = subprocess.Popen(lab.server.cmd(require_binary("sshd")["sshd"], "-D", "-e", "-f",
                                                str(keys.dir / "sshd_ns_config")),
                                 stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        register_pid(p.pid)
        procs.append(p.pid)
        for _ in range(200):
            if "Server listening" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
        kh = keys.dir / "known_hosts_ns"
        kh.write_text("".join(f"[{ip}]:2222 " + keys.host_key_line.split(" ", 1)[1] + "\n"
                              for ip in (lab.server_ip, f"{alt}.1")))
        lab.alt_server_ip = f"{alt}.1"
        settings = {"host": lab.server_ip, "port": 2222, "user": keys.user, "identity_file": keys.identity_file,
                    "known_hosts": str(kh), "ssh_config": str(keys.dir / "no-ssh-config")}
        yield lab, settings
    finally:
        for pid in procs:
            kill_pid(pid)
        for ns in (lab.server, lab.client):
            for pid in ns.pids():
                kill_pid(pid)
        lab.delete()


def _drive(lab, tmp_path: Path, ssh: dict, cut_at: str, recover_host: str | None = None, **timeouts) -> dict:
    roots = make_roots(tmp_path / "srv")
    args = {"roots": {r.value: d for r, d in roots.items()},
            "settings": ssh | {"lock_path": str(tmp_path / "netprov.lock"), "test_command": "true",
                               "restart_command": "true", "reload_command": "true"} | timeouts,
            "cut_at": cut_at,
            "cut": ["ip", "netns", "exec", lab.server_ns, "ip", "link", "set", lab.server_if, "down"],
            "recover_host": recover_host}
    try:
        res = subprocess.run(lab.client.cmd(sys.executable, "-c", _DRIVER, json.dumps(args), str(ROOT)),
                             capture_output=True, text=True, timeout=90, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("apply hung on a blackholed PXE server (no answer in 90 s)")
    assert res.stdout.strip(), res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["roots"] = roots
    return out


def test_blackholed_server_during_upload_fails_by_keepalive(ns_lab, tmp_path):
    """The server's link goes down mid-upload; the step deadline is long (120 s), so only the
    keepalive/TCP_USER_TIMEOUT (connect_timeout 2 s) can end the wait. Was: hung > 420 s."""
    lab, ssh = ns_lab
    out = _drive(lab, tmp_path, ssh, "upload", recover_host=lab.alt_server_ip, connect_timeout=2,
                 command_timeout=120, keepalive=0.5)
    assert out["cut"] and not out["ok"], out
    assert out["type"] == "PushError"
    assert "lost while uploading" in out["error"] or "did not answer while uploading" in out["error"]
    assert "nothing was committed: the live files are unchanged" in out["error"]
    # A rerun over another path (the old one stays dead, so the server cannot see that connection
    # die for many minutes): the lost apply's server-side lock lets go after missed heartbeats,
    # stale temporaries are swept, and the rerun converges.
    assert out.get("converged") is True, out
    assert out["live_before_rerun"] == ["v1"], out
    assert all("holds the lock" in r for r in out["retries"]), out["retries"]
    live = live_files(*out["roots"].values())
    assert live and all(b"echo v2" in v or b"# v2" in v for v in live.values())


def test_blackholed_server_during_commit_says_it_may_or_may_not_have_happened(ns_lab, tmp_path):
    lab, ssh = ns_lab
    out = _drive(lab, tmp_path, ssh, "commit", connect_timeout=2, command_timeout=1, keepalive=0.5)
    assert out["cut"] and not out["ok"], out
    assert "could not be reached again" in out["error"] and "may or may not have happened" in out["error"]
    assert "run netprov plan" in out["error"]
