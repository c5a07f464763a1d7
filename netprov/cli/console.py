"""The only place netprov talks to humans: data on stdout, messages on stderr.

Colour on a terminal, plain in a pipe, none with NO_COLOR. Under GitHub Actions
inventory problems are also printed as ``::error file=...,line=...::`` annotations.

Text is never markup: NAS messages, object names, command output and inventory values
can hold ``[/dev/zvol/...]``, ``[bold]`` or ``:emoji:`` and are printed exactly as they
are. Both consoles are built with markup, emoji and highlighting off, and every helper
here passes ``rich.text.Text`` objects (styles are attached to spans, never parsed
out of the string).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported on first use: `netprov --help` stays fast
    from rich.console import Console


_FORCE_NO_COLOR = False


def _no_color() -> bool:
    return _FORCE_NO_COLOR or bool(os.environ.get("NO_COLOR"))


def set_no_color() -> None:
    """--no-color: plain text on both streams from now on."""
    global _FORCE_NO_COLOR
    _FORCE_NO_COLOR = True
    out.cache_clear()
    err.cache_clear()


@lru_cache(maxsize=1)
def out() -> Console:
    """stdout: data (plans, JSON, rendered files)."""
    from rich.console import Console
    return Console(file=sys.stdout, no_color=_no_color(), highlight=False, soft_wrap=True, markup=False,
                   emoji=False)


@lru_cache(maxsize=1)
def err() -> Console:
    """stderr: progress, prompts, warnings, errors."""
    from rich.console import Console
    return Console(file=sys.stderr, no_color=_no_color(), highlight=False, soft_wrap=True, markup=False,
                   emoji=False)


_SECRETS: set[str] = set()


def add_secrets(*values: str | None) -> None:
    """Secrets this run knows (CHAP secrets, the API key, a password): never printed, whatever
    carries them (a server's output, an error message). A last line of defence: the plan and the
    adapters mask them already."""
    _SECRETS.update(v for v in values if v and len(v) >= 6)


def mask(text: str) -> str:
    from netprov.core.secrets import mask_secrets
    return mask_secrets(text, _SECRETS, patterns=False)


def reset() -> None:
    """Forget cached consoles (tests swap sys.stdout/sys.stderr) and the secrets of the last run."""
    global _FORCE_NO_COLOR
    _FORCE_NO_COLOR = False
    out.cache_clear()
    err.cache_clear()
    _SECRETS.clear()


def github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """A workflow-command property value (a file name): ':' and ',' would end it early."""
    return _gh_escape(text).replace(":", "%3A").replace(",", "%2C")


def problem(p, *, quiet: bool = False) -> None:
    """Print one inventory Problem (and its GitHub annotation when under Actions)."""
    from rich.text import Text
    style = "yellow" if p.severity == "warning" else "red"
    if not (quiet and p.severity == "warning"):
        err().print(Text(mask(str(p)), style=style))
    if github_actions():
        level = "warning" if p.severity == "warning" else "error"
        loc = f"file={_gh_property(p.file)}"
        if p.line:
            loc += f",line={p.line}"
            if p.col:
                loc += f",col={p.col}"
        msg = f"{p.path}: {p.message}" if p.path else p.message
        # stderr: the runner reads workflow commands from both streams, and stdout stays pure data
        # (`plan --json` must parse).
        sys.stderr.write(f"::{level} {loc}::{_gh_escape(mask(msg))}\n")
        sys.stderr.flush()


def _labelled(label: str, style: str, message: str):
    from rich.text import Text
    return Text.assemble((label, style), " ", mask(str(message)))


def error(message: str) -> None:
    """``error: <message>`` on stderr; the message is plain text."""
    err().print(_labelled("error:", "red", message))


def warning(message: str, *, label: str = "warning:", quiet: bool = False) -> None:
    """``warning: <message>`` on stderr; the message is plain text."""
    if not quiet:
        err().print(_labelled(label, "yellow", message))


def info(message: str, *, quiet: bool = False, style: str = "") -> None:
    """One plain line on stderr (never markup)."""
    if not quiet:
        from rich.text import Text
        err().print(Text(mask(str(message)), style=style))


def rule(title: str) -> None:
    """A section heading on stderr: a rule on a terminal, ``== title`` in a pipe."""
    from rich.text import Text
    if err().is_terminal:
        err().rule(Text(mask(str(title))))
    else:
        info(f"== {title}")
