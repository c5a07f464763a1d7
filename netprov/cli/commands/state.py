"""`netprov state pull`: snapshot the actual state of every NAS and PXE server for offline plans.

The snapshot holds no secrets (auth secrets are stored only as 'redacted' or a hash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from netprov.cli import console


def register(state_app: typer.Typer, opts) -> None:
    @state_app.command("pull")
    def pull(
        inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")] = Path("inventory.yaml"),
        out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the state JSON.")] = Path(
            "netprov-state.json"),
        insecure: Annotated[Optional[bool], typer.Option("--insecure/--no-insecure", show_default=False)] = None,
        ca_file: Annotated[Optional[Path], typer.Option("--ca-file")] = None,
        accept_new_host_key: Annotated[Optional[bool], typer.Option("--accept-new-host-key/--no-accept-new-host-key",
                                                                    show_default=False)] = None,
    ) -> None:
        """Read every NAS and PXE server once and save what they hold (for `plan --state`)."""
        from netprov.adapters.local import write_atomic
        from netprov.cli.commands.common import start
        session, options, _ = start(inventory, opts, insecure=insecure, ca_file=ca_file,
                                    accept_new_host_key=accept_new_host_key)
        with session.connect(options) as world:
            snapshot = session.snapshot(world)
        # No secret is in it (a CHAP secret only as a salted hash), but it maps the NAS: 0600.
        write_atomic(out, (json.dumps(snapshot, indent=2, sort_keys=True) + "\n").encode())
        console.info(f"state of {len(snapshot['storage'])} storage and {len(snapshot['pxe'])} PXE server(s) "
                     f"written to {out}", quiet=opts.quiet)
