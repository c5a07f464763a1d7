"""Every way netprov prints text shows external text exactly: never markup, never emoji codes.

NAS messages, object names, command output, file contents and inventory values reach these
helpers; ``[/dev/zvol/...]`` once made rich raise (and the failure it described vanish).
"""

from __future__ import annotations

import pytest

from netprov import views
from netprov.cli import console
from netprov.core.inventory import Problem
from netprov.core.plan import Action, Change, Plan

HOSTILE = [
    "Device [/dev/zvol/tank/netboot/m3] is busy",
    "[bold]x[/bold] and [/] and [red]",
    "a :warning: and :smiley: code",
    "[link=http://x]y[/link] \\[escaped]",
    "tank/netboot/[m1]",
]


class Captured:
    def __init__(self, capsys) -> None:
        self.capsys = capsys

    def out(self) -> str:
        return self.capsys.readouterr().out

    def err(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def streams(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    console.reset()
    yield Captured(capsys)
    console.reset()


@pytest.mark.parametrize("text", HOSTILE)
def test_the_console_helpers_print_text_exactly(streams, text) -> None:
    console.info(text)
    console.error(text)
    console.warning(text)
    console.warning(text, label="note:")
    console.rule(text)
    console.problem(Problem("inv.yaml", 3, 5, "machines.m1", text))
    console.problem(Problem("inv.yaml", 3, 5, "machines.m1", text, severity="warning"))
    assert streams.err().splitlines() == [
        text, f"error: {text}", f"warning: {text}", f"note: {text}", f"== {text}",
        f"inv.yaml:3:5: machines.m1: {text}", f"inv.yaml:3:5: warning: machines.m1: {text}"]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_plan_with_hostile_names_and_reasons_renders_exactly(streams, text) -> None:
    c = Change("storage:nas", "target", f"target[{text}]", Action.CREATE, f"create: {text}", None,
               {"name": text}, refused=text, machine="m1")
    plan = Plan(changes=(c,), fingerprints={}, inventory="inv.yaml", inventory_sha256="0" * 64)
    views.plan_rich(plan, console.out())
    printed = streams.out()
    assert printed == views.plan_text(plan)
    assert f"target[{text}]  (create: create: {text})" in printed and f"! refused: {text}" in printed


def test_progress_lines_in_a_pipe_are_text(streams) -> None:
    from netprov.cli.commands.plan_apply import ProgressReporter
    c = Change("storage:nas", "zvol", "zvol[tank/netboot/m1]", Action.CREATE, "r", None, {}, machine="m1")
    with ProgressReporter({"storage:nas": 1}, quiet=False) as reporter:
        reporter.event("storage:nas", "phase", None, "create/[bold]update")
        reporter.event("storage:nas", "start", c)
        reporter.event("storage:nas", "failed", c, HOSTILE[0])
    assert streams.err().splitlines() == [f"storage:nas: create zvol[tank/netboot/m1]: FAILED: {HOSTILE[0]}"]


def test_known_secrets_are_masked_in_every_message(streams, monkeypatch) -> None:
    monkeypatch.setattr(console, "_SECRETS", set())
    console.add_secrets("Zq9-chap-secret", None, "")
    output = "restart failed: set password Zq9-chap-secret"
    console.info(output)
    console.error(output)
    console.warning(output)
    console.problem(Problem("inv.yaml", 1, 1, "", output))
    err = streams.err()
    assert "Zq9-chap-secret" not in err and err.count("set password ********") == 4
