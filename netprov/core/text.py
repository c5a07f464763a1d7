"""How text from elsewhere (an exception, a server's answer, a remote command's output) is shown."""

from __future__ import annotations

from typing import Any


def one_line(text: Any, limit: int) -> str:
    """``text`` on one line of at most ``limit`` characters: every run of whitespace (newlines
    included) becomes one space; a longer text is cut and ends in "…". None is ""."""
    s = " ".join(str(text).split()) if text is not None else ""
    return s if len(s) <= limit else s[: limit - 1] + "…"
