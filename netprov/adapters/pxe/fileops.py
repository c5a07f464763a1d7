"""The file operations of one push, worked out before anything is sent: live, temporary and backup names,
the ownership records the changes alter, where the stage script goes, what dnsmasq's test config is built of.

Pure: it reads the plan's file changes and the last manifest, and sends nothing; ``scripts.py`` turns these
operations into shell, ``push.py`` runs them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from netprov.core.bootfiles import HEADER_MARKER, Kind, Root
from netprov.core.fileplan import (
    OWNED_RECORD,
    TEMP_PREFIX,
    FilePayload,
    RemoteManifest,
    confine,
    effective_mode,
)
from netprov.core.plan import Action, Change
from netprov.errors import PathConfinementError, PushError


@dataclass
class Op:
    change: Change | None           # None for netprov's own ownership records
    action: Action
    root: Root
    live: str
    tmp: str
    bak: str
    mode: int
    content: bytes | None           # None → copy from source (binaries) or delete
    source: str | None = None
    secret: bool = False
    kind: Kind = Kind.SCRIPT


@dataclass
class Ops:
    token: str
    ops: list[Op]
    changes: list[Change]
    dirs: set[str]
    rel_dirs: set[tuple[str, str]]
    script_path: str
    conf_files: list[str]
    hosts_files: list[str]
    validate: bool

    @property
    def writes(self) -> list[Op]:
        return [o for o in self.ops if o.action in (Action.CREATE, Action.UPDATE)]


class Names:
    """Live, temporary and backup names of one apply (``.netprov.<token>.<n>.tmp|bak`` next to the live file)."""

    def __init__(self, roots: Mapping[Root, str], token: str) -> None:
        self.roots, self.token, self.n = roots, token, 0

    def root_dir(self, r: Root) -> str:
        if r not in self.roots:
            raise PathConfinementError(f"no directory configured for root {r.value!r}")
        return self.roots[r]

    def __call__(self, live: str) -> tuple[str, str, str]:
        self.n += 1
        d = posixpath.dirname(live)
        return live, f"{d}/{TEMP_PREFIX}{self.token}.{self.n}.tmp", f"{d}/{TEMP_PREFIX}{self.token}.{self.n}.bak"


def build_ops(files: Sequence[Change], manifest: RemoteManifest | None, roots: Mapping[Root, str],
               token: str) -> Ops:
    """The file operations of one apply: the pending file changes (refused ones left out), the ownership
    records they alter, where the stage script goes, and the files dnsmasq's test config is built of."""
    names = Names(roots, token)
    files = [c for c in files if isinstance(c.payload, FilePayload)]
    changes = [c for c in files if c.is_change and not c.refused]
    ops, dirs, rel_dirs = _file_ops(changes, names)
    ops += _owned_ops(files, manifest, names, dirs)
    # The stage script goes next to the first file touched: that directory exists (DELETE) or is
    # created by the stage command's mkdir -p (CREATE/UPDATE).
    first_dir = posixpath.dirname(ops[0].live) if ops else min(roots.values())
    if ops and ops[0].action != Action.DELETE:
        dirs.add(first_dir)
    script_path = f"{first_dir}/{TEMP_PREFIX}{token}.stage.sh"
    validate = any(o.kind in (Kind.CONFIG, Kind.HOSTS) or o.root in (Root.DNSMASQ, Root.HOSTS)
                   for o in ops if o.change is not None)
    conf_files, hosts_files = _test_files(ops, manifest, roots) if validate else ([], [])
    return Ops(token, ops, changes, dirs, rel_dirs, script_path, conf_files, hosts_files, validate)


