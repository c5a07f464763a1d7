"""Pure tests of netprov.core.fileplan (no I/O) and of the manifest parser."""

from __future__ import annotations

import hashlib
import json
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netprov.adapters.pxe.walk import parse_manifest
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import (
    Activation,
    Reason,
    RemoteEntry,
    RemoteManifest,
    activation_of,
    check_relpath,
    confine,
    has_header,
    mask_secrets,
    plan_files,
    text_wanted,
)
from netprov.core.plan import Action
from netprov.errors import PathConfinementError

S = "pxe1"
HDR = b"#!ipxe\n# Managed by netprov\n"
ROOTS = {Root.TFTP: "/srv/tftp", Root.DNSMASQ: "/etc/dnsmasq.d", Root.HOSTS: "/etc/dnsmasq.hosts"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def bf(path, content=HDR + b"chain x\n", root=Root.TFTP, kind=Kind.SCRIPT, **kw) -> BootFile:
    return BootFile(S, root, path, content, kind, **kw)


def entry(path, content, root=Root.TFTP, managed=True, mode=0o644, type="file"):
    return RemoteEntry(root, path, type, sha(content) if type == "file" else None, managed, mode, len(content))


def manifest(*entries, **kw) -> RemoteManifest:
    return RemoteManifest(S, ROOTS, {(e.root, e.path): e for e in entries}, **kw)


def by_path(plan):
    return {c.payload.path: c for c in plan if c.kind == "file"}


def test_create_update_noop_delete():
    same = bf("same.ipxe")
    changed = bf("changed.ipxe", HDR + b"chain new\n")
    new = bf("new.ipxe")
    m = manifest(entry("same.ipxe", same.content), entry("changed.ipxe", HDR + b"chain old\n"),
                 entry("gone.ipxe", HDR + b"old\n"))
    p = by_path(plan_files([same, changed, new], m))
    assert p["same.ipxe"].action == Action.NOOP and p["same.ipxe"].reason == Reason.UNCHANGED
    assert p["changed.ipxe"].action == Action.UPDATE and p["changed.ipxe"].reason == Reason.CONTENT
    assert p["new.ipxe"].action == Action.CREATE and p["new.ipxe"].reason == Reason.ABSENT
    assert p["gone.ipxe"].action == Action.DELETE and p["gone.ipxe"].reason == Reason.NOT_DESIRED


def test_mode_only_update_and_secret_mode():
    f = bf("s.ipxe", secret=True)
    p = by_path(plan_files([f], manifest(entry("s.ipxe", f.content, mode=0o644))))
    assert p["s.ipxe"].action == Action.UPDATE and p["s.ipxe"].reason == Reason.MODE
    assert p["s.ipxe"].payload.after_mode == 0o640 and p["s.ipxe"].sides[1]["mode"] == "0640"
    p = by_path(plan_files([f], manifest(entry("s.ipxe", f.content, mode=0o640))))
    assert p["s.ipxe"].action == Action.NOOP


def test_unmanaged_file_is_conflict_and_never_deleted():
    f = bf("boot.ipxe")
    m = manifest(entry("boot.ipxe", b"#!ipxe\nhand written\n", managed=False),
                 entry("other.txt", b"not ours\n", managed=False))
    plan = plan_files([f], m)
    p = by_path(plan)
    assert p["boot.ipxe"].refused == Reason.UNMANAGED and p["boot.ipxe"].reason == Reason.UNMANAGED
    assert p["boot.ipxe"].action == Action.UPDATE and not p["boot.ipxe"].payload.advisory
    assert "other.txt" not in p
    assert [c for c in plan if c.refused] and not [c for c in plan if c.is_change and not c.refused]


def test_header_must_be_within_first_three_lines():
    assert has_header(b"#!ipxe\n\n# Managed by netprov\n")
    assert not has_header(b"1\n2\n3\n# Managed by netprov\n")


def test_not_regular_and_parent_symlink_are_conflicts():
    m = manifest(RemoteEntry(Root.TFTP, "link.ipxe", "symlink"), RemoteEntry(Root.TFTP, "sub", "symlink"))
    p = by_path(plan_files([bf("link.ipxe"), bf("sub/x.ipxe")], m))
    assert p["link.ipxe"].reason == Reason.NOT_REGULAR
    assert p["sub/x.ipxe"].refused and p["sub/x.ipxe"].reason == Reason.PARENT_NOT_DIR


def test_binary_source_missing_is_reported_in_plan():
    f = bf("undionly.kpxe", b"", kind=Kind.BINARY, source="/usr/lib/ipxe/undionly.kpxe")
    p = by_path(plan_files([f], manifest(sources={"/usr/lib/ipxe/undionly.kpxe": None})))
    assert p["undionly.kpxe"].refused and p["undionly.kpxe"].payload.advisory
    assert p["undionly.kpxe"].reason.startswith(Reason.SOURCE_MISSING.value)


def test_binary_compares_with_source_hash():
    f = bf("undionly.kpxe", b"", kind=Kind.BINARY, source="/src/u.kpxe")
    m = manifest(entry("undionly.kpxe", b"BIN1"), sources={"/src/u.kpxe": sha(b"BIN1")})
    assert by_path(plan_files([f], m))["undionly.kpxe"].action == Action.NOOP
    m = manifest(entry("undionly.kpxe", b"BIN0"), sources={"/src/u.kpxe": sha(b"BIN1")})
    c = by_path(plan_files([f], m))["undionly.kpxe"]
    assert c.action == Action.UPDATE and c.diff is None


@pytest.mark.parametrize("changes, expected", [
    ({"conf"}, Activation.RESTART),
    ({"hosts"}, Activation.SIGHUP),
    ({"script"}, Activation.NONE),
    ({"conf", "hosts", "script"}, Activation.RESTART),
    ({"hosts", "script"}, Activation.SIGHUP),
    (set(), Activation.NONE),
])
def test_activation(changes, expected):
    conf = bf("pxe.conf", b"# Managed by netprov\ndhcp-boot=a\n", Root.DNSMASQ, Kind.CONFIG)
    hosts = bf("n1", b"# Managed by netprov\n52:54:00:00:00:01,10.0.0.5\n", Root.HOSTS, Kind.HOSTS)
    script = bf("n1.ipxe")
    old = b"# Managed by netprov\nold\n"
    m = manifest(*[entry(f.path, old if k in changes else f.content, f.root)
                   for k, f in (("conf", conf), ("hosts", hosts), ("script", script))])
    assert activation_of(plan_files([conf, hosts, script], m)) == expected


def test_deleting_a_managed_config_needs_restart_and_hosts_needs_sighup():
    m = manifest(entry("old.conf", b"# Managed by netprov\n", Root.DNSMASQ))
    assert activation_of(plan_files([], m)) == Activation.RESTART
    m = manifest(entry("n1", b"# Managed by netprov\n", Root.HOSTS))
    assert activation_of(plan_files([], m)) == Activation.SIGHUP


def test_pending_activation_from_an_interrupted_apply():
    p = plan_files([], manifest(pending=Activation.RESTART))
    assert activation_of(p) == Activation.RESTART and [c.kind for c in p] == ["activation"]
    assert p[0].payload.pending == Activation.RESTART and str(p[0].address) == "dnsmasq[pxe1]"


def test_diff_masks_secrets_and_password_lines():
    old = HDR + b"set username node01\nset password oldsecret\nset reverse-password rsec\n"
    new = HDR + b"set username node01\nset password hunter2\nsanboot iscsi:10.0.0.2::::iqn:x\n"
    f = bf("n1.ipxe", new, secret=True, secrets=("hunter2",))
    m = manifest(entry("n1.ipxe", old))
    assert text_wanted([f], m) == [(Root.TFTP, "n1.ipxe")]
    c = by_path(plan_files([f], m.with_old_text({(Root.TFTP, "n1.ipxe"): old})))["n1.ipxe"]
    assert c.action == Action.UPDATE and c.diff
    for s in ("hunter2", "oldsecret", "rsec"):
        assert s not in c.diff
    assert "set password ********" in c.diff and "+sanboot" in c.diff


def test_diff_when_only_secret_changed_says_so():
    old = HDR + b"set password one\n"
    new = HDR + b"set password two\n"
    f = bf("n1.ipxe", new, secret=True, secrets=("two",))
    m = manifest(entry("n1.ipxe", old)).with_old_text({(Root.TFTP, "n1.ipxe"): old})
    c = by_path(plan_files([f], m))["n1.ipxe"]
    assert c.action == Action.UPDATE and "masked" in c.diff and "two" not in c.diff


def test_create_diff_and_secrets_literal():
    f = bf("n1.ipxe", HDR + b"chain http://u:topsecret@x/y\nset chap s3cr3t\n", secrets=("s3cr3t",))
    c = by_path(plan_files([f], manifest()))["n1.ipxe"]
    assert "topsecret" not in c.diff and "s3cr3t" not in c.diff


@pytest.mark.parametrize("text", [
    "set password abc", "  set  password   abc  ", "set reverse-password abc", "chap-secret=abc",
    "password: abc", "set net0/password abc", "set netX/reverse-secret abc",
])
def test_mask_secrets_variants(text):
    assert "abc" not in mask_secrets(text)


def test_text_wanted_empty_when_unchanged():
    f = bf("a.ipxe")
    assert text_wanted([f], manifest(entry("a.ipxe", f.content))) == []


def test_duplicate_and_foreign_files_rejected():
    with pytest.raises(ValueError):
        plan_files([bf("a"), bf("a")], manifest())
    with pytest.raises(ValueError):
        plan_files([BootFile("other", Root.TFTP, "a", HDR)], manifest())


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "a/../../b", "a\0b", "a\\b", "", "a//b",
                                 "a/", ".", "x/./y", ".netprov.x.tmp", "a/.netprov-owned", "a\nb"])
