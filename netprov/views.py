"""Views of a Plan: rich text for terminals, JSON for machines, markdown for CI summaries.

Pure functions over the same ``Plan`` value (diff once, render many). Secrets are
already masked in the plan; these only lay it out.
"""

from __future__ import annotations

import json
from typing import Any

from netprov.core.plan import Action, Change, Plan

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-", Action.NOOP: " "}
STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta", Action.DELETE: "red",
         Action.NOOP: "dim"}


def summary_line(plan: Plan) -> str:
    """'Plan: 3 to create, 1 to update, 0 to delete (storage:nas 3/1/0, pxe:pxe 0/0/0); 1 refused.'"""
    counts = plan.counts()
    total = {a: sum(c[a] for c in counts.values()) for a in ("create", "update", "replace", "delete")}
    if not plan.has_changes:
        head = "No changes. The world matches the inventory."
    else:
        replaced = f" ({total['replace']} replaced)" if total["replace"] else ""
        head = (f"Plan: {total['create']} to create, {total['update'] + total['replace']} to update{replaced}, "
                f"{total['delete']} to delete.")
    per = ", ".join(f"{system}: {c['create']}+ {c['update'] + c['replace']}~ {c['delete']}-"
                    for system, c in sorted(counts.items()))
    refused = len([c for c in plan.changes if c.refused and c.is_change and not c.data.get("advisory")])
    advisory = len([c for c in plan.changes if c.refused and c.is_change and c.data.get("advisory")])
    tail = (f" {refused} refused (see above)." if refused else "") + (
        f" {advisory} left out (see above)." if advisory else "")
    return f"{head} [{per}]{tail}" if per else head


def _fields(d: dict[str, Any] | None) -> dict[str, Any]:
    return d or {}


def change_lines(c: Change, *, verbose: bool = False) -> list[str]:
    """Plain lines for one change (no markup)."""
    lines = [f"{SYMBOL[c.action]} {c.address}  ({c.action.value}: {c.reason})"]
    if c.refused:
        lines.append(f"    ! refused: {c.refused}")
    before, after = _fields(c.before), _fields(c.after)
    keys = sorted(set(before) | set(after))
    if c.diff and not verbose:
        keys = [k for k in keys if k != "sha256"]  # the diff says it better
    for key in keys:
        b, a = before.get(key), after.get(key)
        if c.action is Action.CREATE:
            lines.append(f"    {key}: {a!r}")
        elif key not in before and c.action in (Action.DELETE, Action.REPLACE):   # what it keeps (the net)
            lines.append(f"    {key}: {a!r}")
        elif c.action is Action.DELETE:
            lines.append(f"    {key}: {b!r}")
        elif b != a:
            lines.append(f"    {key}: {b!r} -> {a!r}")
    for item in c.cascade:
        lines.append(f"    also removes: {item}")
    if c.diff and (verbose or c.action is not Action.CREATE or len(c.diff) < 4000):
        lines += ["    " + line for line in c.diff.rstrip("\n").splitlines()]
    return lines


def plan_text(plan: Plan, *, verbose: bool = False) -> str:
    """The plan as plain text (pipes, logs, tests)."""
    out: list[str] = []
    for system in _systems(plan):
        items = [c for c in plan.changes if c.system == system and (c.is_change or verbose)]
        if not items:
            continue
        out.append(f"# {system}")
        for c in items:
            out += change_lines(c, verbose=verbose)
        out.append("")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def plan_rich(plan: Plan, console: Any, *, verbose: bool = False) -> None:
    """The plan on a rich console (colour when the console has it)."""
    from rich.text import Text
    for system in _systems(plan):
        items = [c for c in plan.changes if c.system == system and (c.is_change or verbose)]
        if not items:
            continue
        console.print(Text(f"# {system}", style="bold"))
        for c in items:
            lines = change_lines(c, verbose=verbose)
            console.print(Text(lines[0], style=STYLE[c.action]))
            for line in lines[1:]:
                style = ""
                stripped = line.strip()
                if stripped.startswith("! refused"):
                    style = "bold red"
                elif stripped.startswith("+") and not stripped.startswith("+++"):
                    style = "green"
                elif stripped.startswith("-") and not stripped.startswith("---"):
                    style = "red"
                elif stripped.startswith("@@"):
                    style = "cyan"
                console.print(Text(line, style=style))
        console.print()
    console.print(Text(summary_line(plan), style="bold"))


def plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"


def plan_markdown(plan: Plan) -> str:
    """For $GITHUB_STEP_SUMMARY. Names, reasons and file contents are text, never markdown or HTML:
    cells are escaped and code spans and fences are longer than any run of backticks inside."""
    lines = ["## netprov plan", "", md_text(summary_line(plan)), ""]
    if plan.has_changes or plan.refused:
        lines += ["| | address | action | reason |", "|---|---|---|---|"]
        for c in plan.changes:
            if c.is_change:
                mark = " **refused: " + md_text(c.refused) + "**" if c.refused else ""
                lines.append(f"| {md_code(SYMBOL[c.action])} | {md_code(c.address)} | {c.action.value} | "
                             f"{md_text(c.reason)}{mark} |")
        diffs = [c for c in plan.changes if c.diff and c.is_change]
        if diffs:
            lines += ["", "<details><summary>File diffs</summary>", ""]
            for c in diffs:
                body = c.diff.rstrip("\n")
                fence = "`" * max(3, _longest_run(body, "`") + 1)
                lines += [md_code(c.address), "", f"{fence}diff", body, fence, ""]
            lines.append("</details>")
    return "\n".join(lines) + "\n"


_MD_SPECIAL = set("\\`*_{}[]()#+-.!|<>~&:\"'=$")


def md_text(text: str) -> str:
    """Plain text inside a markdown table cell: one line, every ASCII punctuation mark escaped."""
    one_line = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in one_line)


def md_code(text: str) -> str:
    """A code span holding ``text`` exactly (one line), whatever backticks it contains."""
    one_line = " ".join(str(text).split()).replace("|", "\\|")
    ticks = "`" * (_longest_run(one_line, "`") + 1)
    return f"{ticks} {one_line} {ticks}" if "`" in one_line else f"{ticks}{one_line}{ticks}"


def _longest_run(text: str, ch: str) -> int:
    best = run = 0
    for c in text:
        run = run + 1 if c == ch else 0
        best = max(best, run)
    return best


def _systems(plan: Plan) -> list[str]:
    seen: list[str] = []
    for c in plan.changes:
        if c.system not in seen:
            seen.append(c.system)
    return seen
