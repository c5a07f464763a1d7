"""Canonical forms and derived names (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netprov.core import names
from netprov.core.units import format_size, normalise_mac, parse_size, parse_volblocksize


@pytest.mark.parametrize("text,expected", [("64G", 64 * 2**30), ("1T", 2**40), ("512M", 512 * 2**20),
                                           ("1.5T", 3 * 2**39), ("100GiB", 100 * 2**30), ("4096", 4096),
                                           (8192, 8192), ("16k", 16384)])
def test_parse_size(text, expected) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "0", "0G", "-1G", "1.3", "1X", True])
def test_parse_size_refuses(bad) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@given(st.integers(min_value=1, max_value=2**50))
def test_format_size_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


def test_volblocksize_spellings() -> None:
    assert parse_volblocksize("16k") == parse_volblocksize("16384") == parse_volblocksize("16KB") == "16K"
    assert parse_volblocksize("512B") == "512"
    with pytest.raises(ValueError):
        parse_volblocksize("3K")


@pytest.mark.parametrize("bad", ["52:54:00:12:34", "52:54:00:12:34:5g", "52:54-00:12:34:56", "5254.0012.345",
                                 "01:00:5e:00:00:01", ""])
def test_mac_refuses(bad) -> None:
    with pytest.raises(ValueError):
        normalise_mac(bad)


def test_iscsi_names_follow_the_facts() -> None:
    assert names.iscsi_name("tank/a.b_c@s:x") == "tank:a-b-c:s-x"
    long = names.iscsi_name("m" * 100)
    assert len(long) <= 64 and long.startswith("m" * 24 + "-")
    assert names.iscsi_name("m" * 100) != names.iscsi_name("m" * 99 + "n")
    assert names.target_iqn("iqn.2005-10.org.freenas.ctl", "israfel") == "iqn.2005-10.org.freenas.ctl:israfel"
    assert names.zvol_device("SSD Pool/nb", "m1") == "zvol/SSD+Pool/nb/m1"
    assert len(names.extent_serial("tank/nb", "m1")) == 15


@given(st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True), st.text("abc-", max_size=30))
def test_every_valid_machine_name_gives_a_valid_target_name(name: str, prefix: str) -> None:
    assert names.check_machine_name(name) is None
    t = names.target_name(name, prefix)
    assert re.fullmatch(r"[-a-z0-9.:]+", t) and len(t) <= names.ISCSI_NAME_MAX   # what TrueNAS accepts
    assert "." not in t and "/" not in t  # SCST flattening can't make two of them collide
