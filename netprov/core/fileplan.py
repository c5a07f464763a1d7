"""File plans: what to change on a PXE server so it holds the desired boot files.

PURE: no I/O. ``plan_files(desired, remote)`` compares the renderer's ``BootFile``
values with a ``RemoteManifest`` (what the server holds, read by the PXE adapter
in one SSH round trip) and returns the server's part of the plan: one ``Change``
(``kind="file"``, a ``FilePayload``) per file, each with a reason and a masked unified
diff, then the activation the server needs afterwards (``kind="activation"``, an
``ActivationPayload``: restart or SIGHUP) when it needs one. A file netprov will not
touch is a *refused* change that says why; a missing iPXE binary source is refused
too but only advisory (``FilePayload.advisory``): the rest of the plan still applies.

Ownership: a file is netprov's when ``HEADER_MARKER`` is within its first three
lines, or (for binaries, which cannot carry a header) when it is listed in the
root's ownership record ``.netprov-owned``. Anything else is never overwritten
nor deleted: a desired path that collides with it is refused.

Paths: every relative path goes through ``confine`` (lexical rules) before it is
planned; the adapter joins it under its root with the same function.

Machines: every change says which machine its file belongs to (``machine``), or that it is
one of the server's shared files (``shared``: the dnsmasq drop-in, ``boot.ipxe``, the
embedded script, the iPXE binaries). A desired file knows its machine (``BootFile.machine``).
A file on the server that is no longer desired is tied to a machine by its name, as netprov
names them: ``hosts/<machine>.conf``, and ``<mac>.ipxe`` through the host line files that
name that MAC (their old text, or the desired text when the hash matches). A MAC script no
host file names belongs to no machine netprov can tell. ``for_targets`` keeps what a
``--target`` run may do; ``without_machines`` holds back machines whose storage failed.
Both take and return a server's changes.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from netprov.core.bootfiles import HEADER_MARKER, BootFile, Kind, Root
from netprov.core.manifest import (Activation, RemoteEntry, RemoteManifest, holds_secret,
                                   manifest_fingerprint, manifest_from_json, manifest_to_json)
from netprov.core.plan import Action, Address, Change, Payload
from netprov.core.secrets import MASK, mask_secrets
from netprov.errors import PathConfinementError, PushError

__all__ = [
    "OWNED_RECORD",
    "TEMP_PREFIX",
    "ANY",
    "Activation",
    "ActivationPayload",
    "FilePayload",
    "Reason",
    "RemoteEntry",
    "RemoteManifest",
    "activation_of",
    "check_ready",
    "check_relpath",
    "confine",
    "effective_mode",
    "file_address",
    "for_targets",
    "has_header",
    "is_advisory",
    "manifest_fingerprint",
    "manifest_from_json",
    "manifest_to_json",
    "mask_secrets",
    "plan_files",
    "secret_digests",
    "text_wanted",
    "without_machines",
]

#: Name of the per-root record of headerless files netprov owns (binaries). Dot-prefixed:
#: dnsmasq's conf-dir / hostsdir skip it.
OWNED_RECORD = ".netprov-owned"
#: Prefix of every temporary / backup name netprov creates on the server.
TEMP_PREFIX = ".netprov."

#: Which activation each root's files need when they change (deletes have no BootFile).
ROOT_KIND = {Root.DNSMASQ: Kind.CONFIG, Root.HOSTS: Kind.HOSTS, Root.TFTP: Kind.SCRIPT, Root.HTTP: Kind.SCRIPT}


class Reason(str, Enum):
    ABSENT = "not on the server"
    CONTENT = "content differs"
    MODE = "mode differs"
    CONTENT_AND_MODE = "content and mode differ"
    UNCHANGED = "content and mode match"
    NOT_DESIRED = "managed by netprov but no longer desired"
    UNMANAGED = "present on the server without the netprov header"
    NOT_REGULAR = "present on the server but not a regular file"
    PARENT_NOT_DIR = "a parent directory on the server is a symlink or not a directory"
    SOURCE_MISSING = "the binary's source file is missing on the server"
    ROOT_NOT_DIR = "the root is not a directory on the server"
    OTHER_MACHINE = "on the server this file also belongs to a machine that is not targeted"


# ---------------------------------------------------------------------------- payloads


def _oct(mode: int | None) -> str | None:
    return None if mode is None else f"{mode:04o}"


@dataclass(frozen=True)
class FilePayload(Payload):
    """What the executor needs to write or delete one boot file (``kind="file"``).

    ``before_*`` is what the server holds (None: absent), ``after_*`` what it will hold. The
    desired ``file`` (its content may hold a CHAP secret) travels with the change for the
    executor only: it is neither shown (``repr``), compared, nor written to JSON.

    A file whose content holds a secret (``secret``: the desired one; ``old_secret``: the copy on
    the server) shows ``MASK`` for both hashes in JSON and views: the rest of such a file can be
    derived from the inventory and the templates, so its hash would let anyone test guesses of a
    CHAP secret offline. The real hashes stay in these fields, for the executor (it re-checks the
    before-hash under the server's lock) and for a saved plan's keyed digests (``secret_digests``)."""

    root: Root
    path: str
    kind: Kind
    before_sha256: str | None = None
    before_mode: int | None = None
    after_sha256: str | None = None
    after_mode: int | None = None
    secret: bool = False
    also: tuple[str, ...] = ()       # other machines the server's host files tie this file to
    advisory: bool = False           # refused, but not blocking: a missing iPXE binary source
    file: BootFile | None = field(default=None, repr=False, compare=False)
    old_secret: bool = False         # the server's copy holds a secret (``manifest.holds_secret``)

    @property
    def masked(self) -> bool:
        """Its hashes are shown as ``MASK``: the desired file or the server's copy holds a secret."""
        return self.secret or self.old_secret

    def __repr__(self) -> str:   # as shown: a debug log of a change masks the hashes too
        return "FilePayload(" + ", ".join(f"{k}={v!r}" for k, v in self.to_json().items()) + ")"

    def _shown(self, sha256: str | None) -> str | None:
        return MASK if sha256 is not None and self.masked else sha256

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root.value, "path": self.path, "kind": self.kind.value,
                "before_sha256": self._shown(self.before_sha256), "before_mode": _oct(self.before_mode),
                "after_sha256": self._shown(self.after_sha256), "after_mode": _oct(self.after_mode),
                "secret": self.masked, "also": list(self.also), "advisory": self.advisory}

    def sides(self, action: Action) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if action is Action.NOOP:
            return None, None
        before = None if self.before_sha256 is None else {"sha256": self._shown(self.before_sha256),
                                                          "mode": _oct(self.before_mode)}
        after = None if action is Action.DELETE else {"sha256": self._shown(self.after_sha256),
                                                      "mode": _oct(self.after_mode)}
        return before, after

    @property
    def content_changes(self) -> bool:
        """A create, or an update of the content (not only the mode)."""
        return self.before_sha256 is None or self.before_sha256 != self.after_sha256


