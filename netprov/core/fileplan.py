"""File plans: what to change on a PXE server so it holds the desired boot files.

PURE: no I/O. ``plan_files(desired, remote)`` compares the renderer's ``BootFile``
values with a ``RemoteManifest`` (what the server holds, read by the PXE adapter
in one SSH round trip) and returns a ``FilePlan`` value: one ``FileChange`` per
file (CREATE/UPDATE/DELETE/NOOP/CONFLICT, each with a reason), masked unified
diffs, and the activation the server needs afterwards (restart / SIGHUP / none).

Ownership: a file is netprov's when ``HEADER_MARKER`` is within its first three
lines, or (for binaries, which cannot carry a header) when it is listed in the
root's ownership record ``.netprov-owned``. Anything else is never overwritten
nor deleted: a desired path that collides with it is a CONFLICT.

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
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from netprov.core.bootfiles import HEADER_MARKER, BootFile, Kind, Root
from netprov.core.secrets import mask_secrets
from netprov.errors import PathConfinementError

__all__ = [
    "OWNED_RECORD",
    "TEMP_PREFIX",
    "ANY",
    "Action",
    "Activation",
    "FileChange",
    "FilePlan",
    "Reason",
    "RemoteEntry",
    "RemoteManifest",
    "check_relpath",
    "confine",
    "effective_mode",
    "for_targets",
    "has_header",
    "mask_secrets",
    "plan_files",
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


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"
    CONFLICT = "conflict"


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


class Activation(str, Enum):
    """What dnsmasq needs after the files changed. Ordered: NONE < SIGHUP < RESTART."""

    NONE = "none"
    SIGHUP = "sighup"
    RESTART = "restart"

    @property
    def rank(self) -> int:
        return {"none": 0, "sighup": 1, "restart": 2}[self.value]


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


# ---------------------------------------------------------------------------- masking
# The one masking function lives in netprov.core.secrets (re-exported here for callers).


# ---------------------------------------------------------------------------- manifest


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
    contents fetched for diffs (optional; see ``text_wanted``). ``pending`` is an
    activation a previous apply committed but could not finish.
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

    def with_old_text(self, texts: Mapping[tuple[Root, str], bytes]) -> RemoteManifest:
        merged = dict(self.old_text)
        merged.update(texts)
        return replace(self, old_text=merged)

    def get(self, root: Root, path: str) -> RemoteEntry | None:
        return self.entries.get((root, path))


# ---------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class FileChange:
    """One file's planned change. ``diff`` is a masked unified diff (None for binaries, or
    when the old text was not fetched); ``before_*`` is what the server holds."""

    action: Action
    root: Root
    path: str
    kind: Kind
    reason: Reason
    before_sha256: str | None = None
    after_sha256: str | None = None
    before_mode: int | None = None
    after_mode: int | None = None
    secret: bool = False
    diff: str | None = None
    file: BootFile | None = field(default=None, repr=False, compare=False)
    machine: str | None = None      # the machine the file belongs to (None: shared, or unknown)
    shared: bool = False            # one of the server's shared files (config, boot script, binaries)
    also: tuple[str, ...] = ()      # other machines the server's host files tie this file to
    detail: str = ""                # more about the reason (which machines)

    @property
    def address(self) -> str:
        return f"pxe.{self.root.value}[{self.path}]"

    @property
    def writes(self) -> bool:
        return self.action in (Action.CREATE, Action.UPDATE)

    @property
    def content_changes(self) -> bool:
        return self.action == Action.CREATE or (
            self.action == Action.UPDATE and self.reason != Reason.MODE)


@dataclass(frozen=True)
class FilePlan:
    server: str
    changes: tuple[FileChange, ...]
    activation: Activation
    activation_reason: str = ""
    roots: Mapping[Root, str] = field(default_factory=dict, compare=False)
    manifest: RemoteManifest | None = field(default=None, repr=False, compare=False)
    #: Set by ``for_targets``: the targeted machines this plan changes something for on this server.
    targets: tuple[str, ...] | None = None

    @property
    def pending(self) -> tuple[FileChange, ...]:
        """Changes apply will carry out (CREATE/UPDATE/DELETE)."""
        return tuple(c for c in self.changes if c.action in (Action.CREATE, Action.UPDATE, Action.DELETE))

    @property
    def conflicts(self) -> tuple[FileChange, ...]:
        return tuple(c for c in self.changes if c.action == Action.CONFLICT)

    @property
    def has_changes(self) -> bool:
        return bool(self.pending) or self.activation != Activation.NONE

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        return out

    def summary(self) -> str:
        n = self.counts()
        s = (f"{self.server}: {n['create']} to create, {n['update']} to update, "
             f"{n['delete']} to delete, {n['conflict']} in conflict")
        if self.activation != Activation.NONE:
            s += f"; then {self.activation.value} dnsmasq"
        return s


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
    """(root, path) of managed text files whose old content a diff needs and the manifest
    lacks: hash differs from desired, or the file is to be deleted. Empty ⇒ no second
    round trip is needed."""
    plan = plan_files(list(desired), remote, _diffs=False)
    want = []
    for c in plan.changes:
        if (c.root, c.path) in remote.old_text:
            continue
        e = remote.get(c.root, c.path)
        if e is None or e.type != "file" or not e.managed:
            continue
        if c.action == Action.DELETE or (c.action == Action.UPDATE and c.reason != Reason.MODE
                                         and c.file is not None and _is_text(c.file)):
            want.append((c.root, c.path))
    return want


def plan_files(desired: list[BootFile], remote: RemoteManifest, *, _diffs: bool = True) -> FilePlan:
    """Compare desired boot files with what the server holds. Pure.

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

    tied = script_owners(seen, remote)
    changes: list[FileChange] = []
    for (root, path), f in sorted(seen.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        c = _plan_one(root, path, f, remote, _diffs)
        also = tuple(sorted(tied.get(path, set()) - {f.machine})) if f.machine and root in _SCRIPT_ROOTS else ()
        changes.append(replace(c, machine=f.machine, shared=f.machine is None, also=also))

    # Managed files on the server that are no longer desired → DELETE.
    for (root, path), e in sorted(remote.entries.items(), key=lambda kv: (kv[0][0].value, kv[0][1])):
        if (root, path) in seen or e.type != "file" or not e.managed:
            continue
        diff = None
        if _diffs and (root, path) in remote.old_text:
            diff = _unified(remote.old_text[(root, path)], None, f"{root.value}/{path}", ())
        owners = _owners_of(root, path, tied)
        changes.append(FileChange(Action.DELETE, root, path, ROOT_KIND[root], Reason.NOT_DESIRED,
                                  before_sha256=e.sha256, before_mode=e.mode, diff=diff,
                                  machine=owners[0] if owners else None, also=tuple(owners[1:]) if owners else (),
                                  shared=owners is None))

    changes.sort(key=lambda c: (c.root.value, c.path))
    activation, why = _activation(changes, remote.pending)
    return FilePlan(remote.server, tuple(changes), activation, why, dict(remote.roots), remote)


def _activation(changes: Iterable[FileChange], pending: Activation) -> tuple[Activation, str]:
    """What dnsmasq needs after ``changes`` (plus what a previous apply left pending), and why."""
    activation, why = Activation.NONE, ""
    for c in changes:
        if c.action not in (Action.CREATE, Action.UPDATE, Action.DELETE):
            continue
        if c.kind == Kind.CONFIG and (c.content_changes or c.action == Action.DELETE):
            activation, why = Activation.RESTART, f"{c.address} changed (dnsmasq reads config only at start)"
            break
        if c.kind == Kind.HOSTS and (c.content_changes or c.action == Action.DELETE) \
                and activation == Activation.NONE:
            activation, why = Activation.SIGHUP, f"{c.address} changed (dhcp-hostsdir is re-read on SIGHUP)"
    if pending.rank > activation.rank:
        activation, why = pending, "a previous apply changed files but did not finish activating dnsmasq"
    return activation, why


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


def for_targets(plan: FilePlan, targets: Iterable[str],
                enough: Mapping[tuple[Root, str], Iterable[str | None]] | None = None) -> FilePlan:
    """The part of ``plan`` a ``--target`` run carries out. Pure.

    Kept: the changes of files that belong to a targeted machine (its host line file, its
    script, and, for a machine whose MAC changed or that left the inventory, the files the
    server's host files tie to it), and the shared files' creates and updates when this
    server serves a targeted machine in the inventory (they boot through them). Left as the
    server holds them: every other machine's files, files netprov can't tie to a machine,
    shared files no longer wanted, and shared files whose content on the server already
    serves the targeted machines: ``enough`` maps a shared file to those contents (sha256,
    None for "absent", ``ANY``), e.g. a config without the ARM64 lines when only an
    untargeted machine is ARM64. A targeted machine's file that the server's host files
    also tie to a machine that is not targeted becomes a conflict (apply refuses it).
    The activation follows from what is kept.
    """
    enough = enough or {}
    wanted = frozenset(targets)
    served = tuple(sorted({c.machine for c in plan.changes
                           if c.file is not None and c.machine is not None and c.machine in wanted}))
    kept: list[FileChange] = []
    for c in plan.changes:
        if c.shared:
            ok = set(enough.get((c.root, c.path), ()))
            if not served or c.action == Action.DELETE or ANY in ok \
                    or (c.before_sha256 in ok and c.before_mode == c.after_mode):
                continue
            kept.append(c)
            continue
        if c.machine is None or c.machine not in wanted:
            continue
        others = [m for m in c.also if m not in wanted]
        if others and c.action == Action.DELETE:
            continue
        if others and c.action in (Action.CREATE, Action.UPDATE):
            c = replace(c, action=Action.CONFLICT, reason=Reason.OTHER_MACHINE,
                        detail=(f"the server's host line file of {', '.join(others)} names this MAC; target "
                                f"{', '.join(others)} too, or apply without --target"))
        kept.append(c)
    pending = plan.manifest.pending if plan.manifest is not None and (served or kept) else Activation.NONE
    activation, why = _activation(kept, pending)
    involved = tuple(sorted(set(served) | {c.machine for c in kept if c.machine is not None}))
    return replace(plan, changes=tuple(kept), activation=activation, activation_reason=why, targets=involved)


def without_machines(plan: FilePlan, machines: Iterable[str]) -> FilePlan:
    """``plan`` with the files of ``machines`` left exactly as the server holds them (neither
    written nor deleted, including files the server's host files tie to them). Pure."""
    held = frozenset(machines)
    if not held:
        return plan
    kept = tuple(c for c in plan.changes if c.machine not in held and not held.intersection(c.also))
    pending = plan.manifest.pending if plan.manifest is not None else Activation.NONE
    activation, why = _activation(kept, pending)
    return replace(plan, changes=kept, activation=activation, activation_reason=why)


def _plan_one(root: Root, path: str, f: BootFile, remote: RemoteManifest, diffs: bool) -> FileChange:
    kind = Kind(f.kind)
    mode = effective_mode(f)
    after_sha = remote.sources.get(f.source) if kind == Kind.BINARY else f.sha256
    base = {"root": root, "path": path, "kind": kind, "after_sha256": after_sha, "after_mode": mode,
                "secret": f.secret, "file": f}

    def conflict(reason: Reason, e: RemoteEntry | None = None) -> FileChange:
        return FileChange(Action.CONFLICT, reason=reason, before_sha256=e.sha256 if e else None,
                          before_mode=e.mode if e else None, **base)

    if root in remote.bad_roots:
        return conflict(Reason.ROOT_NOT_DIR)
    if kind == Kind.BINARY and remote.sources.get(f.source) is None:
        return conflict(Reason.SOURCE_MISSING)
    for parent in _parents(path):
        pe = remote.get(root, parent)
        if pe is not None and pe.type != "dir":
            return conflict(Reason.PARENT_NOT_DIR, pe)
    label = f"{root.value}/{path}"
    e = remote.get(root, path)
    if e is None:
        diff = _unified(None, f.content, label, f.secrets) if diffs and _is_text(f) else None
        return FileChange(Action.CREATE, reason=Reason.ABSENT, diff=diff, **base)
    if e.type != "file":
        return conflict(Reason.NOT_REGULAR, e)
    if not e.managed:
        return conflict(Reason.UNMANAGED, e)
    same_content = e.sha256 == after_sha
    same_mode = e.mode == mode
    before = {"before_sha256": e.sha256, "before_mode": e.mode}
    if same_content and same_mode:
        return FileChange(Action.NOOP, reason=Reason.UNCHANGED, **before, **base)
    reason = Reason.MODE if same_content else (Reason.CONTENT if same_mode else Reason.CONTENT_AND_MODE)
    diff = None
    if diffs and not same_content and _is_text(f) and (root, path) in remote.old_text:
        diff = _unified(remote.old_text[(root, path)], f.content, label, f.secrets)
    return FileChange(Action.UPDATE, reason=reason, diff=diff, **before, **base)