def test_traversal_rejected(rel):
    with pytest.raises(PathConfinementError):
        confine("/srv/tftp", rel)
    with pytest.raises(PathConfinementError):
        plan_files([bf(rel)], manifest())


def test_confine_roots():
    assert confine("/srv/tftp/", "a/b.ipxe") == "/srv/tftp/a/b.ipxe"
    for bad_root in ("relative", "/", ""):
        with pytest.raises(PathConfinementError):
            confine(bad_root, "a")


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "/", "\\", "\0", "-", "_", ".netprov."]), max_size=12)
       .map("".join))
def test_confine_property(rel):
    try:
        out = confine("/srv/tftp", rel)
    except PathConfinementError:
        return
    assert out.startswith("/srv/tftp/") and posixpath.normpath(out) == out
    assert ".." not in out.split("/") and "\0" not in out and "\\" not in out
    check_relpath(out[len("/srv/tftp/"):])


def test_parse_manifest():
    h = sha(b"x")
    text = "\n".join([
        "P|restart",
        "R|tftp",
        "S|644|2|regular file|./boot.ipxe",
        "S|755|4096|directory|./sub",
        "S|777|5|symbolic link|./link",
        "S|644|0|regular empty file|./.netprov.ab12.3.tmp",
        "S|644|10|regular file|./undionly.kpxe",
        "S|640|10|regular file|./.netprov-owned",
        f"X|{h}  ./boot.ipxe", f"X|{h}  ./undionly.kpxe", f"X|\\{h}  ./we\\\\ird",
        "H|./boot.ipxe", "H|./.netprov-owned",
        "O|undionly.kpxe",
        "M|hosts",
        "Y|" + h + "|/src/a", "N|/src/missing", "END|",
    ])
    m = parse_manifest(S, ROOTS, text)
    assert m.get(Root.TFTP, "boot.ipxe") == RemoteEntry(Root.TFTP, "boot.ipxe", "file", h, True, 0o644, 2)
    assert m.get(Root.TFTP, "undionly.kpxe").managed
    assert m.get(Root.TFTP, "sub").type == "dir" and m.get(Root.TFTP, "link").type == "symlink"
    assert (Root.TFTP, ".netprov.ab12.3.tmp") in m.stale and m.get(Root.TFTP, ".netprov-owned") is None
    assert Root.HOSTS in m.missing_roots and m.pending == Activation.RESTART
    assert m.sources == {"/src/a": h, "/src/missing": None}


def test_file_payload_carries_the_content_for_the_executor_only():
    f = bf("n1.ipxe", HDR + b"set password hunter2\n", secret=True, secrets=("hunter2",))
    c = by_path(plan_files([f], manifest()))["n1.ipxe"]
    assert c.payload.file is f                                  # the executor writes exactly this
    shown = json.dumps(c.to_json()) + repr(c)
    assert "hunter2" not in shown and "password" in c.diff      # the diff is masked, the content never shown
    assert c.to_json()["payload"] == {
        "root": "tftp", "path": "n1.ipxe", "kind": "script", "before_sha256": None, "before_mode": None,
        "after_sha256": "********", "after_mode": "0640", "secret": True, "also": [], "advisory": False}
    assert (c.to_json()["before"], c.to_json()["after"]) == (None, {"sha256": "********", "mode": "0640"})
    assert f.sha256 not in shown and c.payload.after_sha256 == f.sha256   # shown masked, kept for the executor


def test_before_and_after_travel_once():
    from dataclasses import replace
    c = by_path(plan_files([bf("a.ipxe")], manifest()))["a.ipxe"]
    with pytest.raises(ValueError, match="travel once"):
        replace(c, after={"sha256": "forged", "mode": "0644"})
