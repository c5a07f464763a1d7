"""`netprov render`: write every PXE server's boot files into a local directory (offline)."""

from __future__ import annotations

import os
from pathlib import Path

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode


def run(inventory: Path, out: Path, *, quiet: bool = False) -> int:
    from netprov.adapters.local import PRIVATE, write_atomic
    from netprov.core.boot_render import MISSING_SECRET
    from netprov.engine.session import Session

    session = Session.load(inventory, env=os.environ, mask=console.add_secrets)
    for w in session.warnings:
        console.problem(w, quiet=quiet)
    files = session.render()
    roots = {name: session.roots(name) for name in session.loaded.inventory.pxe_servers}
    written = 0
    for f in files:
        if f.kind.value == "binary":
            continue
        # <out>/<server>/<root as on the server>/<path>: the tree mirrors the server's filesystem.
        dest = out / f.server / roots[f.server][f.root].lstrip("/") / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A script holding a CHAP secret is 0640 on the server (group dnsmasq); here, only yours.
        write_atomic(dest, f.content, PRIVATE if f.secret else f.mode)
        written += 1
        if MISSING_SECRET.encode() in f.content:
            console.warning(f"{dest}: CHAP secret not available; placeholder written", label="note:",
                            quiet=quiet)
    console.info(f"rendered {written} files into {out}/", quiet=quiet)
    for f in files:
        print(f"{f.server}\t{f.kind.value}\t{roots[f.server][f.root]}/{f.path}")
    return ExitCode.OK
