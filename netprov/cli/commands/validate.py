"""`netprov validate`: load every inventory, report every problem, contact nothing."""

from __future__ import annotations

import os
from pathlib import Path

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode
from netprov.errors import InventoryError, NetprovError


def run(paths: list[Path], *, quiet: bool = False) -> int:
    from netprov.engine.session import Session

    failed = False
    for path in paths:
        try:
            session = Session.load(path, env=os.environ, mask=console.add_secrets)
            # Rendering is part of validation: a broken template override is an inventory error.
            session.render()
        except InventoryError as exc:
            for p in exc.problems:
                console.problem(p)
            failed = True
            continue
        except NetprovError as exc:
            console.error(f"{path}: {exc}")
            failed = True
            continue
        for w in session.warnings:
            console.problem(w, quiet=quiet)
        ws = session.workspace
        n = len(ws.loaded.machines)
        console.info(f"{path}: ok ({n} machine{'s' if n != 1 else ''}, "
                     f"{len(ws.loaded.inventory.storage)} storage, "
                     f"{len(ws.loaded.inventory.pxe_servers)} PXE server"
                     f"{'s' if len(ws.loaded.inventory.pxe_servers) != 1 else ''})", quiet=quiet)
    return ExitCode.ERROR if failed else ExitCode.OK
