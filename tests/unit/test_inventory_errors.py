"""Every bad inventory under tests/inventories/bad gets its clear, located error.

Each file states what it expects in header lines: ``# expect: LINE: text``; the
validator must report a problem on that line whose message contains the text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netprov.core.inventory_load import parse_inventory
from netprov.errors import InventoryError

BAD = Path(__file__).resolve().parent.parent / "inventories" / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def expectations(text: str) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2).strip())
            for m in re.finditer(r"^# expect: (\d+):(.*)$", text, re.MULTILINE)]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_inventory_is_refused_with_located_message(path: Path) -> None:
    text = path.read_text()
    expected = expectations(text)
    assert expected, f"{path.name} states no expectation"
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, str(path))
    rendered = [str(p) for p in info.value.problems]
    for line, needle in expected:
        hits = [r for r in rendered if f"{path}:{line}:" in r and needle in r]
        assert hits, f"expected {needle!r} at line {line}; got:\n" + "\n".join(rendered)


def test_all_problems_reported_in_one_pass() -> None:
    text = (BAD.parent / "base.yaml").read_text() + (
        "  beta:\n    mca: 52:54:00:00:00:02\n"        # unknown key (+ missing mac)
        "  gamma:\n    mac: 52:54:00:00:00:01\n"         # duplicate MAC of alpha
        "    storage: nope\n")                          # undefined storage
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inv.yaml")
    messages = "\n".join(str(p) for p in info.value.problems)
    assert "machines.beta.mca: unknown key" in messages
    assert "machines.gamma.mac: MAC 52:54:00:00:00:01 is also used by 'alpha'" in messages
    assert "storage 'nope' is not defined" in messages


def test_hostile_names_never_reach_a_path_or_template() -> None:
    for name in ["../../etc/passwd", "a/b", "a b", "a'b", 'a"b', "a;reboot", "$(id)", "a`id`", "a|b", "..", "-x"]:
        text = (BAD.parent / "base.yaml").read_text() + f"  {name!r}:\n    mac: 52:54:00:00:00:09\n"
        with pytest.raises(InventoryError) as info:
            parse_inventory(text, "inv.yaml")
        assert any("machine names" in p.message for p in info.value.problems), name


def test_mac_spellings_are_normalised() -> None:
    base = (BAD.parent / "base.yaml").read_text().replace("mac: 52:54:00:00:00:01", "mac: {}")
    for spelling in ["52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "5254.00ab.cdef", "525400ABCDEF"]:
        loaded = parse_inventory(base.replace("{}", spelling), "inv.yaml")
        assert loaded.machine("alpha").mac == "52:54:00:ab:cd:ef"


def test_transport_local_needs_no_ssh_and_ssh_transport_needs_it() -> None:
    base = (BAD.parent / "base.yaml").read_text()
    local = base.replace("    ssh: {host: pxe.lan, user: root}\n", "    transport: local\n")
    assert parse_inventory(local, "inv.yaml").inventory.pxe_servers["pxe"].transport == "local"
    missing = base.replace("    ssh: {host: pxe.lan, user: root}\n", "")
    with pytest.raises(InventoryError) as info:
        parse_inventory(missing, "inv.yaml")
    assert "say how to reach it: ssh:" in str(info.value)


@pytest.mark.parametrize("key, where", [("[]", "1:1: []: unknown key"), ("x[y]", "machines.a.x[y]: unknown key")])
def test_a_key_that_looks_like_a_pydantic_tag_is_named(key: str, where: str) -> None:
    """Keys with brackets are the user's, not pydantic's union tags: found by the fuzz test as a traceback
    (``{'[]': null}`` left an empty location)."""
    text = f"'{key}': null\n" if key == "[]" else f"version: 1\nmachines:\n  a:\n    mac: 52:54:00:00:00:01\n    '{key}': 1\n"
    with pytest.raises(InventoryError) as exc:
        parse_inventory(text, "inv.yaml")
    assert where in str(exc.value)
