"""PxeHost against a real sshd on 127.0.0.1 (files land on this machine's disk)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.adapters.pxe.ssh import connect
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import Activation, Reason, activation_of, plan_files
from netprov.core.plan import Action
from netprov.errors import AuthError, HostKeyError, PathConfinementError, PushError, StalePlanError
from tests.pxe.conftest import file_changes, has_changes, plan_on

SERVER = "pxe1"  # same as conftest.SERVER

HDR = b"#!ipxe\n# Managed by netprov\n"


def script(path: str, body: str = "chain boot.ipxe", **kw) -> BootFile:
    return BootFile(SERVER, Root.TFTP, path, HDR + body.encode() + b"\n", Kind.SCRIPT, **kw)


def conf(path: str, body: str) -> BootFile:
    return BootFile(SERVER, Root.DNSMASQ, path, b"# Managed by netprov\n" + body.encode() + b"\n", Kind.CONFIG)


def hosts(path: str, body: str) -> BootFile:
    return BootFile(SERVER, Root.HOSTS, path, b"# Managed by netprov\n" + body.encode() + b"\n", Kind.HOSTS)


def snapshot(*dirs: str) -> dict[str, bytes]:
    out = {}
    for d in dirs:
        for p in Path(d).rglob("*"):
            if p.is_file():
                out[str(p)] = p.read_bytes()
    return out


def test_push_lands_files_and_second_push_is_one_round_trip(host, roots, tmp_path):
    secret = script("nodes/01-52-54-00-00-00-01.ipxe", "set password hunter2\nsanboot iscsi:x", secret=True,
                    secrets=("hunter2",))
    files = [script("boot.ipxe"), secret, conf("netprov.conf", "dhcp-boot=undionly.kpxe"),
             hosts("node01", "52:54:00:00:00:01,10.99.0.5"),
             BootFile(SERVER, Root.TFTP, "undionly.kpxe", kind=Kind.BINARY, source="/bin/true")]
    plan = plan_on(host, files)
    assert [c.action for c in file_changes(plan)] == [Action.CREATE] * 5
    assert activation_of(plan) == Activation.RESTART
    assert "hunter2" not in "".join(c.diff or "" for c in file_changes(plan))
    report = host.apply(plan)
    assert len(report.created) == 5 and report.validated and report.activation == Activation.RESTART

    tftp = Path(roots[Root.TFTP])
    assert (tftp / "boot.ipxe").read_bytes() == files[0].content
    sec = tftp / "nodes/01-52-54-00-00-00-01.ipxe"
    assert sec.read_bytes() == secret.content and stat.S_IMODE(sec.stat().st_mode) == 0o640
    assert stat.S_IMODE((tftp / "boot.ipxe").stat().st_mode) == 0o644
    assert (tftp / "undionly.kpxe").read_bytes() == Path("/bin/true").read_bytes()
    assert (Path(roots[Root.DNSMASQ]) / "netprov.conf").exists()
    assert (tmp_path / "activations.log").read_text() == "restart\n"
    assert not [p for p in tftp.rglob(".netprov.*")], "temporaries left behind"

    # Unchanged: one read round trip, nothing uploaded, no activation.
    before = host.round_trips
    plan2 = plan_on(host, files)
    assert host.round_trips - before == 1
    assert all(c.action == Action.NOOP for c in file_changes(plan2)) and not has_changes(plan2)
    report2 = host.apply(plan2)
    assert host.round_trips - before == 1
    assert report2.bytes_uploaded == 0 and not report2.changed


def test_update_diff_fetch_and_delete(host, roots, tmp_path):
    host.apply(plan_on(host, [script("a.ipxe", "echo one"), script("b.ipxe"), hosts("n1", "52:54:00:00:00:01,ignore")]))
    rt = host.round_trips
    plan = plan_on(host, [script("a.ipxe", "echo two")])      # b.ipxe and n1 removed
    assert host.round_trips - rt == 2                      # read + one fetch of old texts
    ch = {c.payload.path: c for c in file_changes(plan)}
    assert ch["a.ipxe"].action == Action.UPDATE and "-echo one" in ch["a.ipxe"].diff
    assert ch["b.ipxe"].action == Action.DELETE and ch["n1"].action == Action.DELETE
    assert activation_of(plan) == Activation.SIGHUP
    host.apply(plan)
    assert (Path(roots[Root.TFTP]) / "a.ipxe").read_bytes().endswith(b"echo two\n")
    assert not (Path(roots[Root.TFTP]) / "b.ipxe").exists()
    assert (tmp_path / "activations.log").read_text().splitlines()[-1] == "sighup"


def test_unmanaged_file_is_conflict_and_untouched(host, roots):
    tftp = Path(roots[Root.TFTP])
    tftp.mkdir(parents=True)
    (tftp / "boot.ipxe").write_bytes(b"#!ipxe\nhand made\n")
    (tftp / "other.ipxe").write_bytes(b"#!ipxe\nnot ours\n")
    plan = plan_on(host, [script("boot.ipxe"), script("new.ipxe")])
    c = {c.payload.path: c for c in file_changes(plan)}
    assert c["boot.ipxe"].refused == Reason.UNMANAGED and c["boot.ipxe"].action == Action.UPDATE
    assert "other.ipxe" not in c
    with pytest.raises(PushError, match="conflict"):
        host.apply(plan)
    assert not (tftp / "new.ipxe").exists()
    host.apply(plan, allow_conflicts=True)                  # the rest goes through, conflicts untouched
    assert (tftp / "boot.ipxe").read_bytes() == b"#!ipxe\nhand made\n"
    assert (tftp / "other.ipxe").exists() and (tftp / "new.ipxe").exists()


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "a\0b", "x/../../../y"])
def test_traversal_refused_nothing_written(host, roots, tmp_path, rel):
    from dataclasses import replace

    with pytest.raises(PathConfinementError):
        plan_on(host, [script(rel)])
    # A hand-forged plan (bypassing the planner) is refused by apply before any I/O.
    good = plan_files([script("ok.ipxe")], host.read_manifest())
    forged = [replace(c, payload=replace(c.payload, path=rel)) for c in good]
    rt = host.round_trips
    with pytest.raises(PathConfinementError):
        host.apply(forged)
    assert host.round_trips == rt
    assert not Path(roots[Root.TFTP]).exists() or not any(Path(roots[Root.TFTP]).iterdir())
    assert not (tmp_path / "etc").exists()


def test_symlinked_subdir_cannot_escape(host, roots, tmp_path):
    tftp = Path(roots[Root.TFTP])
    tftp.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tftp / "nodes").symlink_to(outside)
    plan = plan_on(host, [script("nodes/n1.ipxe")])
    assert file_changes(plan)[0].reason == Reason.PARENT_NOT_DIR
    # Even with a manifest that missed the symlink (race), the server-side check refuses.
    from netprov.core.fileplan import RemoteManifest
    blind = plan_files([script("nodes/n1.ipxe")], RemoteManifest(SERVER, roots))
    with pytest.raises(PathConfinementError, match="symlink"):
        host.apply(blind)
    assert list(outside.iterdir()) == []


def test_lock_held_is_a_clear_error(host, settings, roots):
    import fcntl

    fd = os.open(settings.lock_path, os.O_WRONLY | os.O_CREAT, 0o644)   # another apply "holds" it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PushError, match="another netprov apply holds the lock"):
            host.apply(plan_on(host, [script("a.ipxe")]))
        assert not Path(roots[Root.TFTP], "a.ipxe").exists()
    finally:
        os.close(fd)
    host.apply(plan_on(host, [script("a.ipxe")]))
    assert Path(roots[Root.TFTP], "a.ipxe").exists()


def test_two_applies_never_interleave(settings, roots):
    """While one apply holds the lock (between stage and commit), a second one is refused."""
    second = PxeHost(settings)
    errors = []

    def during(event, change):
        if event == "validate":
            try:
                second.apply(plan_on(second, [script("b.ipxe")]))
            except PushError as exc:
                errors.append(str(exc))
    with PxeHost(settings) as first:
        first.apply(plan_on(first, [script("a.ipxe")]), progress=during)
    second.close()
    assert errors and "holds the lock" in errors[0]
    assert Path(roots[Root.TFTP], "a.ipxe").exists() and not Path(roots[Root.TFTP], "b.ipxe").exists()


def test_connection_killed_mid_upload_leaves_old_files(settings, roots):
    files = [script(f"n{i}.ipxe", f"echo v1 {i}") for i in range(5)]
    with PxeHost(settings) as h:
        h.apply(plan_on(h, files))
    before = snapshot(roots[Root.TFTP])
    new = [script(f"n{i}.ipxe", f"echo v2 {i}") for i in range(5)] + [script("extra.ipxe")]
    h = PxeHost(settings)
    uploads = []

    def killer(event, change):
        if event == "upload":
            uploads.append(change)
            h.conn.transport.close()          # the connection dies after the first file
    with pytest.raises(PushError, match="lost while uploading"):
        h.apply(plan_on(h, new), progress=killer)
    assert uploads  # killed after the first file was handed to the stream
    after = {k: v for k, v in snapshot(roots[Root.TFTP]).items() if "/.netprov." not in k}
    assert after == before                               # live files untouched, nothing new is live
    # The next apply cleans up leftovers and converges.
    with PxeHost(settings) as h2:
        h2.apply(plan_on(h2, new))
        assert not has_changes(plan_on(h2, new))
    assert not list(Path(roots[Root.TFTP]).glob(".netprov.*"))


def test_stale_plan_is_refused(host, roots):
    host.apply(plan_on(host, [script("a.ipxe", "echo 1")]))
    plan = plan_on(host, [script("a.ipxe", "echo 2")])
    Path(roots[Root.TFTP], "a.ipxe").write_bytes(HDR + b"changed behind our back\n")
    with pytest.raises(StalePlanError):
        host.apply(plan)
    assert Path(roots[Root.TFTP], "a.ipxe").read_bytes().endswith(b"behind our back\n")


def test_validation_failure_keeps_old_files(host, roots):
    host.apply(plan_on(host, [conf("netprov.conf", "dhcp-boot=a.0")]))
    live = Path(roots[Root.DNSMASQ], "netprov.conf")
    old = live.read_bytes()
    with pytest.raises(PushError, match=r"(?s)rejected.*netprov.conf"):
        host.apply(plan_on(host, [conf("netprov.conf", "dhcp-boot=a.0\nno-such-option=1")]))
    assert live.read_bytes() == old
    assert not list(Path(roots[Root.DNSMASQ]).glob(".netprov.*"))


def test_bad_host_line_fails_validation(host, roots):
    with pytest.raises(PushError, match="node01"):
        host.apply(plan_on(host, [hosts("node01", "52:54:00:00:00:01,not-an-ip,999.1.1.1,bogus=1")]))
    assert not Path(roots[Root.HOSTS], "node01").exists()


def test_missing_binary_source_is_a_plan_conflict(host):
    plan = plan_on(host, [BootFile(SERVER, Root.TFTP, "ipxe.efi", kind=Kind.BINARY, source="/nonexistent/ipxe.efi")])
    c = file_changes(plan)[0]
    assert c.refused and c.payload.advisory and c.reason.startswith(Reason.SOURCE_MISSING.value)


# ----------------------------------------------------------------------------- SSH trust


def test_unknown_host_key_refused_with_fingerprint(sshd, tmp_path):
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    kw = sshd.settings_kwargs() | {"known_hosts": str(kh)}
    with pytest.raises(HostKeyError) as ei:
        connect(**kw)
    assert sshd.host_key_fingerprint in str(ei.value) and "ssh-ed25519" in str(ei.value)
    assert kh.read_text() == ""


def test_accept_new_host_key_appends_then_verifies(sshd, tmp_path):
    kh = tmp_path / "kh"
    kw = sshd.settings_kwargs() | {"known_hosts": str(kh)}
    with connect(**kw, accept_new_host_key=True) as c:
        assert c.run("echo ok").out.strip() == "ok"
    assert kh.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    with connect(**kw) as c:                        # now known: no flag needed
        assert c.run("true").rc == 0


def test_host_key_mismatch_always_refused(sshd, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join(Path(str(other) + ".pub").read_text().split()[:2]) + "\n")
    kw = sshd.settings_kwargs() | {"known_hosts": str(kh)}
    for accept in (False, True):
        with pytest.raises(HostKeyError, match="does NOT match|does not match"):
            connect(**kw, accept_new_host_key=accept)


def test_ssh_config_alias(sshd, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host pxe-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
                   f"  IdentityFile {sshd.identity_file}\n  UserKnownHostsFile {sshd.known_hosts}\n")
    with connect("pxe-alias", ssh_config=str(cfg)) as c:
        assert c.run("echo $USER").rc == 0 and c.display.endswith(f"127.0.0.1:{sshd.port}")


def test_wrong_key_is_auth_error(sshd, tmp_path):
    other = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kw = sshd.settings_kwargs() | {"identity_file": str(other)}
    env = os.environ.pop("SSH_AUTH_SOCK", None)
    try:
        with pytest.raises(AuthError):
            connect(**kw)
    finally:
        if env:
            os.environ["SSH_AUTH_SOCK"] = env


def test_deletes_only_and_binary_ownership(host, roots):
    binary = BootFile(SERVER, Root.TFTP, "ipxe.efi", kind=Kind.BINARY, source="/bin/true")
    host.apply(plan_on(host, [binary, script("a.ipxe")]))
    tftp = Path(roots[Root.TFTP])
    assert "ipxe.efi" in (tftp / ".netprov-owned").read_text()
    assert not has_changes(plan_on(host, [binary, script("a.ipxe")]))      # headerless binary is ours: NOOP
    plan = plan_on(host, [])
    assert sorted((c.payload.path, c.action) for c in file_changes(plan)) == [("a.ipxe", Action.DELETE),
                                                                 ("ipxe.efi", Action.DELETE)]
    host.apply(plan)
    assert not (tftp / "a.ipxe").exists() and not (tftp / "ipxe.efi").exists()
    assert "ipxe.efi" not in (tftp / ".netprov-owned").read_text()
    assert not has_changes(plan_on(host, []))


def test_restart_failing_twice_reports_dhcp_down_and_stays_pending(settings, roots):
    from dataclasses import replace

    with PxeHost(settings) as h:
        h.apply(plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0")]))
    live = Path(roots[Root.DNSMASQ], "netprov.conf")
    old = live.read_bytes()
    broken = replace(settings, restart_command="echo 'cannot start' >&2; exit 3")
    with PxeHost(broken) as h:
        with pytest.raises(PushError, match="DHCP IS DOWN"):
            h.apply(plan_on(h, [conf("netprov.conf", "dhcp-boot=b.0")]))
        assert live.read_bytes() == old                              # files rolled back
        plan = plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0")])       # = what is on disk
        assert not [c for c in file_changes(plan) if c.is_change] and activation_of(plan) == Activation.RESTART   # the restart is still owed
    with PxeHost(settings) as h:
        h.apply(plan)
        assert not has_changes(plan_on(h, [conf("netprov.conf", "dhcp-boot=a.0")]))


def test_batch_shell_fallback_without_perl(tmp_path):
    """The commit's rename batch works on servers without perl (POSIX sh + mv/ln/cp)."""
    from netprov.adapters.pxe.scripts import BATCH as _BATCH

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mv", "ln", "cp"):
        (bindir / tool).symlink_to(subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False,
                                                  text=True).stdout.strip())
    d = tmp_path / "d"
    d.mkdir()
    (d / "live").write_text("old")
    (d / "tmp").write_text("new")
    (d / "gone").write_text("x")
    ops = f"L\t{d}/live\t{d}/bak\nR\t{d}/tmp\t{d}/live\nr\t{d}/gone\t{d}/gone.bak\nr\t{d}/absent\t{d}/a.bak\n"
    res = subprocess.run(["/bin/sh", "-c", _BATCH + "\nbatch"], input=ops, text=True, capture_output=True, check=False,
                         env={"PATH": str(bindir)})
    assert res.returncode == 0, res.stderr
    assert (d / "live").read_text() == "new" and (d / "bak").read_text() == "old"
    assert not (d / "gone").exists() and (d / "gone.bak").exists()
    res = subprocess.run(["/bin/sh", "-c", _BATCH + "\nbatch"], input=f"R\t{d}/nope\t{d}/x\n", text=True,
                         capture_output=True, check=False, env={"PATH": str(bindir)})
    assert res.returncode != 0


