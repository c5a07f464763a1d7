"""Every way netprov prints text shows external text exactly: never markup, never emoji codes.

NAS messages, object names, command output, file contents and inventory values reach these
helpers; ``[/dev/zvol/...]`` once made rich raise (and the failure it described vanish).
"""

from __future__ import annotations

import pytest

from netprov import plan_view as views
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
    assert printed == "".join(line + "\n" for line, _ in views.plan_lines(plan))
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


def test_the_markdown_summary_shows_hostile_text_as_text() -> None:
    """$GITHUB_STEP_SUMMARY is markdown (with HTML): names, reasons and file contents can't add
    links, images, HTML or formatting, nor close the diff's fence early."""
    from markdown_it import MarkdownIt
    reason = "drift: <img src=x onerror=alert(1)> [link](http://evil.example) **bold** | pipe `tick` _u_"
    diff = ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+```\n+</details><script>alert(1)</script>\n"
            "+[x](http://evil)")
    c = Change("pxe:pxe", "file", "pxe.tftp[a`b|c<i>.ipxe]", Action.UPDATE, reason, {"sha256": "0"},
               {"sha256": "1"}, refused=reason, diff=diff)
    plan = Plan(changes=(c,), fingerprints={}, inventory="inv.yaml", inventory_sha256="0" * 64)
    md = views.plan_markdown(plan)
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    flat = []
    for t in tokens:
        flat.append(t)
        flat += t.children or []
    html = [t.content.strip() for t in flat if t.type in ("html_inline", "html_block")]
    assert html == ["<details><summary>File diffs</summary>", "</details>"], html
    assert not [t for t in flat if t.type in ("link_open", "image", "em_open")]
    assert [t.type for t in flat].count("strong_open") == 1          # netprov's own "**refused: …**"
    fences = [t for t in flat if t.type == "fence"]
    assert len(fences) == 1 and fences[0].content == diff + "\n"
    cells = [t for t in tokens if t.type == "inline" and t.map and "drift" in t.content]
    text = "".join(ch.content for ch in cells[0].children if ch.type == "text")
    assert text == f"{reason} refused: {reason}"
    spans = [ch.content for t in tokens if t.type == "inline"
             for ch in t.children or [] if ch.type == "code_inline"]
    assert "pxe.tftp[a`b|c<i>.ipxe]" in spans, spans


def test_a_github_annotation_keeps_a_hostile_file_name_and_message_in_place(streams, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    console.problem(Problem("inv,title=x:y%.yaml", 3, 5, "machines.m1", "bad\n::error::forged"))
    err = streams.err().splitlines()
    assert "::error file=inv%2Ctitle=x%3Ay%25.yaml,line=3,col=5::machines.m1: bad%0A::error::forged" in err
