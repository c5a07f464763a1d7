"""Issue 13 item 4: a plan a person reads. Grouped by machine (shared objects apart), one line per created
machine in a big plan (``--full`` shows every object, under 20 lines a machine), YAML/JSON-style values,
and ``--json`` naming the machine of every per-machine boot file. Real offline plans through the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from netprov import plan_view as views
from netprov.cli import console
from netprov.cli.app import main


def inventory(n: int) -> str:
    lines = [
        "version: 1",
        "storage:",
        "  nas: {url: wss://nas.lan/api/current, api_key_env: NAS_KEY, parent: tank/netboot, portal: 10.0.0.10}",
        "pxe_servers:",
        "  pxe: {ssh: {host: pxe.lan}, mode: dhcp, interface: eth0, address: 10.0.0.5, subnet: 10.0.0.0/16,",
        "        range: {start: 10.0.200.1, end: 10.0.250.254}}",
        "defaults: {storage: nas, pxe_server: pxe, disk: {size: 32G, sparse: true}}",
        "machines:",
    ]
    for i in range(n):
        lines.append(f"  node{i:03d}: {{mac: '52:54:00:00:01:{i:02x}', ip: 10.0.1.{i + 1}, "
                     f"firmware: {'uefi' if i % 2 else 'bios'}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def inv(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def write(n: int) -> str:
        path = tmp_path / f"inv{n}.yaml"
        path.write_text(inventory(n))
        return str(path)
    return write


def plan(capsys, *argv: str) -> str:
    console.reset()
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--offline", *argv])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, out + err
    return out


def groups(out: str) -> dict[str, list[str]]:
    """'# heading' -> its lines (up to the blank line that ends it)."""
    found: dict[str, list[str]] = {}
    for block in out.split("\n\n"):
        lines = block.splitlines()
        if lines and lines[0].startswith("# "):
            found[lines[0]] = lines[1:]
    return found


def test_a_small_plan_groups_each_machines_objects_and_files_under_it(inv, capsys) -> None:
    out = plan(capsys, inv(3))
    heads = list(groups(out))
    assert heads[0] == "# shared"
    assert heads[1:] == [f"# machine node{i:03d}: 5 NAS objects, 2 boot files (pxe:pxe, storage:nas)"
                         for i in range(3)]
    shared = groups(out)["# shared"]
    assert any("portal[0.0.0.0:3260]" in line for line in shared)
    assert any("pxe.dnsmasq[netprov.conf]" in line for line in shared)
    node1 = "\n".join(groups(out)[heads[2]])
    for address in ("zvol[tank/netboot/node001]", "extent[node001]", "target[node001]",
                    "pxe.hosts[node001.conf]", "pxe.tftp[52-54-00-00-01-01.ipxe]"):
        assert f"+ {address}" in node1
    assert "node000" not in node1 and "node002" not in node1
    # details show in a small plan: an update's attributes, what a create makes
    assert "enable: false -> true" in out and 'state: "STOPPED" -> "RUNNING"' in out
    assert 'volsize: "32G"' in out


def test_values_print_as_yaml_json_not_python_reprs(inv, capsys) -> None:
    out = plan(capsys, inv(2))
    assert "sparse: true" in out and '"auth": null' in out and '["iqn.2010-04.org.ipxe:node000"]' in out
    assert not re.search(r"\b(True|False|None)\b", out), out
    assert "'" not in out.replace("don't", ""), out


def test_a_big_create_is_one_line_per_machine_and_full_shows_every_object(inv, capsys) -> None:
    n = 25
    out = plan(capsys, inv(n))
    brief = [line for line in out.splitlines() if line.startswith("  + machine node")]
    assert len(brief) == n and brief[0] == "  + machine node000: 5 NAS objects, 2 boot files (pxe:pxe, storage:nas)"
    assert "zvol[tank/netboot/node000]" not in out and "netprov plan --full" in out
    assert len(out.splitlines()) < 2 * n + 40
    full = plan(capsys, "--full", inv(n))
    machines = {h: lines for h, lines in groups(full).items() if h.startswith("# machine ")}
    assert len(machines) == n
    for head, lines in machines.items():
        assert "+ zvol[" in "\n".join(lines) and len(lines) + 1 < 20, (head, lines)
    assert full.rstrip().splitlines()[-1] == out.rstrip().splitlines()[-1]     # the same summary line


def test_json_names_the_machine_of_every_per_machine_boot_file(inv, capsys) -> None:
    data = json.loads(plan(capsys, "--json", inv(3)))
    files = [c for c in data["changes"] if c["system"] == "pxe:pxe" and c["kind"] == "file"] or \
        [c for c in data["changes"] if c["system"] == "pxe:pxe" and c["address"].startswith("pxe.")]
    own = [c for c in files if re.search(r"\[(node\d+\.conf|(?:[0-9a-f]{2}-){5}[0-9a-f]{2}\.ipxe)\]", c["address"])]
    assert len(own) == 6
    for c in own:
        assert c["machine"] and not c["shared"], c
        assert c["machine"] in c["address"] or c["machine"] == f"node{int(c['address'][-8:-6], 16):03d}"
    shared = [c for c in files if c not in own]
    assert shared, "the plan has no shared boot file (dnsmasq config, boot.ipxe): nothing checked"
    for c in shared:
        assert c["machine"] is None and c["shared"], c


def test_the_colour_view_says_what_the_text_view_says(inv, capsys, monkeypatch) -> None:
    """On a terminal with colour the plan is one styled Text: the same words as the plain text."""
    import io

    from rich.console import Console
    monkeypatch.delenv("NO_COLOR")
    from netprov.core.plan import Action, Change, Plan
    c = Change("storage:nas", "zvol", "zvol[tank/netboot/m1]", Action.UPDATE, "grow volsize 8G -> 16G",
               {"volsize": "8G", "sparse": False}, {"volsize": "16G", "sparse": True}, machine="m1")
    p = Plan(changes=(c,), fingerprints={})
    buf = io.StringIO()
    views.plan_rich(p, Console(file=buf, force_terminal=True, color_system="standard", soft_wrap=True,
                               markup=False, highlight=False, width=40))
    printed = buf.getvalue()
    assert "\x1b[" in printed
    piped = io.StringIO()
    views.plan_rich(p, Console(file=piped, force_terminal=False, markup=False, highlight=False))
    assert "\x1b[" not in piped.getvalue() and "zvol[tank/netboot/m1]" in piped.getvalue()
    assert re.sub(r"\x1b\[[0-9;]*m", "", printed) == piped.getvalue()
    assert "sparse: false -> true" in printed and 'volsize: "8G" -> "16G"' in printed


def test_a_quiet_console_prints_no_plan() -> None:
    """apply -q hands the view a quiet console: not one line of the plan (not even to a pipe)."""
    import io

    from rich.console import Console

    from netprov.core.plan import Action, Change, Plan
    buf = io.StringIO()
    c = Change("storage:nas", "zvol", "zvol[tank/netboot/m1]", Action.CREATE, "zvol does not exist", None,
               {"volsize": "8G"}, machine="m1")
    views.plan_rich(Plan(changes=(c,), fingerprints={}), Console(file=buf, quiet=True, markup=False))
    loud = io.StringIO()
    views.plan_rich(Plan(changes=(c,), fingerprints={}), Console(file=loud, markup=False))
    assert buf.getvalue() == "" and "zvol[tank/netboot/m1]" in loud.getvalue()