def test_secret_file_gets_group_when_it_exists(settings, roots):
    import grp
    from dataclasses import replace

    try:
        gid = grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("no 'daemon' group to stand in for 'dnsmasq'")
    with PxeHost(replace(settings, secret_group="daemon")) as h:
        h.apply(plan_on(h, [script("s.ipxe", "set password x", secret=True), script("p.ipxe")]))
    st_s = Path(roots[Root.TFTP], "s.ipxe").stat()
    assert st_s.st_gid == gid and stat.S_IMODE(st_s.st_mode) == 0o640
    assert Path(roots[Root.TFTP], "p.ipxe").stat().st_gid != gid


def test_sudo_wraps_privileged_commands_only():
    from netprov.adapters.pxe.fileops import build_ops as _build_ops
    from netprov.adapters.pxe.scripts import commit_script as _commit_script, stage_script as _stage_script
    from netprov.core.fileplan import RemoteManifest

    roots = {Root.DNSMASQ: "/etc/dnsmasq.d", Root.TFTP: "/srv/tftp"}
    s = PxeSettings(host="h", server=SERVER, roots=roots, sudo=True)
    plan = plan_files([conf("x.conf", "dhcp-boot=a"), script("a.ipxe")], RemoteManifest(SERVER, roots))
    ops = _build_ops(file_changes(plan), RemoteManifest(SERVER, roots), roots, "t0k3n")
    stage, validated = _stage_script(ops, s, "netprov")
    assert validated and "sudo -n sh -c 'dnsmasq --test --conf-file=\"$1\"' netprov-test \"$TC\"" in stage
    commit = _commit_script(ops, activation_of(plan), s, "netprov")
    assert "sudo -n sh -c 'systemctl restart dnsmasq'" in commit
    assert "sudo" not in _commit_script(ops, activation_of(plan), s, "root")
