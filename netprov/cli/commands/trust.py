"""`netprov trust STORAGE [INVENTORY]`: first contact with a NAS whose certificate no CA vouches for.

Like SSH's first connection: connect (a TLS handshake only, nothing sent), show the certificate's
SHA-256 fingerprint, subject, issuer and validity, and on confirmation pin it in the known-NAS file
(:mod:`netprov.adapters.known_nas`). Confirmation is an interactive ``yes`` on a terminal, or, for
scripts, ``--fingerprint SHA256:...`` (compared with the one presented; checked out of band) or
``--yes``. Plans then verify the NAS against the pin; a changed certificate is refused.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from netprov.cli import console
from netprov.errors import NetprovError

NAS_SHELL_CHECK = ("openssl s_client -connect localhost:443 </dev/null 2>/dev/null | "
                   "openssl x509 -noout -fingerprint -sha256")


def run(opts, storage: str, inventory: Path, *, yes: bool, fingerprint: str | None) -> int:
    from netprov.adapters import known_nas
    from netprov.adapters.local import read_inventory
    from netprov.adapters.truenas.rpc import fetch_certificate
    from netprov.cli.commands.common import connect_options
    from netprov.engine.session import known_nas_file
    from netprov.settings import load_settings

    settings = load_settings(opts.config)
    expected = None
    if fingerprint is not None:
        try:
            expected = known_nas.parse_fingerprint(fingerprint)
        except ValueError as e:
            raise NetprovError(f"--fingerprint: {e}") from None
    inv = read_inventory(inventory).inventory
    st = inv.storage.get(storage)
    if st is None:
        known = ", ".join(sorted(inv.storage)) or "none"
        raise NetprovError(f"{inventory} has no storage named {storage!r} (it has: {known})")
    path = known_nas_file(connect_options(settings))
    key = known_nas.host_port(st.url)
    old = known_nas.read_pins(path).get(key)
    cert = known_nas.describe(fetch_certificate(st.url, timeout=settings.timeout))

    show = console.out()
    show.print(f"storage {storage} at {key} presents this TLS certificate:", markup=False)
    show.print(f"  SHA-256 fingerprint: {cert.fingerprint}", markup=False)
    show.print(f"  subject: {cert.subject}", markup=False)
    show.print(f"  issuer:  {cert.issuer}" + (" (self-signed)" if cert.self_signed else ""), markup=False)
    show.print(f"  valid:   {cert.not_before} to {cert.not_after}", markup=False)

    if expected is not None and expected != cert.sha256:
        raise NetprovError(
            f"the certificate {key} presents does not match --fingerprint: expected "
            f"{known_nas.format_fingerprint(expected)}, presented {cert.fingerprint}; nothing was pinned. "
            "Someone may be intercepting the connection, or the fingerprint was taken from another certificate")
    if old is not None and old.sha256 == cert.sha256:
        console.info(f"already pinned in {path}: plans trust this certificate", quiet=opts.quiet)
        return 0
    if old is not None:
        console.warning(f"this is NOT the certificate pinned for {key}: pinned {old.fingerprint}"
                        + (f" ({old.comment})" if old.comment else "")
                        + ". Pin the new one only if you know why it changed (a new certificate, a reinstall)")
    if expected is None and not yes:
        if not sys.stdin.isatty():
            raise NetprovError(
                "not a terminal, so no one can confirm the fingerprint: compare it with the NAS's own "
                f"(on the NAS's shell: {NAS_SHELL_CHECK}), then pass it with --fingerprint SHA256:..., "
                "or pass --yes; nothing was pinned")
        console.info("Compare the fingerprint with the NAS's own (run this on the NAS: its web UI's Shell page, "
                     "or SSH to it):")
        console.info(f"  {NAS_SHELL_CHECK}")
        try:
            answer = input(f"Pin this certificate for {key}? Type 'yes' if the fingerprints match: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            console.error("not confirmed; nothing was pinned")
            return 1
    known_nas.write_pin(path, key, cert.sha256, cert.summary())
    console.info(f"pinned {cert.fingerprint} for {key} in {path}; plans now accept only this certificate "
                 f"from storage {storage}", quiet=opts.quiet)
    return 0


def register(app: typer.Typer, opts) -> None:
    @app.command()
    def trust(
        storage: Annotated[str, typer.Argument(help="Storage name in the inventory (its TrueNAS).")],
        inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")] = Path("inventory.yaml"),
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Pin without asking (you checked the "
                                          "fingerprint some other way).")] = False,
        fingerprint: Annotated[Optional[str], typer.Option("--fingerprint", metavar="SHA256:...",
                                                           help="Pin only if the NAS presents this "
                                                           "certificate (checked out of band).")] = None,
    ) -> None:
        """Show the NAS's TLS certificate and pin it (first contact with a self-signed TrueNAS)."""
        raise typer.Exit(run(opts, storage, inventory, yes=yes, fingerprint=fingerprint))
