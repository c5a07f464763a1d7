"""The local edge: reading inventory files, template overrides and secret files from disk,
and secrets from the environment. Everything here is I/O; what it reads goes to the pure core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from netprov.core.inventory import LoadedInventory, Problem
from netprov.core.parse import MAX_INVENTORY_CHARS, parse_inventory
from netprov.core.render import TEMPLATE_NAMES, Templates
from netprov.core.secrets import resolve_chap_secrets
from netprov.errors import InventoryError, TemplateError


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
        with p.open(encoding="utf-8") as f:  # bounded: never more than the limit (+1 to notice) in memory
            text = f.read(MAX_INVENTORY_CHARS + 1)
    except FileNotFoundError:
        raise InventoryError([Problem(str(path), None, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError([Problem(str(path), None, None, "", f"cannot read: {exc}")]) from None
    return parse_inventory(text, str(path))


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


def _read_secret_file(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def load_workspace(path: str | Path, env: dict[str, str] | None = None) -> Workspace:
    """Read and validate an inventory, its template overrides and its secrets."""
    p = Path(path)
    loaded = read_inventory(p)
    templates = read_templates(loaded, p)
    secrets, problems = resolve_chap_secrets(loaded, os.environ if env is None else env, _read_secret_file)
    errors = [x for x in problems if x.severity == "error"]
    if errors:
        raise InventoryError(errors)
    return Workspace(p, loaded, templates, secrets, tuple(problems))
