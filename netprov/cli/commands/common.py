"""What several commands share: their option types, starting a session from the settings, showing a plan.

Light at import time (``netprov --help`` loads it): heavy modules are imported inside the functions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netprov.cli import console

if TYPE_CHECKING:
    from netprov.engine.session import ConnectOptions, Session
    from netprov.settings import Settings

TargetOpt = Annotated[Optional[list[str]], typer.Option("--target", "-t", metavar="MACHINE",
                                                       help="Limit to these machines (repeat).")]
AllowDestroyOpt = Annotated[bool, typer.Option("--allow-destroy", help="Allow deleting/replacing disks "
                                               "(orphans, shrink, volblocksize change).")]
AdoptOpt = Annotated[bool, typer.Option("--adopt", help="Take over same-named objects netprov did not create.")]
FullOpt = Annotated[bool, typer.Option("--full", help="Show every object of every machine (a plan creating "
                                       "more than 20 machines shows one line per created machine).")]
NoSnapshotOpt = Annotated[bool, typer.Option("--no-snapshot", help="Destroy deleted/replaced disks outright instead "
                                             "of keeping them (snapshot + retired copy; docs/recovery.md).")]
InsecureOpt = Annotated[Optional[bool], typer.Option("--insecure/--no-insecure", help="Skip TLS verification of the NAS "
                                                     "(warns). Env: NETPROV_INSECURE.", show_default=False)]
CaFileOpt = Annotated[Optional[Path], typer.Option("--ca-file", help="CA bundle for the NAS's certificate.")]
AcceptKeyOpt = Annotated[Optional[bool], typer.Option("--accept-new-host-key/--no-accept-new-host-key",
                                                      help="Trust an unknown SSH host key on first use.",
                                                      show_default=False)]


def start(inventory: Path, opts: Any, **flags: Any) -> tuple[Session, ConnectOptions, Settings]:
    """Settings (flags > NETPROV_* > config file), then the inventory loaded into a session whose
    warnings and secrets go to the console; returns the session, how to connect, and the settings."""
    from netprov.engine.session import Session
    from netprov.settings import load_settings

    settings = load_settings(opts.config, warn=lambda m: console.warning(m, quiet=opts.quiet), **flags)
    session = Session.load(inventory, env=os.environ, warn=console.warning, mask=console.add_secrets)
    for w in session.warnings:
        console.problem(w, quiet=opts.quiet)
    return session, connect_options(settings), settings


def connect_options(settings: Settings) -> ConnectOptions:
    from netprov.engine.session import ConnectOptions
    return ConnectOptions(insecure=settings.insecure, ca_file=settings.ca_file, known_nas=settings.known_nas,
                          accept_new_host_key=settings.accept_new_host_key, known_hosts=settings.known_hosts,
                          ssh_config=settings.ssh_config, timeout=settings.timeout, max_wait=settings.max_wait,
                          api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None)


def show_plan(plan: Any, *, as_json: bool, verbose: bool = False, full: bool = False) -> None:
    """The plan on stdout (text or JSON), and as markdown in the GitHub step summary under Actions."""
    from netprov import plan_view
    if as_json:
        sys.stdout.write(plan_view.plan_json(plan))
    else:
        plan_view.plan_rich(plan, console.out(), verbose=verbose, full=full)
    if console.github_actions() and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(plan_view.plan_markdown(plan))
