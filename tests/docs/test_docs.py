"""The documentation's examples run, and its links resolve.

Convention (also written in docs/architecture.md, "Documentation examples are tests"):

- A fenced block whose info string starts with ``console`` is a terminal session. Lines that
  start with ``$ `` are commands; the other lines up to the next command are expected output:
  each non-blank one must appear (as a substring of one line) in that command's output (stdout
  and stderr as a terminal shows them, interleaved), in the order shown. ``...`` inside a line stands for any text
  (a port, a temporary path); a line that is only ``...`` marks lines left out (any number
  may be, anywhere).
- ``$ netprov ...`` runs as ``python -m netprov ...`` from the repository root, with
  ``NO_COLOR=1`` and only a few variables of the caller's environment (PATH, HOME, LANG, LC_*). ``$ export VAR=value`` sets VAR for every later command of the same file.
  Any other command is an error: put it in a ``sh`` or ``text`` block instead.
- Every command must exit 0 unless the info string says otherwise: ``console exit=1``.
- ``python`` blocks are exec'd (cwd = repository root; one namespace per file).
- ``yaml file=/tmp/...`` blocks are written to that path (only under /tmp) before the blocks
  after them run, so an inventory shown in the docs can be validated as shown.
- ``text file=/tmp/...`` blocks show a file an earlier command of the page wrote (e.g. ``netprov render``):
  the block must equal that file, or its beginning when the block's last line is ``...``.
- ``text``, ``sh``, ``yaml`` (without ``file=``) and anything else is not executed.
- ``console cwd=DIR`` runs that block's commands in DIR (under /tmp, e.g. where a ``yaml file=``
  block put an inventory) instead of the repository root, so a page can show `netprov plan`
  exactly as a user types it in their inventory's folder.
- Blocks run in document order, file by file.

Every relative link in README.md and docs/ must point to an existing file (and, for a
``#fragment`` into a Markdown file, to an existing heading).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_SYNTAX = {"|", ">", ">>", "<", "&&", "||", ";", "&", "2>", "2>&1"}
COMMAND_TIMEOUT = 180
# Commands run with a small, fixed environment (plus what the docs export), so a developer's
# own variables (a CHAP secret, NETPROV_*, GITHUB_ACTIONS) can't change what the docs show.
KEPT = ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")
# Removed from the test process too, for the python blocks that start netprov themselves.
SCRUBBED = ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "NETPROV_API_KEY", "NETPROV_INSECURE")


@dataclass
class Block:
    info: str
    body: list[str]
    line: int                      # 1-based line of the opening fence

    @property
    def lang(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    def attr(self, name: str) -> str | None:
        for word in self.info.split()[1:]:
            key, _, value = word.partition("=")
            if key == name:
                return value
        return None


@dataclass
class Command:
    argv: list[str]
    line: int
    expected: list[str] = field(default_factory=list)


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def blocks(path: Path) -> list[Block]:
    """Fenced code blocks of a Markdown file, in order."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group("indent")), m.group("fence"), m.group("info").strip()
        start = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        out.append(Block(info, body, start))
        i += 1
    return out


def commands(block: Block, path: Path) -> list[Command]:
    out: list[Command] = []
    for offset, raw in enumerate(block.body, start=1):
        line = raw.rstrip()
        if line.startswith("$ "):
            argv = shlex.split(line[2:])
            out.append(Command(argv, block.line + offset))
        elif line.strip():
            if not out:
                pytest.fail(f"{path.name}:{block.line + offset}: output before any command in a console block")
            out[-1].expected.append(line.strip())
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEPT or k.startswith("LC_")}
    env.update(NO_COLOR="1", COLUMNS="200", PYTHONIOENCODING="utf-8")
    return env


