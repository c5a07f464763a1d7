"""In-memory ports behind the engine's protocols (``StoragePort``, ``BootHostPort``): engine tests run
``make_plan`` + ``apply_plan`` with neither the simulator nor sshd.

Both write what they are asked to do to one shared ``log`` (``(system, what, address)`` in call order), so a
test sees the order of the phases across systems. The boot host keeps its files as (sha256, mode) and
applies file changes to them, checking each changing file's "before" hash first as the real host does inside
its lock; the NAS keeps the ``ActualStorage`` it was given and only records (and reports) the changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import ActivationPayload, FilePayload, RemoteEntry, RemoteManifest
from netprov.core.plan import Change
from netprov.core.storage import ActualStorage, DesiredStorage, state_fingerprint
from netprov.errors import NetprovError, StalePlanError

Log = list[tuple[str, str, str]]


class MemoryStorage:
    """A NAS holding ``actual`` (a fresh one when None). ``fail``: machines whose changes fail (reported
    ``failed``, as the executor does); ``raises``: an error ``apply`` raises instead of doing anything;
    ``after_apply``: called when an ``apply`` returns (a test's Ctrl-C between phases)."""

    def __init__(self, log: Log, actual: ActualStorage | None = None, *, system: str = "storage:nas",
                 fail: Iterable[str] = (), raises: NetprovError | None = None,
                 after_apply: Callable[[], None] | None = None) -> None:
        self.log, self.actual, self.system = log, actual, system
        self.fail, self.raises, self.after_apply = frozenset(fail), raises, after_apply
        self.calls: list[list[Change]] = []

    def read(self, desired: DesiredStorage) -> ActualStorage:
        if self.actual is None:
            self.actual = ActualStorage(parent=desired.parent, service={"enable": False, "state": "STOPPED"})
        return self.actual

    def fingerprint(self, actual: ActualStorage) -> str:
        return state_fingerprint(actual)

    def apply(self, changes: list[Change], *, expected_fingerprint: str | None, desired: DesiredStorage | None = None,
              progress: Any = None, parallel: int = 8, should_stop: Callable[[], bool] | None = None) -> None:
        if self.raises is not None:
            raise self.raises
        if expected_fingerprint is not None and expected_fingerprint != state_fingerprint(self.actual):
            raise StalePlanError(f"{self.system} changed since the plan was made")
        self.calls.append(list(changes))
        note = progress or (lambda event, change, error=None: None)
        for c in changes:
            if not c.is_change:
                continue
            if should_stop is not None and should_stop():
                note("skipped", c, "not attempted: interrupted")
                continue
            self.log.append((self.system, c.action.value, str(c.address)))
            if c.machine in self.fail:
                note("failed", c, "injected failure")
            else:
                note("done", c)
        if self.after_apply is not None:
            self.after_apply()


class MemoryBootHost:
    """A PXE server holding ``files``: (root, path) -> (sha256, mode), every one netprov's. Binary sources
    are all present with the hash ``"binsha"``. ``raises``: an error ``apply`` raises."""

    def __init__(self, log: Log, server: str, roots: dict[Root, str], *, raises: NetprovError | None = None) -> None:
        self.log, self.server, self.roots, self.raises = log, server, roots, raises
        self.files: dict[tuple[Root, str], tuple[str, int]] = {}
        self.applied: list[list[Change]] = []

    def read(self, desired: Sequence[BootFile], *, host_text: bool = False) -> RemoteManifest:
        entries = {key: RemoteEntry(key[0], key[1], "file", sha, True, mode, 1) for key, (sha, mode) in self.files.items()}
        owned = {r: frozenset(p for (rr, p) in self.files if rr is r) for r in self.roots}
        return RemoteManifest(self.server, dict(self.roots), entries,
                              sources={f.source: "binsha" for f in desired if f.kind is Kind.BINARY and f.source},
                              owned=owned)

    def apply(self, changes: Iterable[Change], progress: Any = None) -> None:
        changes = list(changes)
        if self.raises is not None:
            raise self.raises
        self.applied.append(changes)
        system = f"pxe:{self.server}"
        for c in changes:
            if isinstance(c.payload, FilePayload) and c.is_change:
                p = c.payload
                held = self.files.get((p.root, p.path))
                if (held[0] if held else None) != p.before_sha256:
                    raise StalePlanError(f"files on {self.server} changed since the plan was made ({c.address})")
        for c in changes:
            if isinstance(c.payload, FilePayload) and c.is_change:
                p = c.payload
                if c.action.value == "delete":
                    del self.files[(p.root, p.path)]
                else:
                    self.files[(p.root, p.path)] = (p.after_sha256, p.after_mode)
                self.log.append((system, c.action.value, str(c.address)))
            elif isinstance(c.payload, ActivationPayload):
                self.log.append((system, c.payload.activation.value, str(c.address)))
