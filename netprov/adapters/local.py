"""The local edge: reading inventory files, template overrides and secret files from disk,
and secrets from the environment. Everything here is I/O; what it reads goes to the pure core.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from netprov.core.inventory import LoadedInventory, Problem
from netprov.core.inventory_load import MAX_INVENTORY_CHARS, decode_inventory, parse_inventory, too_large
from netprov.core.boot_render import TEMPLATE_NAMES, Templates
from netprov.core.secrets import resolve_chap_secrets
from netprov.errors import InventoryError, NetprovError, TemplateError


@dataclass(frozen=True)
class Workspace:
    """An inventory as loaded from disk, with its templates and (optionally) its secrets."""

    path: Path
    loaded: LoadedInventory
    templates: Templates
    secrets: dict[str, str | None]
    warnings: tuple[Problem, ...]


def read_inventory(path: str | Path) -> LoadedInventory:
    p = Path(path)
    try:
        with p.open("rb") as f:  # bounded: never more than the limit (+1 to notice) in memory
            data = f.read(MAX_INVENTORY_CHARS + 1)
    except FileNotFoundError:
        raise InventoryError([Problem(str(path), None, None, "", "no such file")]) from None
    except OSError as exc:
        raise InventoryError([Problem(str(path), None, None, "", f"cannot read: {exc}")]) from None
    if len(data) > MAX_INVENTORY_CHARS:   # checked before decoding: a cut multi-byte character is no UTF-8 error
        raise InventoryError([Problem(str(path), None, None, "", too_large())])
    return parse_inventory(decode_inventory(data, str(path)), str(path))


def read_templates(loaded: LoadedInventory, inventory_path: Path) -> Templates:
    """Built-in templates overlaid with ``templates:`` overrides (a folder beside the inventory)."""
    folder = loaded.inventory.templates
    if not folder:
        return Templates.with_overrides()
    base = (inventory_path.parent / folder) if not os.path.isabs(folder) else Path(folder)
    if not base.is_dir():
        line, col = loaded.locate(("templates",)) if loaded.locate else (None, None)
        raise InventoryError([Problem(loaded.filename, line, col, "templates",
                                      f"template folder {str(base)!r} does not exist")])
    overrides = {}
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.name not in TEMPLATE_NAMES:
            raise TemplateError(f"{entry}: not a netprov template (overridable: {', '.join(TEMPLATE_NAMES)})")
        overrides[entry.name] = entry.read_text(encoding="utf-8")
    return Templates.with_overrides(overrides, str(base))


def read_secret_file(path: str | Path, warn: Callable[[str], None] | None = None) -> str:
    """The text of a file holding a secret (an API key, a password, a CHAP secret), as it is.

    The one reader of secret files. A file group or other users can open is passed to ``warn``
    (:func:`secret_file_warning`) first; a file that can't be read raises a ``NetprovError``
    naming it, never its content."""
    p = Path(path)
    why = secret_file_warning(p) if warn is not None else None
    if why:
        warn(why)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise NetprovError(f"cannot read {path}: {exc.strerror}") from None


def _chap_secret_file(path: str) -> str | None:
    """For CHAP secrets an unreadable file is a missing secret (a warning located in the inventory);
    their permissions are checked by :func:`_secret_file_problems`, also located."""
    try:
        return read_secret_file(path)
    except NetprovError:
        return None


def secret_file_warning(path: str | Path) -> str | None:
    """Why a file holding a secret (an API key, a password, a CHAP secret) is too open, or None.

    Any permission bit for group or other users counts; the message never includes the content.
    """
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None   # reading it reports the problem
    if not mode & 0o077:
        return None
    who = "other users" if mode & 0o007 else "its group"
    return f"{path} is open to {who} (mode {mode & 0o777:04o}); chmod 600 it"


def _secret_file_problems(loaded: LoadedInventory) -> list[Problem]:
    """One warning per CHAP ``secret_file`` that group or other users can open (located at its machine)."""
    out, seen = [], set()
    for m in loaded.machines:
        path = m.chap.secret_file if m.chap is not None else None
        if not path or path in seen:
            continue
        seen.add(path)
        why = secret_file_warning(path)
        if why:
            line, col = loaded.locate(("machines", m.name, "chap")) if loaded.locate else (None, None)
            out.append(Problem(loaded.filename, line, col, f"machines.{m.name}.chap.secret_file", why,
                               severity="warning"))
    return out


def load_workspace(path: str | Path, env: Mapping[str, str] | None = None) -> Workspace:
    """Read and validate an inventory, its template overrides and its secrets."""
    p = Path(path)
    loaded = read_inventory(p)
    templates = read_templates(loaded, p)
    secrets, problems = resolve_chap_secrets(loaded, os.environ if env is None else env, _chap_secret_file)
    errors = [x for x in problems if x.severity == "error"]
    if errors:
        raise InventoryError(errors)
    problems += _secret_file_problems(loaded)
    return Workspace(p, loaded, templates, secrets, tuple(problems))


PRIVATE = 0o600


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Write ``data`` to ``path`` whole: a temporary file created with ``mode`` from the start (a file
    holding a secret is never readable by others, not even for a moment), synced, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode & 0o700)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
