"""Files the CLI writes on this machine (saved plans, state snapshots, rendered files).

Each is written whole under a temporary name and renamed into place, and the temporary file is
created with its final mode: a file holding a secret is never readable by others, not even for a
moment.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE = 0o600


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Write ``data`` to ``path`` (temporary file with ``mode`` from the start, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode & 0o700)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
