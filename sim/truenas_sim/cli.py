"""Blocking entry point: the ``truenas-sim`` console script, and ``netprov sim truenas``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .server import Simulator


def _parse_listen(listen: str) -> tuple[str, int]:
    if listen.startswith("["):
        host, _, port = listen[1:].partition("]:")
    else:
        host, _, port = listen.rpartition(":")
        if not host:
            host, port = listen, "0"
    return host or "127.0.0.1", int(port or 0)


def serve(
    listen: str = "127.0.0.1:0",
    api_key: str | None = None,
    state_file: str | None = None,
    profile: str = "25.04",
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Run a simulator until SIGINT/SIGTERM.

    Prints one line ``TrueNAS simulator (profile P) listening on URL  api key: KEY`` (the key only when it was
    generated). With ``state_file`` the state is loaded from it if it exists, saved after each mutating call
    and again on exit.
    """
    host, port = _parse_listen(listen)
    state = None
    if state_file and Path(state_file).exists() and Path(state_file).stat().st_size:
        state = state_file
    tls = (certfile, keyfile or certfile) if certfile else None
    sim = Simulator(profile=profile, api_key=api_key, state=state, tls=tls, host=host, port=port)
    if state_file:
        sim.on_mutation = lambda: sim.save_state(state_file)
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    sim.start()
    line = f"TrueNAS simulator (profile {sim.profile.name}) listening on {sim.url}"
    if sim.api_key_generated:
        line += f"  api key: {sim.api_key}"
    print(line, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        sim.stop()
        if state_file:
            sim.save_state(state_file)
        for sig, h in old.items():
            signal.signal(sig, h)
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    """``truenas-sim``: serve a simulated TrueNAS middleware API until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(prog="truenas-sim", description=main.__doc__.split(": ", 1)[1])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default: %(default)s)")
    ap.add_argument("--api-key", default=os.environ.get("TRUENAS_SIM_API_KEY"),
                    help="the API key to accept (default: $TRUENAS_SIM_API_KEY, else generated and printed)")
    ap.add_argument("--state", help="JSON state file: loaded at start, saved after each change")
    ap.add_argument("--profile", default="25.04", help="release to behave as (default: %(default)s)")
    ap.add_argument("--certfile", help="TLS certificate (serve wss://)")
    ap.add_argument("--keyfile", help="TLS key")
    a = ap.parse_args(argv)
    serve(listen=a.listen, api_key=a.api_key, state_file=a.state, profile=a.profile,
          certfile=a.certfile, keyfile=a.keyfile)