def secret_digests(changes: Iterable[Change], key: bytes) -> dict[str, str]:
    """Address -> HMAC-SHA256 under ``key`` of the real hashes and modes of every file change whose
    hashes are masked. A saved plan keeps them (with its random key) so that ``apply FILE`` still sees a
    secret that changed since the plan, without the plan holding a hash anyone could test guesses on
    without the key. Pure."""
    out = {}
    for c in _files(changes):
        p: FilePayload = c.payload
        if p.masked:
            msg = "\0".join(str(v) for v in (c.action.value, p.before_sha256, p.before_mode, p.after_sha256,
                                              p.after_mode)).encode()
            out[str(c.address)] = hmac.new(key, msg, hashlib.sha256).hexdigest()
    return out


@dataclass(frozen=True)
class ActivationPayload(Payload):
    """What dnsmasq needs once the server's files changed (``kind="activation"``): ``restart`` or
    ``sighup``. ``pending`` is what an earlier, unfinished apply left to do (kept when the plan is
    narrowed to some machines)."""

    activation: Activation
    pending: Activation = Activation.NONE

    def sides(self, action: Action) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return None, {"activation": self.activation.value}


def file_address(root: Root, path: str) -> Address:
    return Address(f"pxe.{Root(root).value}", path)


def _files(changes: Iterable[Change]) -> list[Change]:
    return [c for c in changes if isinstance(c.payload, FilePayload)]


