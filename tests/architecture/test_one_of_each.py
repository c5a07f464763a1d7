"""One of each concept: a helper netprov needs in several places lives in one module, and these tests fail
when a second copy comes back (found by name and by shape in the source) or when the one copy changes what
it does."""

from __future__ import annotations

import ast
import grp
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import pytest

from netprov.adapters.pxe.boot_host import PxeSettings
from netprov.core import inventory
from netprov.core.dnsmasq import SECRET_GROUP
from netprov.core.inventory import PIHOLE_DEFAULTS, forbidden_binary_source, forbidden_published_root
from netprov.core.net import is_loopback
from netprov.core.text import one_line
from netprov.core.units import VOLBLOCKSIZES, parse_volblocksize

PKG = Path(inventory.__file__).resolve().parents[1]          # .../netprov
#: The simulator models TrueNAS on its own (its tables are the NAS's, not netprov's): not scanned.
SOURCES = sorted(p for p in PKG.rglob("*.py") if "sim" not in p.relative_to(PKG).parts[:1])


def _rel(path: Path) -> str:
    return path.relative_to(PKG.parent).as_posix()


def _trees() -> list[tuple[str, ast.AST]]:
    return [(_rel(p), ast.parse(p.read_text(), str(p))) for p in SOURCES]


TREES = _trees()


def test_the_scan_sees_netprov() -> None:
    files = {name for name, _ in TREES}
    assert {"netprov/core/text.py", "netprov/core/net.py", "netprov/adapters/truenas/rpc.py",
            "netprov/adapters/pxe/boot_host.py"} <= files


def _defs(names: set[str]) -> list[str]:
    return sorted(f"{f}:{n.lineno} {n.name}" for f, t in TREES for n in ast.walk(t)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.lstrip("_") in names)


def test_one_line_and_loopback_are_defined_once() -> None:
    assert _defs({"one_line"}) == ["netprov/core/text.py:8 one_line"]
    assert _defs({"is_loopback"}) == ["netprov/core/net.py:8 is_loopback"]


