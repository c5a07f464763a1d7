"""Views of a Plan: rich text for terminals, JSON for machines, markdown for CI summaries.

Pure functions over the same ``Plan`` value (diff once, render many). Secrets are
already masked in the plan; these only lay it out.
"""

from __future__ import annotations

import json
import re
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


SUMMARY_OVER = 20   # more machines created than this: one line per created machine unless --full


def value_text(v: Any) -> str:
    """A value as YAML/JSON readers write it: true/false/null, "strings", JSON lists and objects."""
    try:
        return json.dumps(v, sort_keys=False, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return json.dumps(str(v))


def _mac_of(c: Change) -> str | None:
    """The MAC a per-MAC boot script is named for (``pxe.tftp[52-54-00-00-00-01.ipxe]``), else None."""
    m = _MAC_FILE.search(str(c.address))
    return m.group(1).replace("-", ":") if m else None


_MAC_FILE = re.compile(r"\[(?:[^\]]*/)?((?:[0-9a-f]{2}-){5}[0-9a-f]{2})\.ipxe\]$")


def change_lines(c: Change, *, verbose: bool = False) -> list[str]:
    """Plain lines for one change (no markup). A create says what it makes on one line; an update shows
    each changed attribute; a created file's content shows with ``verbose`` (it says its size otherwise)."""
    lines = [f"{SYMBOL[c.action]} {c.address}  ({c.action.value}: {c.reason})"]
    if c.refused:
        lines.append(f"    ! refused: {c.refused}")
    before, after = _fields(c.before), _fields(c.after)
    keys = sorted(set(before) | set(after))
    if c.diff and not verbose:
        keys = [k for k in keys if k != "sha256"]  # the diff says it better
    created_file = c.diff is not None and c.action is Action.CREATE and not verbose
    if c.action is Action.CREATE:
        parts = [f"{k}: {value_text(after.get(k))}" for k in keys]
        if created_file:
            parts.append(f"{len(c.diff.rstrip(chr(10)).splitlines()) - 3} lines")
        if parts:
            lines.append("    " + ", ".join(parts))
    else:
        for key in keys:
            b, a = before.get(key), after.get(key)
            if key not in before and c.action in (Action.DELETE, Action.REPLACE):   # what it keeps (the net)
                lines.append(f"    {key}: {value_text(a)}")
            elif c.action is Action.DELETE:
                lines.append(f"    {key}: {value_text(b)}")
            elif b != a:
                lines.append(f"    {key}: {value_text(b)} -> {value_text(a)}")
    for item in c.cascade:
        lines.append(f"    also removes: {item}")
    if c.diff and not created_file and (verbose or c.action is not Action.CREATE):
        lines += ["    " + line for line in c.diff.rstrip("\n").splitlines()]
    return lines


def _groups(plan: Plan, verbose: bool) -> tuple[list[Change], dict[str, list[Change]]]:
    """Shared changes (in plan order), and each machine's changes (machines in order of first change)."""
    shared: list[Change] = []
    machines: dict[str, list[Change]] = {}
    for c in plan.changes:
        if not (c.is_change or verbose):
            continue
        if c.machine:
            machines.setdefault(c.machine, []).append(c)
        else:
            shared.append(c)
    return shared, machines


def _machine_head(name: str, items: list[Change]) -> str:
    nas = sum(1 for c in items if c.system.startswith("storage:") and c.is_change)
    files = sum(1 for c in items if not c.system.startswith("storage:") and c.is_change)
    acts = {c.action for c in items if c.is_change}
    sym = SYMBOL[acts.pop()] if len(acts) == 1 else "~"
    what = [f"{nas} NAS object{'s' if nas != 1 else ''}"] if nas else []
    what += [f"{files} boot file{'s' if files != 1 else ''}"] if files else []
    systems = ", ".join(sorted({c.system for c in items}))
    return f"{sym} machine {name}: {', '.join(what) or 'no changes'} ({systems})"


def _mac_change(items: list[Change]) -> str | None:
    old = sorted({m for c in items if c.action is Action.DELETE and (m := _mac_of(c))})
    new = sorted({m for c in items if c.action is Action.CREATE and (m := _mac_of(c))})
    if old and new and old != new:
        return f"MAC changed from {', '.join(old)} to {', '.join(new)}: its boot script moves"
    return None


def plan_lines(plan: Plan, *, verbose: bool = False, full: bool = False) -> list[tuple[str, str]]:
    """(line, style) pairs: shared objects first, then one group per machine. A machine that is only
    created shows as one line when more than SUMMARY_OVER machines are created (``full`` shows all)."""
    shared, machines = _groups(plan, verbose)
    created = [m for m, items in machines.items() if all(c.action is Action.CREATE for c in items if c.is_change)]
    brief = not (full or verbose) and len(created) > SUMMARY_OVER
    out: list[tuple[str, str]] = []

    def change(c: Change, indent: str) -> None:
        lines = change_lines(c, verbose=verbose)
        out.append((indent + lines[0], STYLE[c.action]))
        for line in lines[1:]:
            out.append((indent + line, _line_style(line)))

    if shared:
        out.append(("# shared", "bold"))
        for system in _systems(plan):
            for c in (c for c in shared if c.system == system):
                change(c, "  ")
        out.append(("", ""))
    if brief:
        out.append((f"# {len(created)} machines created (netprov plan --full shows each object)", "bold"))
        for m in created:
            items = machines[m]
            out.append(("  " + _machine_head(m, items), STYLE[Action.CREATE]
                        ) if not any(c.refused for c in items) else ("  " + _machine_head(m, items), "bold red"))
            for c in items:
                if c.refused:
                    change(c, "    ")
        out.append(("", ""))
    for m, items in machines.items():
        if brief and m in created:
            continue
        out.append(("# " + _machine_head(m, items)[2:], "bold"))
        mac = _mac_change(items)
        if mac:
            out.append(("  " + mac, "yellow"))
        for c in items:
            change(c, "  ")
        out.append(("", ""))
    out.append((summary_line(plan), "bold"))
    return out


def _line_style(line: str) -> str:
    stripped = line.strip()
    if stripped.startswith("! refused"):
        return "bold red"
    if stripped.startswith("+") and not stripped.startswith("+++"):
        return "green"
    if stripped.startswith("-") and not stripped.startswith("---"):
        return "red"
    if stripped.startswith("@@"):
        return "cyan"
    return ""


def plan_text(plan: Plan, *, verbose: bool = False, full: bool = False) -> str:
    """The plan as plain text (pipes, logs, tests)."""
    return "\n".join(line for line, _ in plan_lines(plan, verbose=verbose, full=full)) + "\n"


def plan_rich(plan: Plan, console: Any, *, verbose: bool = False, full: bool = False) -> None:
    """The plan on a rich console (colour when the console has it): built as one Text, printed once."""
    from rich.text import Text
    if console.quiet:
        return
    lines = plan_lines(plan, verbose=verbose, full=full)
    if console.no_color or not console.is_terminal:
        console.file.write("\n".join(line for line, _ in lines) + "\n")
        console.file.flush()
        return
    text = Text()
    for line, style in lines:
        text.append(line, style=style or None)
        text.append("\n")
    console.print(text, end="")


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
