"""YAML input is bounded (issue 10, item 6): alias bombs, merge-key chains, deep nesting and huge files end in a
located one-line error, in bounded memory, while a 10,000-machine inventory still parses."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from netprov.core import yamltree
from netprov.core.inventory_load import MAX_INVENTORY_CHARS, parse_inventory
from netprov.errors import InventoryError

ROOT = Path(__file__).resolve().parents[2]


def laughs(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": each level lists the previous one `width` times (9**9 strings)."""
    lines = ["version: 1", "l0: &l0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def mapping_laughs(levels: int = 12) -> str:
    lines = ["version: 1", "m0: &m0 {a: lol, b: lol, c: lol, d: lol}"]
    for i in range(1, levels):
        p = f"*m{i - 1}"
        lines.append(f"m{i}: &m{i} {{a: {p}, b: {p}, c: {p}, d: {p}}}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_its_line() -> None:
    text = laughs()
    assert len(text.encode()) < 512  # the was 401 bytes
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load(text)
    assert "alias" in info.value.message
    assert info.value.line is not None and 3 <= info.value.line <= 10


def test_mapping_bomb_is_refused() -> None:
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load(mapping_laughs())
    assert "alias" in info.value.message and info.value.line is not None


def test_merge_key_chain_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mapping merges the previous one plus a key of its own: the pairs grow quadratically."""
    monkeypatch.setattr(yamltree, "MAX_VALUES", 100_000)  # the same bound, reached with less work
    lines = ["m0: &m0 {k0: 1}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: 1}}" for i in range(1, 500)]
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load("\n".join(lines))
    assert "values" in info.value.message and info.value.line is not None


def test_nesting_through_aliases_is_bounded() -> None:
    lines = ["a0: &a0 [[[[[[[[[[1]]]]]]]]]]"] + [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 12)]
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load("\n".join(lines))
    assert "levels deep" in info.value.message and info.value.line is not None


def test_a_recursive_alias_is_an_error_not_a_recursion() -> None:
    with pytest.raises(yamltree.YamlError):
        yamltree.load("a: &a [*a]\n")


def test_many_tiny_values_are_refused_before_composing() -> None:
    text = "a: [" + "1," * yamltree.MAX_VALUES + "1]\n"
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load(text)
    assert "structure characters" in info.value.message


def test_legitimate_aliases_still_work_and_are_shared_values() -> None:
    tree = yamltree.load("d: &d {size: 32G, sparse: true}\nm1: {disk: *d}\nm2: {disk: *d}\n")
    assert tree["m1"]["disk"] == tree["m2"]["disk"] == {"size": "32G", "sparse": True}


def test_ten_thousand_machines_with_aliases_parse() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_render import make_inventory
    finally:
        sys.path.pop(0)
    # the anchor lives under defaults (an unknown top-level key would be refused)
    text = make_inventory(10_000).replace(
        "defaults: {storage: nas, pxe_server: pxe, disk: {size: 32G, sparse: true}}",
        "defaults: {storage: nas, pxe_server: pxe, disk: &d {size: 32G, sparse: true}}").replace(
        "firmware: bios}", "firmware: bios, disk: *d}")
    assert len(text) < MAX_INVENTORY_CHARS // 64  # the size limit is far above a real inventory
    loaded = parse_inventory(text, "big.yaml")
    assert len(loaded.machines) == 10_000


def test_an_oversized_file_is_refused_without_parsing() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("#" * (MAX_INVENTORY_CHARS + 1), "huge.yaml")
    assert "larger than 64 MiB" in str(info.value)


def _limited(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("make", [laughs, mapping_laughs], ids=["lists", "mappings"])
def test_validate_refuses_a_bomb_in_bounded_memory(make, tmp_path: Path) -> None:
    """The CLI, in a process that may not grow past 1 GiB: a regression fails instead of eating the machine."""
    path = tmp_path / "bomb.yaml"
    path.write_text(make())
    proc = subprocess.run([sys.executable, "-m", "netprov", "validate", str(path)], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limited(1 << 30), cwd=ROOT,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "MemoryError" not in out
    lines = [ln for ln in out.splitlines() if "bomb.yaml:" in ln]
    assert len(lines) == 1 and "alias" in lines[0], out
    assert lines[0].split("bomb.yaml:")[1].split(":")[0].isdigit(), out


def test_the_bounded_read_refuses_an_oversized_file(tmp_path: Path) -> None:
    from netprov.adapters.local import read_inventory
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write("# " + "x" * (MAX_INVENTORY_CHARS + 10) + "\nversion: 1\n")
    with pytest.raises(InventoryError) as info:
        read_inventory(path)
    assert "larger than 64 MiB" in str(info.value)


def test_the_benchmark_inventory_size_is_as_documented() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_render import make_inventory
    finally:
        sys.path.pop(0)
    assert len(make_inventory(10_000).encode()) < 1 << 20  # "10,000 machines take under 1 MiB"


def test_deep_nesting_is_an_error_not_a_recursion_error() -> None:
    """libyaml allows 1,000 levels; building them recursed past Python's limit (a RecursionError traceback)."""
    with pytest.raises(yamltree.YamlError) as info:
        yamltree.load("version: 1\na: " + "[" * 990 + "]" * 990 + "\n")
    assert "levels deep" in info.value.message and info.value.line == 2
