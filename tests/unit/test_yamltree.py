"""YAML 1.2 scalars, located keys, duplicate keys refused (netprov.core.yamltree)."""

from __future__ import annotations

import pytest

from netprov.core import yamltree


def test_yaml_12_scalars() -> None:
    data = yamltree.load("a: 52:54:00:12:34:56\nb: yes\nc: 010\nd: 1.5\ne: ~\nf: true\ng: 0x1f\nh: '12'\n"
                         "i: off\nj: 2026-11-26\nk: 1_000\n")
    assert data == {"a": "52:54:00:12:34:56", "b": "yes", "c": 10, "d": 1.5, "e": None, "f": True, "g": 31,
                    "h": "12", "i": "off", "j": "2026-11-26", "k": "1_000"}


def test_marks_are_one_based() -> None:
    data = yamltree.load("top:\n  key: value\n  list:\n    - x\n")
    assert data["top"].key_mark("key") == (2, 3)
    assert data["top"].value_mark("key") == (2, 8)
    assert data["top"]["list"].item_mark(0) == (4, 7)


def test_duplicate_key_is_an_error_with_both_lines() -> None:
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load("machines:\n  a: {mac: x}\n  b: {}\n  a: {}\n")
    assert info.value.line == 4 and "first written at line 2" in info.value.message


def test_anchors_and_merge_keys() -> None:
    data = yamltree.load("base: &b {size: 8G}\nm: {<<: *b, sparse: true}\n")
    assert data["m"] == {"size": "8G", "sparse": True}
