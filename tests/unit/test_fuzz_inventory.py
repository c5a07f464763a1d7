"""Fuzzing the inventory front door (issue 10, item 6): `netprov validate` (and `netprov plan --offline` for what
validates) on generated YAML and on byte mutations of every shipped inventory exits 0 or 1 -- never a
traceback, never another code.

Runs the real entry point in-process (fast), bounded by example counts; CI's derandomized hypothesis profile
(tests/conftest.py) makes it reproducible there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprov.cli import console
from netprov.cli.app import main

ROOT = Path(__file__).resolve().parents[2]


def _docs_yaml_blocks() -> list[tuple[str, bytes]]:
    out = []
    for md in sorted((ROOT / "docs").glob("*.md")):
        for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", md.read_text(), re.DOTALL)):
            out.append((f"{md.name}#{i}", m.group(1).encode()))
    return out


def _shipped() -> list[tuple[str, bytes]]:
    files = sorted((ROOT / "inventory").glob("*.yaml")) + sorted((ROOT / "tests/inventories").rglob("*.yaml")) + \
        sorted((ROOT / "tests/golden/render").glob("*/inventory.yaml"))
    return [(str(p.relative_to(ROOT)), p.read_bytes()) for p in files] + _docs_yaml_blocks()


SHIPPED = _shipped()
#: Examples per fuzz test: ~5 s each in the default suite; NETPROV_FUZZ_EXAMPLES=5000 for a long hunt.
EXAMPLES = int(os.environ.get("NETPROV_FUZZ_EXAMPLES", "120"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """One in-process `netprov` run: its exit code and everything it printed. Any exception other than
    SystemExit is a crash (the traceback a user would see) and fails the test as it is."""
    console.reset()
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    else:  # pragma: no cover - main always exits
        code = 0
    out, err = capsys.readouterr()
    return int(code or 0), out + err


def check_front_door(path: Path, data: bytes, capsys) -> int:
    path.write_bytes(data)
    code, out = run_cli(["validate", str(path)], capsys)
    assert code in (0, 1), (code, out, data[:2000])
    assert "Traceback" not in out, (out, data[:2000])
    if code == 0:
        pcode, pout = run_cli(["plan", "--offline", str(path)], capsys)
        assert pcode in (0, 1), (pcode, pout, data[:2000])
        assert "Traceback" not in pout, (pout, data[:2000])
    return code


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "CI_PLAN_OUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def test_every_shipped_inventory_goes_through_the_front_door(tmp_path: Path, capsys) -> None:
    codes = [check_front_door(tmp_path / "inv.yaml", data, capsys) for _, data in SHIPPED]
    assert 0 in codes and 1 in codes


# --- byte mutations of the shipped inventories ----------------------------------------------------------

INSERTS = [b"*a", b"&a ", b"<<: ", b"{", b"[", b"}", b"]", b": ", b"- ", b"\t", b"\x00", b"\xff", b"\r",
           b"\n", b"'", b'"', b"!!binary ", b"!!set ", b"!!omap ", b"!!python/object:os.system ", b"? ",
           b"---\n", b"...\n", b"%YAML 1.1\n", b"\xe2\x80\xa8", b"\xc2\x85", b"~", b"null", b"1e9999",
           b"0x", b"-1", b"9" * 30, b".nan", b"true", b"2001-12-14", b"||", b"${password}", b"\\"]


@st.composite
def mutated(draw) -> bytes:
    _, data = draw(st.sampled_from(SHIPPED))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "duplicate", "insert", "truncate", "swap-lines"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 40))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 80))]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif kind == "truncate":
            del data[pos:]
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@SETTINGS
@given(data=mutated())
def test_mutated_inventories_exit_0_or_1_without_a_traceback(data: bytes, tmp_path_factory, capsys) -> None:
    check_front_door(tmp_path_factory.mktemp("m", numbered=True) / "inv.yaml", data, capsys)


# --- generated documents --------------------------------------------------------------------------------

FIELD_NAMES = ["version", "storage", "pxe_servers", "defaults", "machines", "templates", "url", "api_key_env",
               "parent", "portal", "basename", "target_prefix", "lun", "ssh", "host", "mode", "interface",
               "address", "subnet", "range", "start", "end", "ipxe", "source", "bios", "uefi", "tftp_root",
               "http", "root", "base_url", "mac", "ip", "disk", "size", "volblocksize", "chap", "secret_env",
               "secret_file", "install", "kernel", "initrd", "cmdline", "extra", "kernel_args", "boot",
               "firmware", "arch", "description", "initiator_iqn", "<<", "nas", "pxe", "alpha"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["52:54:00:00:00:01", "10.0.0.5", "10.0.0.0/24",
                                                           "wss://nas/api/current", "64G", "16K", "dhcp",
                                                           "proxy", "eth0", "tank/netboot", "NAS_KEY", "1"]))
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8), st.integers(-5, 5), st.booleans(), st.none())
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=6)),
                         max_leaves=40)


def _valid_base() -> dict:
    return yaml.safe_load((ROOT / "tests/inventories/base.yaml").read_text().replace(
        "mac: 52:54:00:00:00:01", "mac: '52:54:00:00:00:01'"))


@SETTINGS
@given(doc=documents, style=st.sampled_from([None, True, False]))
def test_generated_documents_exit_0_or_1(doc, style, tmp_path_factory, capsys) -> None:
    text = yaml.safe_dump(doc, default_flow_style=style, allow_unicode=True) if doc is not None else ""
    check_front_door(tmp_path_factory.mktemp("g", numbered=True) / "inv.yaml", text.encode(), capsys)


@SETTINGS
@given(where=st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=4), value=documents)
def test_valid_inventories_with_a_generated_field_exit_0_or_1(where, value, tmp_path_factory, capsys) -> None:
    """Deeper than random documents: a valid inventory with one generated value put somewhere in it."""
    base = _valid_base()
    node = base
    for key in where[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[where[-1]] = value
    text = yaml.safe_dump(base, allow_unicode=True)
    check_front_door(tmp_path_factory.mktemp("v", numbered=True) / "inv.yaml", text.encode(), capsys)
