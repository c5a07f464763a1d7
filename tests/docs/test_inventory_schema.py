"""`netprov schema` (committed as docs/schema/inventory.schema.json) accepts every inventory netprov accepts
that the repository ships or documents, and rejects the bad ones a schema can see.

Checked with the `jsonschema` library (Draft 2020-12), the way an editor's yaml-language-server reads it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netprov.core import yamltree
from netprov.core.yamltree import plain

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra: pip install -e '.[test]'")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import DOCS, blocks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "schema" / "inventory.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../docs/schema/inventory.schema.json"
TOP_LEVEL = {"version", "storage", "pxe_servers", "defaults", "templates", "machines"}

SHIPPED = sorted([*ROOT.glob("inventory/*.yaml"), ROOT / "tests" / "inventories" / "base.yaml",
                  *ROOT.glob("tests/cases/**/inventory.yaml")])
BAD = sorted((ROOT / "tests" / "inventories" / "bad").glob("*.yaml"))
# What only `netprov validate` can catch: YAML itself, and rules across fields, entries or defaults.
NOT_FOR_A_SCHEMA = {
    "yaml_syntax.yaml": "not YAML",
    "duplicate_name.yaml": "a duplicate key is a YAML-level error",
    "arm64_bios.yaml": "firmware may come from defaults",
    "duplicate_ip.yaml": "across machines", "duplicate_mac.yaml": "across machines",
    "install_without_kernel.yaml": "install may come from defaults",
    "ip_outside_subnet.yaml": "against the PXE server's subnet",
    "renamed_from_self.yaml": "against the machine's own name",
    "renamed_from_still_present.yaml": "across machines", "renamed_twice.yaml": "across machines",
    "size_not_multiple.yaml": "against volblocksize, which may come from defaults",
    "too_long_for_freenas.yaml": "name length plus parent, per storage",
    "undefined_pxe_server.yaml": "a reference", "undefined_storage.yaml": "a reference",
    # value rules of the hostile-input checks (issue 10): iPXE's own syntax and the path policy
    "install_kernel_operator.yaml": "iPXE operators in a word", "ipxe_source_etc.yaml": "the path policy",
    "kernel_args_newline.yaml": "iPXE line rules",
    # a pattern is a search whose `$` also matches before a final newline in Python's re (validate
    # uses fullmatch); an editor's ECMAScript `$` does not, so an editor still flags these
    "name_trailing_newline.yaml": "a final newline", "parent_trailing_newline.yaml": "a final newline",
}
# Documentation blocks that show a mistake on purpose (`yaml file=...`), then the error it gets.
DOC_MISTAKES = {"/tmp/netprov-docs/ci-bad.yaml", "/tmp/netprov-docs/typo.yaml"}


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, data) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(data)]


def test_committed_schema_is_what_netprov_schema_prints() -> None:
    proc = subprocess.run([sys.executable, "-m", "netprov", "schema"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(SCHEMA_FILE.read_text()), (
        "docs/schema/inventory.schema.json is out of date: netprov schema > docs/schema/inventory.schema.json")
    assert proc.stdout == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_schema_accepts_every_shipped_inventory(validator, path: Path) -> None:
    assert not _errors(validator, plain(yamltree.load(path.read_text()))), _errors(
        validator, plain(yamltree.load(path.read_text())))


def _doc_inventories() -> list[tuple[str, str | None, dict]]:
    """Every YAML block in the docs that is an inventory or a part of one (only top-level inventory keys)."""
    out = []
    for path in DOCS:
        for block in blocks(path):
            if block.lang != "yaml":
                continue
            data = plain(yamltree.load("\n".join(block.body)))
            if isinstance(data, dict) and data and set(data) <= TOP_LEVEL:
                out.append((f"{path.relative_to(ROOT)}:{block.line}", block.attr("file"), {"version": 1, **data}))
    return out


def test_schema_accepts_every_inventory_in_the_docs(validator) -> None:
    found = _doc_inventories()
    assert len(found) >= 8, found
    wrong = []
    for where, dest, data in found:
        errors = _errors(validator, data)
        if dest in DOC_MISTAKES:
            if not errors:
                wrong.append(f"{where}: shows a mistake, but the schema accepts it")
        elif errors:
            wrong.append(f"{where}: {errors}")
    assert not wrong, "\n".join(wrong)
    assert {dest for _, dest, _ in found} >= DOC_MISTAKES


@pytest.mark.parametrize("path", [p for p in BAD if p.name not in NOT_FOR_A_SCHEMA], ids=lambda p: p.name)
def test_schema_rejects_what_it_can_of_the_bad_inventories(validator, path: Path) -> None:
    assert _errors(validator, plain(yamltree.load(path.read_text()))), f"{path.name} passes the schema"


def test_the_bad_inventories_a_schema_cannot_catch_exist() -> None:
    assert set(NOT_FOR_A_SCHEMA) <= {p.name for p in BAD}


def test_example_inventories_name_the_schema() -> None:
    for path in sorted(ROOT.glob("inventory/*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == SCHEMA_LINE, f"{path.name}: first line should be {SCHEMA_LINE!r}"
        assert (path.parent / first.split("$schema=", 1)[1]).resolve() == SCHEMA_FILE


def test_schema_checks_names_and_macs(validator) -> None:
    base = {"version": 1, "machines": {"node1": {"mac": "52:54:00:12:34:56"}}}
    assert not _errors(validator, base)
    for bad in ({"Node_1": {"mac": "52:54:00:12:34:56"}}, {"node1": {"mac": "52:54:00:12:34"}},
                {"node1": {"mac": "01:00:5e:00:00:01"}}, {"node1": {"mac": "52:54:00:12:34:56", "mca": 1}}):
        assert _errors(validator, {"version": 1, "machines": bad}), bad
    for good in ({"size": "64G"}, {"size": 68719476736}, {"size": "1.5T", "volblocksize": "16K"}):
        assert not _errors(validator, {"version": 1, "defaults": {"disk": good}}), good
    assert not _errors(validator, {"version": 1, "defaults": {"chap": False}})
    assert _errors(validator, {"version": 1, "defaults": {"chap": True}})