def _is_whitespace_collapse(node: ast.AST) -> bool:
    """``" ".join(x.split())``: the heart of ``one_line``."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and node.func.value.value == " "
            and len(node.args) == 1 and isinstance(node.args[0], ast.Call)
            and isinstance(node.args[0].func, ast.Attribute) and node.args[0].func.attr == "split"
            and not node.args[0].args)


#: Whitespace collapses with no bound and no error text in them: a markdown table cell (md_text, md_code) and
#: the comment of a pin-file line. Not one_line's job (that one bounds a foreign text for a message).
UNBOUNDED_COLLAPSES = ["netprov/adapters/known_nas.py", "netprov/plan_view.py", "netprov/plan_view.py"]


def test_no_second_whitespace_collapse_or_loopback_check() -> None:
    collapse = sorted(f for f, t in TREES for n in ast.walk(t) if _is_whitespace_collapse(n))
    assert collapse == sorted(["netprov/core/text.py", *UNBOUNDED_COLLAPSES]), collapse
    loopback = sorted(f for f, t in TREES for n in ast.walk(t)
                      if isinstance(n, ast.Attribute) and n.attr == "is_loopback")
    assert loopback == ["netprov/core/net.py"], loopback


def test_the_volblocksize_table_is_written_once() -> None:
    """A literal naming a volblocksize (``"128K"``) or its bytes (131072) is the table in core/units.py."""
    where = sorted(f"{f}:{n.lineno}" for f, t in TREES for n in ast.walk(t)
                   if isinstance(n, ast.Constant) and n.value in ("128K", 131072))
    assert where == ["netprov/core/units.py:15", "netprov/core/units.py:15"], where


def test_the_secret_group_default_is_written_once() -> None:
    where = sorted(f"{f}:{n.lineno}" for f, t in TREES for n in ast.walk(t)
                   if isinstance(n, ast.Constant) and n.value == SECRET_GROUP)
    assert where == ["netprov/core/dnsmasq.py:18"], where


# --- the one copy does what it should -------------------------------------------------------------------

@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("LocalHost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("10.0.0.1", False), ("::2", False), ("nas.example", False), ("localhost.example", False), ("", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("url", "ok"), [("ws://LOCALHOST:8080/websocket", True), ("ws://[::1]/api/current", True),
                                         ("ws://10.0.0.2/websocket", False), ("wss://10.0.0.2/api/current", True)])
def test_the_inventory_allows_plain_ws_only_to_loopback(url: str, ok: bool) -> None:
    data = {"url": url, "parent": "tank/netboot", "portal": "10.0.0.2", "api_key_env": "K"}
    if ok:
        assert inventory.Storage.model_validate(data).url == url
    else:
        with pytest.raises(ValueError, match="plain ws:// is only allowed to loopback"):
            inventory.Storage.model_validate(data)


def test_one_line() -> None:
    assert one_line("a\n  b\t\r\nc ", 10) == "a b c"
    assert one_line(None, 10) == ""
    assert one_line(ValueError("bad\nthing"), 50) == "bad thing"
    assert one_line(12345, 5) == "12345"
    cut = one_line("x" * 20, 8)
    assert cut == "xxxxxxx…" and len(cut) == 8


def test_volblocksizes() -> None:
    assert [parse_volblocksize(n) for n in VOLBLOCKSIZES.values()] == list(VOLBLOCKSIZES)
    assert VOLBLOCKSIZES["512"] == 512 and VOLBLOCKSIZES["128K"] == 128 * 1024 and len(VOLBLOCKSIZES) == 9
    assert all(inventory.re.fullmatch(inventory.VOLBLOCKSIZE_PATTERN, s) for s in ("512", "131072", "16k", "128KB"))
    assert not inventory.re.fullmatch(inventory.VOLBLOCKSIZE_PATTERN, "256K")


def test_one_secret_group_default_for_inventory_and_push() -> None:
    pxe = {"interface": "eth0", "address": "10.0.0.5", "subnet": "10.0.0.0/24", "transport": "local"}
    assert inventory.PxeServer.model_validate(pxe).secret_group == SECRET_GROUP == "dip"
    assert inventory.PxeServer.model_validate(pxe | {"flavor": "pihole"}).secret_group == "pihole"
    assert PIHOLE_DEFAULTS["secret_group"] == "pihole"
    assert {f.name: f.default for f in fields(PxeSettings)}["secret_group"] == SECRET_GROUP


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dnsmasq") is None, reason="needs root and dnsmasq")
def test_debian_dnsmasq_runs_with_the_secret_group(tmp_path: Path) -> None:
    """The fact behind the default: started as Debian's service starts it (``-u dnsmasq``, no ``--group``),
    dnsmasq drops to group ``dip``, so a 0640 file of group SECRET_GROUP is one it can read."""
    try:
        pwd.getpwnam("dnsmasq")
        grp.getgrnam(SECRET_GROUP)
    except KeyError:
        pytest.skip("no dnsmasq user (Debian's dnsmasq-base creates it) or no dip group")
    proc = subprocess.Popen(["dnsmasq", "-k", "-u", "dnsmasq", "--port=0", "--conf-file=/dev/null",
                             f"--pid-file={tmp_path / 'pid'}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        gid = None
        for _ in range(200):         # until it has dropped root (or died)
            status = Path(f"/proc/{proc.pid}/status").read_text() if proc.poll() is None else ""
            uid = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:")), "0")
            if uid != "0" or proc.poll() is not None:
                gid = next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Gid:")), None)
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert gid == grp.getgrnam(SECRET_GROUP).gr_gid
    finally:
        proc.kill()
        proc.wait()


# --- the two "may this folder be used" rules share one check ----------------------------------------------

@pytest.mark.parametrize(("path", "binary", "published"), [
    ("/", "'/' is not a folder of iPXE binaries", "tftp_root '/' would serve the whole server to the LAN"),
    ("/srv/.ssh/x", "has a hidden folder in it (like .ssh): not a place", "has a hidden folder in it (like .ssh): it"),
    ("/etc/ipxe", "is inside /etc, which holds", "tftp_root '/etc/ipxe' is inside /etc: its files"),
    ("/var/lib/ipxe", "is inside /var/lib, which holds", None),
    ("/etcetera", None, None), ("/usr/lib/ipxe", None, None), ("/srv/tftp", None, None)])
def test_forbidden_folders(path: str, binary: str | None, published: str | None) -> None:
    b, p = forbidden_binary_source(path), forbidden_published_root(path, "tftp_root")
    assert (b is None) is (binary is None) and (binary is None or binary in b), b
    assert (p is None) is (published is None) and (published is None or published in p), p