def _file_ops(changes: Sequence[Change], names: Names) -> tuple[list[Op], set[str], set[tuple[str, str]]]:
    ops: list[Op] = []
    dirs: set[str] = set()
    rel_dirs: set[tuple[str, str]] = set()
    for c in changes:
        p: FilePayload = c.payload
        rd = names.root_dir(p.root)
        live, tmp, bak = names(confine(rd, p.path))
        if c.action in (Action.CREATE, Action.UPDATE):
            f = p.file
            if f is None:
                raise PushError(f"{c.address}: plan has no file content to write")
            binary = Kind(f.kind) == Kind.BINARY
            ops.append(Op(c, c.action, p.root, live, tmp, bak, effective_mode(f),
                           None if binary else f.content, f.source if binary else None, f.secret,
                           Kind(f.kind)))
            dirs.add(rd)
            parent = posixpath.dirname(p.path)
            if parent:
                dirs.add(posixpath.dirname(live))
                rel_dirs.add((rd, parent))
        else:
            ops.append(Op(c, c.action, p.root, live, tmp, bak, 0, None, kind=p.kind))
    return ops, dirs, rel_dirs


def _owned_ops(files: Sequence[Change], manifest: RemoteManifest | None, names: Names, dirs: set[str]) -> list[Op]:
    """Updates of the ownership records (headerless binaries netprov owns) of the roots the changes touch."""
    if manifest is None:
        return []
    ops = []
    touched = {c.payload.root for c in files if c.is_change and not c.refused}
    for r in sorted(touched, key=lambda x: x.value):
        old = set(manifest.owned.get(r, frozenset()))
        new = set(old)
        for c in files:
            p: FilePayload = c.payload
            if p.root != r or c.refused:
                continue
            if c.action == Action.DELETE:
                new.discard(p.path)
            elif p.kind == Kind.BINARY:
                new.add(p.path)
        if new != old:
            rd = names.root_dir(r)
            live, tmp, bak = names(posixpath.join(rd, OWNED_RECORD))
            body = (f"# {HEADER_MARKER}: files under this root that netprov owns but that cannot "
                    "carry its header\n" + "".join(p + "\n" for p in sorted(new))).encode()
            # UPDATE semantics work whether or not the record exists (backup only if present).
            ops.append(Op(None, Action.UPDATE, r, live, tmp, bak, 0o644, body))
            dirs.add(rd)
    return ops


def _test_files(ops: list[Op], manifest: RemoteManifest | None, roots: Mapping[Root, str]
                ) -> tuple[list[str], list[str]]:
    """The test config's parts: every final drop-in and every final hostsdir file (staged or live)."""
    conf_files: list[str] = []
    hosts_files: list[str] = []
    written = {o.live: o.tmp for o in ops if o.action in (Action.CREATE, Action.UPDATE)}
    deleted = {o.live for o in ops if o.action == Action.DELETE}
    final: dict[str, tuple[Root, bool]] = {}
    if manifest is not None:
        for (r, p), e in manifest.entries.items():
            if r in (Root.DNSMASQ, Root.HOSTS) and r in roots and e.type == "file" and "/" not in p:
                final[posixpath.join(roots[r], p)] = (r, e.managed)
    for o in ops:
        if o.change is not None and o.action != Action.DELETE:
            final[o.live] = (o.root, True)
    for live, (r, managed) in sorted(final.items()):
        base = posixpath.basename(live)
        if live in deleted or base.startswith(".") or base.endswith("~"):
            continue
        path = written.get(live, live)
        if r == Root.DNSMASQ or any(o.live == live and o.kind == Kind.CONFIG for o in ops):
            if managed or base.endswith(".conf"):
                conf_files.append(path)
        elif r == Root.HOSTS:
            hosts_files.append(path)
    for o in ops:  # CONFIG/HOSTS files living in other roots
        if o.change is None or o.action == Action.DELETE or o.root in (Root.DNSMASQ, Root.HOSTS):
            continue
        if o.kind == Kind.CONFIG:
            conf_files.append(o.tmp)
        elif o.kind == Kind.HOSTS:
            hosts_files.append(o.tmp)
    return conf_files, hosts_files
