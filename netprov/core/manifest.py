"""What one PXE server holds: the facts the boot-file planner compares the desired files with.

A ``RemoteManifest`` is read by the PXE adapter in one SSH round trip (``PxeHost.read``), or
taken from a ``netprov state pull`` snapshot (``manifest_from_json``). Pure values; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from netprov.core.bootfiles import Root
from netprov.core.plan import fingerprint
from netprov.core.secrets import MASK, mask_secrets

__all__ = ["SECRET_MODE", "Activation", "RemoteEntry", "RemoteManifest", "holds_secret",
           "manifest_fingerprint", "manifest_from_json", "manifest_to_json"]

#: The mode netprov writes every file holding a secret with (``fileplan.effective_mode``), and only those.
SECRET_MODE = 0o640


class Activation(str, Enum):
    """What dnsmasq needs after the files changed. Ordered: NONE < SIGHUP < RESTART."""

    NONE = "none"
    SIGHUP = "sighup"
    RESTART = "restart"

    @property
    def rank(self) -> int:
        return {"none": 0, "sighup": 1, "restart": 2}[self.value]


@dataclass(frozen=True)
class RemoteEntry:
    """One path under a root on the server, as the read round trip saw it."""

    root: Root
    path: str                       # relative to the root, POSIX
    type: str                       # "file" | "dir" | "symlink" | "other"
    sha256: str | None = None       # regular files only
    managed: bool = False           # header within first 3 lines, or listed in OWNED_RECORD
    mode: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class RemoteManifest:
    """What one PXE server holds under its roots (and the binary sources it was asked about).

    ``entries`` maps (root, path) → RemoteEntry for every file, directory and
    symlink under each existing root (netprov's own temporaries excluded; they
    are listed in ``stale``). ``sources`` maps each binary source path asked about
    to its sha256, or None when it is missing/unreadable. ``old_text`` holds old
    contents fetched for diffs (optional; see ``fileplan.text_wanted``). ``pending`` is an
    activation a previous apply committed but could not finish. ``preflight`` lists what
    the server lacks for an apply (commands, writable directories): a plan with changes
    for a server that is not ready is refused before any change anywhere.
    """

    server: str
    roots: Mapping[Root, str] = field(default_factory=dict)
    entries: Mapping[tuple[Root, str], RemoteEntry] = field(default_factory=dict)
    missing_roots: frozenset[Root] = frozenset()
    bad_roots: frozenset[Root] = frozenset()
    sources: Mapping[str, str | None] = field(default_factory=dict)
    owned: Mapping[Root, frozenset[str]] = field(default_factory=dict)
    old_text: Mapping[tuple[Root, str], bytes] = field(default_factory=dict)
    stale: tuple[tuple[Root, str], ...] = ()
    pending: Activation = Activation.NONE
    preflight: tuple[str, ...] = ()

    def with_old_text(self, texts: Mapping[tuple[Root, str], bytes]) -> RemoteManifest:
        merged = dict(self.old_text)
        merged.update(texts)
        return replace(self, old_text=merged)

    def get(self, root: Root, path: str) -> RemoteEntry | None:
        return self.entries.get((root, path))


def manifest_to_json(m: RemoteManifest) -> dict[str, Any]:
    """The snapshot form (``netprov state pull``). No secrets: host line files hold MACs, addresses, names."""
    return {
        "server": m.server,
        "roots": {r.value: d for r, d in sorted(m.roots.items(), key=lambda kv: kv[0].value)},
        "entries": [
            {"root": e.root.value, "path": e.path, "type": e.type, "sha256": e.sha256, "managed": e.managed,
             "mode": e.mode, "size": e.size}
            for (_, _), e in sorted(m.entries.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))],
        "missing_roots": sorted(r.value for r in m.missing_roots),
        "bad_roots": sorted(r.value for r in m.bad_roots),
        "sources": dict(sorted(m.sources.items())),
        "owned": {r.value: sorted(v) for r, v in sorted(m.owned.items(), key=lambda kv: kv[0].value)},
        "pending": m.pending.value,
        # The host line files' text: a --target plan from this snapshot can tell whose old-MAC script a file is.
        "host_files": {p: text.decode("utf-8", "replace") for (r, p), text in sorted(m.old_text.items(),
                                                                                     key=lambda kv: kv[0][1])
                       if r is Root.HOSTS},
    }


def manifest_from_json(d: Mapping[str, Any]) -> RemoteManifest:
    entries = {}
    for e in d.get("entries", []):
        entry = RemoteEntry(Root(e["root"]), e["path"], e["type"], e.get("sha256"), bool(e.get("managed")),
                            e.get("mode"), e.get("size"))
        entries[(entry.root, entry.path)] = entry
    return RemoteManifest(
        server=d["server"], roots={Root(k): v for k, v in d.get("roots", {}).items()}, entries=entries,
        missing_roots=frozenset(Root(r) for r in d.get("missing_roots", [])),
        bad_roots=frozenset(Root(r) for r in d.get("bad_roots", [])),
        sources=dict(d.get("sources", {})),
        owned={Root(k): frozenset(v) for k, v in d.get("owned", {}).items()},
        pending=Activation(d.get("pending", "none")),
        old_text={(Root.HOSTS, p): text.encode() for p, text in (d.get("host_files") or {}).items()})


def holds_secret(m: RemoteManifest, root: Root, path: str) -> bool:
    """Whether the server's file at (root, path) holds a secret, as far as the read can tell: it has the
    mode netprov gives only files holding a secret (``SECRET_MODE``), or its fetched text has a line the
    masking function masks (``set password ...``). Its hash is then never shown (``FilePayload.masked``)."""
    e = m.get(root, path)
    if e is None or e.type != "file":
        return False
    if e.mode is not None and e.mode & 0o7777 == SECRET_MODE:
        return True
    text = m.old_text.get((root, path))
    if text is None:
        return False
    decoded = text.decode("utf-8", "replace")
    return mask_secrets(decoded) != decoded


def manifest_fingerprint(m: RemoteManifest) -> str:
    """What a plan's ``pxe:<server>`` fingerprint is a hash of. A file holding a secret (``holds_secret``)
    counts by its path, type, mode and ownership only: its sha256 and size (the secret's length) are
    ``MASK``, or the published fingerprint would let anyone test guesses of the secret offline, since
    every other value in it can be derived from the inventory, the templates and the plan. A saved plan
    sees such a file change through its keyed digests (``fileplan.secret_digests``) instead."""
    data = manifest_to_json(m)
    data.pop("sources", None)
    data.pop("host_files", None)   # fetched only when needed; the entries' hashes cover them
    for e in data["entries"]:
        if holds_secret(m, Root(e["root"]), e["path"]):
            e["sha256"] = e["size"] = MASK
    return fingerprint(data)
