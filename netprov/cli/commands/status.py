"""`netprov status`: per machine, its NAS objects, its boot files and whether it is booted now.

The same reads as `netprov plan` (one NAS read per storage, one PXE read per server) and the same
plan; netprov.core.status regroups it per machine. Exit 0 when everything is as the inventory
says, 2 when something differs, 1 on errors (docs/exit-codes.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from netprov.cli import console
from netprov.cli.commands.common import AcceptKeyOpt, CaFileOpt, InsecureOpt, TargetOpt, start
from netprov.cli.exit_codes import ExitCode


def run(opts, inventory: Path, *, as_json: bool, target, flags: dict) -> int:
    from netprov.core.status import status_lines

    session, options, _ = start(inventory, opts, **flags)
    policy = session.policy(target)
    with session.connect(options) as world:
        status = session.status(session.plan(world, policy), target)
    if as_json:
        sys.stdout.write(json.dumps(status.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        show = console.out()
        for line in status_lines(status):
            show.print(line, markup=False, highlight=False, soft_wrap=True)
    return ExitCode.OK if status.converged else ExitCode.CHANGES


def register(app: typer.Typer, opts) -> None:
    @app.command()
    def status(
        inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")] = Path("inventory.yaml"),
        as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
        target: TargetOpt = None,
        insecure: InsecureOpt = None, ca_file: CaFileOpt = None, accept_new_host_key: AcceptKeyOpt = None,
    ) -> None:
        """Per machine: NAS objects, boot files, and whether it is booted now (exit 0 all as the
        inventory says, 2 something differs, 1 error)."""
        raise typer.Exit(run(opts, inventory, as_json=as_json, target=target,
                             flags=dict(insecure=insecure, ca_file=ca_file,
                                        accept_new_host_key=accept_new_host_key)))
