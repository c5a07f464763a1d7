"""The only place netprov talks to humans: data on stdout, messages on stderr.

Colour on a terminal, plain in a pipe, none with NO_COLOR. Under GitHub Actions
inventory problems are also printed as ``::error file=...,line=...::`` annotations.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported on first use: `netprov --help` stays fast
    from rich.console import Console


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


@lru_cache(maxsize=1)
def out() -> Console:
    """stdout: data (plans, JSON, rendered files)."""
    from rich.console import Console
    return Console(file=sys.stdout, no_color=_no_color(), highlight=False, soft_wrap=True)


@lru_cache(maxsize=1)
def err() -> Console:
    """stderr: progress, prompts, warnings, errors."""
    from rich.console import Console
    return Console(file=sys.stderr, no_color=_no_color(), highlight=False, soft_wrap=True)


def reset() -> None:
    """Forget cached consoles (tests swap sys.stdout/sys.stderr)."""
    out.cache_clear()
    err.cache_clear()


def github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def problem(p, *, quiet: bool = False) -> None:
    """Print one inventory Problem (and its GitHub annotation when under Actions)."""
    from rich.markup import escape
    style = "yellow" if p.severity == "warning" else "red"
    if not (quiet and p.severity == "warning"):
        err().print(f"[{style}]{escape(str(p))}[/{style}]")
    if github_actions():
        level = "warning" if p.severity == "warning" else "error"
        loc = f"file={p.file}"
        if p.line:
            loc += f",line={p.line}"
            if p.col:
                loc += f",col={p.col}"
        msg = f"{p.path}: {p.message}" if p.path else p.message
        # stderr: the runner reads workflow commands from both streams, and stdout stays pure data
        # (`plan --json` must parse).
        sys.stderr.write(f"::{level} {loc}::{_gh_escape(msg)}\n")
        sys.stderr.flush()


def error(message: str) -> None:
    from rich.markup import escape
    err().print(f"[red]error:[/red] {escape(message)}")


def info(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        err().print(message, highlight=False)