def is_advisory(c: Change) -> bool:
    """Refused, but left out without stopping apply: a missing iPXE binary source."""
    return isinstance(c.payload, FilePayload) and c.payload.advisory


def activation_of(changes: Iterable[Change]) -> Activation:
    """The activation a server's changes end with (NONE when they have none)."""
    for c in changes:
        if isinstance(c.payload, ActivationPayload):
            return c.payload.activation
    return Activation.NONE


def check_ready(remote: RemoteManifest, changes: Iterable[Change]) -> None:
    """Refuse (PushError) changes for a server the read found not ready for an apply, so that apply
    stops before any change anywhere."""
    if remote.preflight and any(c.is_change and not c.refused for c in changes):
        raise PushError(f"PXE server {remote.server} is not ready for netprov: "
                        + "; ".join(remote.preflight) + " (nothing was changed)")


# ---------------------------------------------------------------------------- paths

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def check_relpath(rel: str) -> str:
    """Return ``rel`` if it is a clean relative POSIX path, else raise PathConfinementError.

    Rejects: empty, absolute, ``..`` or ``.`` segments, empty segments (``a//b``,
    trailing ``/``), backslashes, NUL and other control characters, and names that
    start with netprov's temporary prefix or are its ownership record.
    """
    if not isinstance(rel, str) or rel == "":
        raise PathConfinementError(f"empty path {rel!r}")
    if _BAD_CHARS.search(rel):
        raise PathConfinementError(f"path {rel!r} contains a NUL, control character or backslash")
    if rel.startswith("/"):
        raise PathConfinementError(f"path {rel!r} is absolute; boot file paths are relative to a root")
    for seg in rel.split("/"):
        if seg == "":
            raise PathConfinementError(f"path {rel!r} has an empty segment")
        if seg in (".", ".."):
            raise PathConfinementError(f"path {rel!r} contains {seg!r}")
        if seg.startswith(TEMP_PREFIX) or seg == OWNED_RECORD:
            raise PathConfinementError(f"path {rel!r} uses a name reserved for netprov's own bookkeeping")
    return rel


def confine(root_dir: str, rel: str) -> str:
    """Join ``rel`` under ``root_dir`` or raise PathConfinementError. The ONE path gate.

    ``root_dir`` must be an absolute, normalised directory. The result is checked
    to stay under it after normalisation. Symlinks cannot be checked here (no
    I/O): the planner refuses paths whose parents the manifest shows as symlinks,
    and the adapter's remote script refuses to write through them.
    """
    if not isinstance(root_dir, str) or not root_dir.startswith("/") or _BAD_CHARS.search(root_dir):
        raise PathConfinementError(f"root {root_dir!r} must be an absolute path without control characters")
    root = posixpath.normpath(root_dir)
    if root == "/":
        raise PathConfinementError("a root may not be '/'")
    check_relpath(rel)
    full = posixpath.normpath(posixpath.join(root, rel))
    if posixpath.commonpath([root, full]) != root or full == root:
        raise PathConfinementError(f"path {rel!r} escapes root {root!r}")
    return full


def effective_mode(f: BootFile) -> int:
    """The mode a boot file is written with: secret files are always 0640."""
    return 0o640 if f.secret else (f.mode & 0o7777)


