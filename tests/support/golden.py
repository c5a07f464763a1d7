"""Golden JSON files: compare a value with its golden, or (``--update-goldens``) write it for review."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def check_json_golden(golden: Path, got: Any, update: bool) -> None:
    """``got`` must equal the JSON in ``golden``. With ``update`` (or no golden yet) write it instead; a
    golden that did not exist fails the test once, so a new one is always reviewed."""
    if update or not golden.exists():
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        if not update:
            pytest.fail(f"{golden} did not exist; written, review it and rerun")
        return
    assert json.loads(golden.read_text()) == got, f"{golden} differs (rerun with --update-goldens and review the diff)"
