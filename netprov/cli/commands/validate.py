"""`netprov validate`: load every inventory, report every problem, contact nothing."""

from __future__ import annotations

from pathlib import Path

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode
from netprov.errors import InventoryError, NetprovError


def run(paths: list[Path], *, quiet: bool = False) -> int:
    from netprov.adapters.local import load_workspace
    from netprov.core.boot_render import Renderer

    failed = False
    for path in paths:
        try:
            ws = load_workspace(path)
            console.add_secrets(*ws.secrets.values())
            # Rendering is part of validation: a broken template override is an inventory error.
            Renderer(ws.templates).render(ws.loaded, ws.secrets)
        except InventoryError as exc:
            for p in exc.problems:
                console.problem(p)
            failed = True
            continue
        except NetprovError as exc:
            console.error(f"{path}: {exc}")
            failed = True
            continue
        for w in ws.warnings:
            console.problem(w, quiet=quiet)
        n = len(ws.loaded.machines)
        console.info(f"{path}: ok ({n} machine{'s' if n != 1 else ''}, "
                     f"{len(ws.loaded.inventory.storage)} storage, "
                     f"{len(ws.loaded.inventory.pxe_servers)} PXE server"
                     f"{'s' if len(ws.loaded.inventory.pxe_servers) != 1 else ''})", quiet=quiet)
    return ExitCode.ERROR if failed else ExitCode.OK