def has_header(text: bytes | str) -> bool:
    """True when ``HEADER_MARKER`` appears within the first three lines."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return any(HEADER_MARKER in line for line in text.split("\n", 3)[:3])


# ---------------------------------------------------------------------------- plan


def _is_text(f: BootFile) -> bool:
    if f.kind == Kind.BINARY:
        return False
    try:
        f.content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unified(old: bytes | None, new: bytes | None, label: str, secrets: Iterable[str]) -> str:
    a = mask_secrets(old.decode("utf-8", "replace"), secrets) if old is not None else ""
    b = mask_secrets(new.decode("utf-8", "replace"), secrets) if new is not None else ""
    diff = "".join(difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True),
        fromfile=f"a/{label}" if old is not None else "/dev/null",
        tofile=f"b/{label}" if new is not None else "/dev/null"))
    if not diff and old != new:
        diff = f"# {label}: only masked (secret) values differ\n"
    return diff


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def text_wanted(desired: Iterable[BootFile], remote: RemoteManifest) -> list[tuple[Root, str]]:
    """(root, path) of managed files whose old content a diff needs and the manifest lacks: a text
    file whose hash differs from the desired one, or a file to be deleted. Empty ⇒ no second
    round trip is needed."""
    wanted = {(Root(f.root), f.path): f for f in desired}
    want = []
    for key, e in sorted(remote.entries.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        if key in remote.old_text or e.type != "file" or not e.managed or key[0] in remote.bad_roots:
            continue
        f = wanted.get(key)
        if f is None or (_is_text(f) and f.sha256 != e.sha256):
            want.append(key)
    return want


def plan_files(desired: Sequence[BootFile], remote: RemoteManifest, *, diffs: bool = True) -> tuple[Change, ...]:
    """Compare desired boot files with what the server holds: the server's changes, files in
    (root, path) order, then its activation if it needs one. Pure.

    Raises PathConfinementError for a desired path that fails ``check_relpath``
    and ValueError for two desired files at the same (root, path) or for files of
    another server.
    """
    seen: dict[tuple[Root, str], BootFile] = {}
    for f in desired:
        check_relpath(f.path)
        if f.server != remote.server:
            raise ValueError(f"{f.address} is for server {f.server!r}, manifest is of {remote.server!r}")
        key = (Root(f.root), f.path)
        if key in seen:
            raise ValueError(f"two desired files at {f.address}")
        if f.kind == Kind.BINARY and not f.source:
            raise ValueError(f"{f.address} is a binary without a source")
        seen[key] = f

    system = f"pxe:{remote.server}"
    tied = script_owners(seen, remote)
    changes: list[Change] = []
    for (root, path), f in seen.items():
        also = tuple(sorted(tied.get(path, set()) - {f.machine})) if f.machine and root in _SCRIPT_ROOTS else ()
        changes.append(_plan_one(system, root, path, f, remote, diffs, also))

    # Managed files on the server that are no longer desired → DELETE.
    for (root, path), e in remote.entries.items():
        if (root, path) in seen or e.type != "file" or not e.managed:
            continue
        diff = None
        if diffs and (root, path) in remote.old_text:
            diff = _unified(remote.old_text[(root, path)], None, f"{root.value}/{path}", ())
        owners = _owners_of(root, path, tied)
        payload = FilePayload(root, path, ROOT_KIND[root], e.sha256, e.mode,
                              also=tuple(owners[1:]) if owners else (),
                              old_secret=holds_secret(remote, root, path))
        changes.append(Change(system, "file", file_address(root, path), Action.DELETE, Reason.NOT_DESIRED.value,
                              machine=owners[0] if owners else None, diff=diff, shared=owners is None,
                              payload=payload))

    changes.sort(key=lambda c: (c.payload.root.value, c.payload.path))
    return _with_activation(system, changes, remote.pending)


def _plan_one(system: str, root: Root, path: str, f: BootFile, remote: RemoteManifest, diffs: bool,
              also: tuple[str, ...]) -> Change:
    kind = Kind(f.kind)
    mode = effective_mode(f)
    after_sha = remote.sources.get(f.source) if kind == Kind.BINARY else f.sha256
    payload = FilePayload(root, path, kind, after_sha256=after_sha, after_mode=mode, secret=f.secret,
                          also=also, file=f)
    address = file_address(root, path)
    who: dict[str, Any] = {"machine": f.machine, "shared": f.machine is None}

    def refused(reason: Reason, e: RemoteEntry | None = None) -> Change:
        held = e is not None and holds_secret(remote, e.root, e.path)
        return _refused(system, reason, replace(payload, before_sha256=e.sha256 if e else None,
                                                before_mode=e.mode if e else None, old_secret=held), **who)

    if root in remote.bad_roots:
        return refused(Reason.ROOT_NOT_DIR)
    if kind == Kind.BINARY and remote.sources.get(f.source) is None:
        return refused(Reason.SOURCE_MISSING)
    for parent in _parents(path):
        pe = remote.get(root, parent)
        if pe is not None and pe.type != "dir":
            return refused(Reason.PARENT_NOT_DIR, pe)
    label = f"{root.value}/{path}"
    e = remote.get(root, path)
    if e is None:
        diff = _unified(None, f.content, label, f.secrets) if diffs and _is_text(f) else None
        return Change(system, "file", address, Action.CREATE, Reason.ABSENT.value, diff=diff, payload=payload, **who)
    if e.type != "file":
        return refused(Reason.NOT_REGULAR, e)
    if not e.managed:
        return refused(Reason.UNMANAGED, e)
    payload = replace(payload, before_sha256=e.sha256, before_mode=e.mode,
                      old_secret=holds_secret(remote, root, path))
    same_content = e.sha256 == after_sha
    same_mode = e.mode == mode
    if same_content and same_mode:
        return Change(system, "file", address, Action.NOOP, Reason.UNCHANGED.value, payload=payload, **who)
    reason = Reason.MODE if same_content else (Reason.CONTENT if same_mode else Reason.CONTENT_AND_MODE)
    diff = None
    if diffs and not same_content and _is_text(f) and (root, path) in remote.old_text:
        diff = _unified(remote.old_text[(root, path)], f.content, label, f.secrets)
    return Change(system, "file", address, Action.UPDATE, reason.value, diff=diff, payload=payload, **who)


def _refused(system: str, reason: Reason, payload: FilePayload, *, machine: str | None, shared: bool,
             detail: str = "") -> Change:
    """A file netprov will not write: a create or update that says why. A missing iPXE binary source only
    hurts the machines of that architecture: it is advisory (left out, while everything else applies)."""
    advisory = reason is Reason.SOURCE_MISSING
    why = (f"{reason.value}: machines needing {payload.path} can't boot until it is in the TFTP root"
           if advisory else reason.value + (f": {detail}" if detail else ""))
    action = Action.UPDATE if payload.before_sha256 is not None else Action.CREATE
    return Change(system, "file", file_address(payload.root, payload.path), action, why, machine=machine,
                  refused=why, shared=shared, payload=replace(payload, advisory=advisory))


def _with_activation(system: str, changes: list[Change], pending: Activation) -> tuple[Change, ...]:
    """``changes`` (files only) followed by the activation dnsmasq needs after them, if any: a restart
    when its config changed, a SIGHUP when a host line file did, or what a previous apply left pending."""
    activation, why = Activation.NONE, ""
    for c in changes:
        if not c.is_change or c.refused or not (c.action is Action.DELETE or c.payload.content_changes):
            continue
        if c.payload.kind == Kind.CONFIG:
            activation, why = Activation.RESTART, f"{c.address} changed (dnsmasq reads config only at start)"
            break
        if c.payload.kind == Kind.HOSTS and activation == Activation.NONE:
            activation, why = Activation.SIGHUP, f"{c.address} changed (dhcp-hostsdir is re-read on SIGHUP)"
    if pending.rank > activation.rank:
        activation, why = pending, "a previous apply changed files but did not finish activating dnsmasq"
    if activation is Activation.NONE:
        return tuple(changes)
    server = system.split(":", 1)[1]
    return (*changes, Change(system, "activation", Address("dnsmasq", server), Action.UPDATE, why, shared=True,
                             payload=ActivationPayload(activation, pending)))


def _pending_of(changes: Iterable[Change]) -> Activation:
    return next((c.payload.pending for c in changes if isinstance(c.payload, ActivationPayload)), Activation.NONE)


# ---------------------------------------------------------------------------- machines

_SCRIPT_ROOTS = (Root.TFTP, Root.HTTP)
#: A machine script's name: iPXE's ${mac:hexhyp}.ipxe (render.script_name).
_MAC_SCRIPT = re.compile(r"[0-9a-f]{2}(?:-[0-9a-f]{2}){5}\.ipxe")
#: A host line file's name: <machine>.conf (render.host_file_name).
_HOST_FILE = re.compile(r"([^/]+)\.conf")
#: A MAC address in a dhcp-host line (not part of a longer run of hex pairs, e.g. a client id).
_MAC = re.compile(r"(?<![0-9A-Fa-f:-])([0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5})(?![0-9A-Fa-f:-])")


def script_owners(desired: Mapping[tuple[Root, str], BootFile], remote: RemoteManifest) -> dict[str, set[str]]:
    """Script file name → the machines whose host line file *on the server* names its MAC.

    A host file's text is known when it was fetched (``old_text``: every host file that
    changes or goes away) or when it is unchanged (the desired text, same hash). Pure.
    """
    out: dict[str, set[str]] = {}
    for (root, path), e in remote.entries.items():
        m = _HOST_FILE.fullmatch(path)
        if root != Root.HOSTS or m is None or e.type != "file" or not e.managed:
            continue
        text = remote.old_text.get((root, path))
        f = desired.get((root, path))
        if text is None and f is not None and f.kind != Kind.BINARY and f.sha256 == e.sha256:
            text = f.content
        if text is None:
            continue
        for mac in _MAC.findall(text.decode("utf-8", "replace")):
            out.setdefault(mac.replace(":", "-").lower() + ".ipxe", set()).add(m.group(1))
    return out


def _owners_of(root: Root, path: str, tied: Mapping[str, set[str]]) -> list[str] | None:
    """The machines a file netprov no longer wants belongs to; [] when it is a machine's file
    but no machine can be told; None when it is not a machine's file (a shared leftover)."""
    if root == Root.HOSTS:
        m = _HOST_FILE.fullmatch(path)
        return [m.group(1)] if m else None
    if root in _SCRIPT_ROOTS and _MAC_SCRIPT.fullmatch(path):
        return sorted(tied.get(path, ()))
    return None


