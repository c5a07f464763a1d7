"""`netprov sim truenas`: run the TrueNAS simulator alone (for trying netprov, and CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(sim_app: typer.Typer, app: typer.Typer, opts) -> None:
    @sim_app.command("truenas")
    def truenas(
        listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (loopback).")] = "127.0.0.1:0",
        api_key: Annotated[Optional[str], typer.Option(envvar="NETPROV_SIM_API_KEY",
                                                       help="The API key to accept (default: generated, printed).")] = None,
        state: Annotated[Optional[Path], typer.Option(help="JSON state file: loaded at start, saved on change.")] = None,
        profile: Annotated[str, typer.Option(help="Version to behave as: 13, 24.10, 25.04, 25.10.")] = "25.04",
        certfile: Annotated[Optional[Path], typer.Option(help="TLS certificate (serve wss://).")] = None,
        keyfile: Annotated[Optional[Path], typer.Option(help="TLS key.")] = None,
    ) -> None:
        """Serve a simulated TrueNAS middleware API (both websocket protocols) until stopped."""
        from truenas_sim import serve
        serve(listen=listen, api_key=api_key, state_file=str(state) if state else None, profile=profile,
              certfile=str(certfile) if certfile else None, keyfile=str(keyfile) if keyfile else None)
