"""Where secrets come from, resolved at the edge and held only as values in memory.

The inventory names a source (environment variable or file) for each CHAP secret;
``resolve_chap_secrets`` looks them up through injected functions, so the core never
touches the environment or the disk, and checks TrueNAS' rule (12-16 characters,
no surrounding whitespace, no ``#``). A missing secret is a *warning* (CI dry-runs
have none) and an error only where a secret is really needed (apply). Secret values
never appear in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from netprov.core.inventory import LoadedInventory, Problem

MASK = "********"

_SET_LINE = re.compile(r"(?im)^(\s*set\s+(?:--\S+\s+)*\S*(?:password|secret)\S*\s+)(\S.*?)(\s*)$")
_KV = re.compile(r"(?i)(\b[\w.-]*(?:password|secret)[\w.-]*\s*[=:]\s*)([^\s,;]+)")
_URL_CRED = re.compile(r"(://[^/\s:@]+:)([^@/\s]+)(@)")


def mask_secrets(text: str, secrets: Iterable[str] = (), *, patterns: bool = True) -> str:
    """THE masking function: every path that shows text it did not write itself (a diff,
    a remote command's output, an error message) passes it through here.

    Replaces every literal secret, and every value of a ``set password …``-style line,
    ``password=…`` / ``secret: …`` pair or ``user:pass@`` URL (so secrets netprov does
    not know, e.g. the old ones in a file on a server, are caught too), with ``********``.
    ``patterns=False`` replaces the known secrets only (netprov's own messages, where a
    ``password_env: NAME`` is a setting's name, not a secret)."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, MASK)
    if not patterns:
        return text
    text = _SET_LINE.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    text = _KV.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_CRED.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return text


def check_chap_secret(secret: str) -> str | None:
    """Why TrueNAS would refuse this CHAP secret, or None. Never includes the secret."""
    if not 12 <= len(secret) <= 16:
        return f"CHAP secret must be 12-16 characters (it has {len(secret)})"
    if secret != secret.strip():
        return "CHAP secret must not start or end with whitespace"
    if "#" in secret:
        return "CHAP secret must not contain '#' (TrueNAS 25.04+ refuses it)"
    if any(ord(c) < 33 or ord(c) > 126 for c in secret):
        return "CHAP secret must be printable ASCII without spaces (it goes into an iPXE script)"
    return None


def resolve_chap_secrets(loaded: LoadedInventory, env: Mapping[str, str],
                         read_file: Callable[[str], str | None]) -> tuple[dict[str, str | None],
                                                                           list[Problem]]:
    """machine name -> CHAP secret (None when unavailable), plus problems found.

    ``read_file(path)`` returns the file's text or None if it can't be read.
    Missing secrets are warnings; malformed ones are errors.
    """
    secrets: dict[str, str | None] = {}
    problems: list[Problem] = []
    for m in loaded.machines:
        if m.chap is None:
            continue
        if m.chap.secret_env:
            value, source = env.get(m.chap.secret_env), f"environment variable {m.chap.secret_env}"
            missing = f"{source} is not set" if value is None else f"{source} is empty"
        else:
            raw = read_file(m.chap.secret_file) if m.chap.secret_file else None
            value, source = (raw.strip("\r\n") if raw is not None else None), f"file {m.chap.secret_file}"
            missing = (f"{source} does not exist or cannot be read" if raw is None else f"{source} is empty")
        loc = ("machines", m.name, "chap")
        line, col = loaded.locate(loc) if loaded.locate else (None, None)
        if value is None or value == "":
            problems.append(Problem(loaded.filename, line, col, f"machines.{m.name}.chap",
                                    f"CHAP secret not available ({missing}); "
                                    "plan works, apply will refuse", severity="warning"))
            secrets[m.name] = None
            continue
        why = check_chap_secret(value)
        if why:
            problems.append(Problem(loaded.filename, line, col, f"machines.{m.name}.chap", f"{why} ({source})"))
            secrets[m.name] = None
            continue
        secrets[m.name] = value
    return secrets, problems