#: In ``for_targets``' ``enough``: any content (or none) of that shared file serves the targeted machines.
ANY = "*"


def for_targets(changes: Sequence[Change], targets: Iterable[str],
                enough: Mapping[tuple[Root, str], Iterable[str | None]] | None = None) -> tuple[Change, ...]:
    """The part of one server's ``changes`` a ``--target`` run carries out. Pure.

    Kept: the changes of files that belong to a targeted machine (its host line file, its
    script, and, for a machine whose MAC changed or that left the inventory, the files the
    server's host files tie to it), and the shared files' creates and updates when this
    server serves a targeted machine in the inventory (they boot through them). Left as the
    server holds them: every other machine's files, files netprov can't tie to a machine,
    shared files no longer wanted, and shared files whose content on the server already
    serves the targeted machines: ``enough`` maps a shared file to those contents (sha256,
    None for "absent", ``ANY``), e.g. a config without the ARM64 lines when only an
    untargeted machine is ARM64. A targeted machine's file that the server's host files
    also tie to a machine that is not targeted is refused. The activation follows from
    what is kept; a kept shared change's reason says which targeted machines it is for.
    """
    enough = enough or {}
    wanted = frozenset(targets)
    files = _files(changes)
    served = {c.machine for c in files if c.payload.file is not None and c.machine in wanted}
    kept: list[Change] = []
    for c in files:
        p: FilePayload = c.payload
        if c.shared:
            ok = set(enough.get((p.root, p.path), ()))
            if not served or c.action == Action.DELETE or ANY in ok \
                    or (p.before_sha256 in ok and p.before_mode == p.after_mode):
                continue
            kept.append(c)
            continue
        if c.machine is None or c.machine not in wanted:
            continue
        others = [m for m in p.also if m not in wanted]
        if others and c.action == Action.DELETE:
            continue
        if others and c.is_change and not c.refused:
            names = ", ".join(others)
            c = _refused(c.system, Reason.OTHER_MACHINE, p, machine=c.machine, shared=False,
                         detail=(f"the server's host line file of {names} names this MAC; target "
                                 f"{names} too, or apply without --target"))
        kept.append(c)
    if not changes:
        return ()
    system = changes[0].system
    out = _with_activation(system, kept, _pending_of(changes) if served or kept else Activation.NONE)
    involved = ", ".join(sorted(served | {c.machine for c in kept if c.machine is not None}))
    server = system.split(":", 1)[1]
    return tuple(replace(c, reason=f"{c.reason}; shared by every machine on {server}, planned for targeted "
                                   f"{involved}") if c.shared else c for c in out)


def without_machines(changes: Sequence[Change], machines: Iterable[str]) -> tuple[Change, ...]:
    """One server's ``changes`` with the files of ``machines`` left exactly as the server holds them
    (neither written nor deleted, including files the server's host files tie to them); the
    activation follows from what is left. Pure."""
    held = frozenset(machines)
    if not held or not changes:
        return tuple(changes)
    kept = [c for c in _files(changes) if c.machine not in held and not held.intersection(c.payload.also)]
    return _with_activation(changes[0].system, kept, _pending_of(changes))