def run_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run every example of one file; returns how many netprov commands ran."""
    monkeypatch.chdir(ROOT)
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    env = _env()
    namespace: dict = {"__name__": f"docs:{path.name}"}
    ran = 0
    rel = path.relative_to(ROOT)
    for block in blocks(path):
        if block.lang == "python":
            code = compile("\n".join(block.body) + "\n", f"{rel}:{block.line}", "exec")
            exec(code, namespace)  # noqa: S102 - documentation examples are trusted repo content
        elif block.lang == "yaml" and block.attr("file"):
            dest = Path(block.attr("file") or "")
            assert str(dest).startswith("/tmp/"), f"{rel}:{block.line}: yaml file= must be under /tmp"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text("\n".join(block.body) + "\n", encoding="utf-8")
        elif block.lang == "text" and block.attr("file"):
            shown = list(block.body)
            actual = Path(block.attr("file") or "").read_text(encoding="utf-8").splitlines()
            if shown and shown[-1].strip() == "...":
                shown = shown[:-1]
                actual = actual[:len(shown)]
            assert shown == actual, (f"{rel}:{block.line}: the block differs from {block.attr('file')} "
                                     "(re-render it and paste the file)")
        elif block.lang == "console":
            want_rc = int(block.attr("exit") or 0)
            cwd = Path(block.attr("cwd") or ROOT)
            assert cwd == ROOT or str(cwd).startswith("/tmp/"), f"{rel}:{block.line}: cwd= must be under /tmp"
            for cmd in commands(block, path):
                where = f"{rel}:{cmd.line}"
                if not cmd.argv:
                    pytest.fail(f"{where}: empty command")
                if cmd.argv[0] == "export":
                    for assignment in cmd.argv[1:]:
                        key, sep, value = assignment.partition("=")
                        assert sep, f"{where}: export needs VAR=value"
                        env[key] = value
                    continue
                if cmd.argv[0] != "netprov":
                    pytest.fail(f"{where}: only `netprov ...` and `export` run in console blocks; "
                                f"put `{' '.join(cmd.argv)}` in a sh or text block")
                bad = SHELL_SYNTAX.intersection(cmd.argv)
                if bad:
                    pytest.fail(f"{where}: shell syntax {sorted(bad)} is not supported in console blocks")
                # stdout and stderr into one pipe, unbuffered: the lines in the order a terminal shows them
                proc = subprocess.run([sys.executable, "-m", "netprov", *cmd.argv[1:]], cwd=cwd,
                                      env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT, check=False)
                ran += 1
                output = proc.stdout
                shown = f"$ {' '.join(cmd.argv)}\n--- output ---\n{output[-6000:]}"
                assert proc.returncode == want_rc, \
                    f"{where}: exit {proc.returncode}, the docs say {want_rc}\n{shown}"
                lines, at = output.splitlines(), 0
                for expected in cmd.expected:
                    if expected == "...":
                        continue
                    found = next((i for i in range(at, len(lines)) if matches(expected, lines[i])), None)
                    if found is None:
                        earlier = any(matches(expected, line) for line in lines[:at])
                        pytest.fail(f"{where}: expected output line not found"
                                    f"{' after the line before it' if earlier else ''}: {expected!r}\n{shown}")
                    at = found + 1
    return ran


def matches(expected: str, line: str) -> bool:
    """``expected`` is in ``line``, each ``...`` in it standing for any text."""
    if "..." not in expected:
        return expected in line
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.search(pattern, line) is not None


EXECUTABLE = [p for p in DOCS if any(b.lang in ("console", "python") for b in blocks(p))]


@pytest.mark.parametrize("path", EXECUTABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = run_file(path, monkeypatch)
    has_console = any(b.lang == "console" for b in blocks(path))
    assert ran > 0 or not has_console, f"{path.name}: console blocks but no netprov command ran"


def _all_commands() -> list[tuple[Path, Command]]:
    out = []
    for path in DOCS:
        for block in blocks(path):
            if block.lang == "console":
                out += [(path, c) for c in commands(block, path) if c.argv and c.argv[0] == "netprov"]
    return out


def test_docs_have_examples() -> None:
    cmds = _all_commands()
    assert len(cmds) >= 10, "the docs should show (and so test) real commands"
    assert (ROOT / "README.md") in {p for p, _ in cmds}, "README.md must show tested commands"


def test_demo_runs_at_most_once() -> None:
    """`netprov demo` takes seconds: one documented run is enough."""
    demos = [f"{p.relative_to(ROOT)}:{c.line}" for p, c in _all_commands() if c.argv[1:2] == ["demo"]]
    assert len(demos) <= 1, f"netprov demo is run {len(demos)} times: {demos}"


def test_blocks_have_known_info_strings() -> None:
    """A session in an unlabelled block would silently go untested; say `console`, or `text`/`sh`."""
    known = {"console", "python", "yaml", "text", "sh", "json", "toml", "ini", "diff", "markdown"}
    problems = []
    for path in DOCS:
        for block in blocks(path):
            where = f"{path.relative_to(ROOT)}:{block.line}"
            if block.lang and block.lang not in known:
                problems.append(f"{where}: unknown info string {block.info!r} (known: {sorted(known)})")
            elif not block.lang and any(line.startswith("$ ") for line in block.body):
                problems.append(f"{where}: a session without an info string: use `console` (tested) "
                                "or `text`/`sh` (not run)")
    assert not problems, "\n".join(problems)


# --- links ------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\((?P<target><[^>]+>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+(?P<target>\S+)", re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(path: Path) -> str:
    """The file without fenced blocks and inline code (links there are examples, not links)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    keep, fence = [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group("fence")
            keep.append("")
            continue
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            keep.append("")
            continue
        keep.append(_INLINE_CODE.sub("", line))
    return "\n".join(keep)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(path).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def _links(path: Path) -> list[str]:
    prose = _prose(path)
    found = [m.group("target").strip("<>") for m in _LINK.finditer(prose)]
    found += [m.group("target") for m in _REF_DEF.finditer(prose)]
    return found


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):   # http:, https:, mailto: ...
            continue
        file_part, _, fragment = target.partition("#")
        dest = path if not file_part else (path.parent / file_part)
        if not dest.exists():
            broken.append(f"{target} (no such file: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(broken)
