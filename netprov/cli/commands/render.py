"""`netprov render`: write every PXE server's boot files into a local directory (offline)."""

from __future__ import annotations

from pathlib import Path

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode


def run(inventory: Path, out: Path, *, quiet: bool = False) -> int:
    from netprov.adapters.local import load_workspace
    from netprov.adapters.local import PRIVATE, write_atomic
    from netprov.core.boot_render import MISSING_SECRET, Renderer

    ws = load_workspace(inventory)
    console.add_secrets(*ws.secrets.values())
    for w in ws.warnings:
        console.problem(w, quiet=quiet)
    files = Renderer(ws.templates).render(ws.loaded, ws.secrets)
    roots = {}
    for name, server in ws.loaded.inventory.pxe_servers.items():
        roots[name] = {"tftp": server.tftp_root, "dnsmasq": server.dnsmasq_dir,
                       "hosts": server.effective_hosts_dir, "http": server.http.root if server.http else None}
    written = 0
    for f in files:
        if f.kind.value == "binary":
            continue
        # <out>/<server>/<root as on the server>/<path>: the tree mirrors the server's filesystem.
        dest = out / f.server / roots[f.server][f.root.value].lstrip("/") / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A script holding a CHAP secret is 0640 on the server (group dnsmasq); here, only yours.
        write_atomic(dest, f.content, PRIVATE if f.secret else f.mode)
        written += 1
        if MISSING_SECRET.encode() in f.content:
            console.warning(f"{dest}: CHAP secret not available; placeholder written", label="note:",
                            quiet=quiet)
    console.info(f"rendered {written} files into {out}/", quiet=quiet)
    for f in files:
        print(f"{f.server}\t{f.kind.value}\t{roots[f.server][f.root.value]}/{f.path}")
    return ExitCode.OK
