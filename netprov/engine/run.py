"""One plan and one apply over both halves: storage on the NAS, boot files on the PXE servers.

The engine does no printing and opens no connection itself: it is handed a
``World`` (one port per system: live adapters, or snapshot ports offline) and a
``Reporter`` for progress. Ports read facts; the core planners plan; ports carry out
the ``Plan``'s changes.

Order (style.md §3): zvol -> extent -> target/auth/initiator -> mapping (storage,
non-destructive changes), then boot files and dnsmasq, and only then storage deletes,
so a machine never boots into a script or target that doesn't exist yet, and nothing
points at a resource when it is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from netprov.core import fileplan as fp
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.inventory import Arch, LoadedInventory
from netprov.core.plan import Action, Change, Plan
from netprov.core.boot_render import MISSING_SECRET, Renderer
from netprov.core.storage import (ActualStorage, DesiredStorage, StoragePolicy, desired_storage,
                                  plan_storage, state_fingerprint)
from netprov.core.storage.payloads import AuthCreate
from netprov.errors import NetprovError

logger = logging.getLogger(__name__)


class StoragePort(Protocol):
    """A NAS: ``read`` its actual state (facts), ``apply`` a plan's storage changes."""

    def read(self, desired: DesiredStorage) -> ActualStorage: ...
    def fingerprint(self, actual: ActualStorage) -> str: ...
    def apply(self, changes: list[Change], *, expected_fingerprint: str | None, desired: DesiredStorage | None = None,
              progress: Any = None, parallel: int = 8, should_stop: Callable[[], bool] | None = None) -> Any: ...


class BootHostPort(Protocol):
    """A PXE server: ``read`` what it holds (facts for ``fileplan.plan_files``; with ``host_text``, the
    text of every netprov host line file too, as a snapshot keeps it), ``apply`` a plan's changes of
    that server (it re-checks each changing file's "before" hash inside its lock and raises
    StalePlanError on a mismatch)."""

    def read(self, desired: Sequence[BootFile], *, host_text: bool = False) -> fp.RemoteManifest: ...
    def apply(self, changes: Iterable[Change], progress: Any = None) -> Any: ...


class Reporter(Protocol):
    def event(self, system: str, event: str, change: Change | None = None, error: str | None = None) -> None: ...


class NullReporter:
    def event(self, system: str, event: str, change: Change | None = None, error: str | None = None) -> None:
        return None


@dataclass
class World:
    """Where actual state comes from and changes go: one port per system. ``offline`` is set by whoever
    builds a world of snapshot ports (``netprov.adapters.snapshot``); plans made in it say so."""

    storage: Mapping[str, StoragePort] = field(default_factory=dict)
    pxe: Mapping[str, BootHostPort] = field(default_factory=dict)
    offline: bool = False


@dataclass(frozen=True)
class Planned:
    """A plan, and what it was made from that is not in it (never serialised): the desired storage
    (apply's executor needs its CHAP secrets) and the actual storage (``netprov status`` shows its
    sessions). Apply carries out ``plan``'s changes; nothing is planned again."""

    plan: Plan
    desired: Mapping[str, DesiredStorage]
    actual: Mapping[str, ActualStorage]


@dataclass
class ApplyResult:
    """What an apply did, recorded as it happens (the caller may hold it while apply runs)."""

    done: list[str] = field(default_factory=list)                 # addresses of changes made
    failed: list[tuple[str, str]] = field(default_factory=list)   # (address or system, error)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    stopped: str | None = None    # the system whose port raised and stopped the whole apply

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def server_roots(loaded: LoadedInventory, server: str) -> dict[Root, str]:
    s = loaded.inventory.pxe_servers[server]
    roots = {Root.TFTP: s.tftp_root, Root.DNSMASQ: s.dnsmasq_dir, Root.HOSTS: s.effective_hosts_dir}
    if s.http:
        roots[Root.HTTP] = s.http.root
    return roots


def offline_world(loaded: LoadedInventory, state: Mapping[str, Any]) -> World:
    """A world of snapshot ports: ``state`` from ``netprov state pull`` (``{}``: an empty world)."""
    from netprov.adapters.snapshot import snapshot_ports
    nas, hosts = snapshot_ports(state, loaded.inventory.storage,
                                {name: server_roots(loaded, name) for name in loaded.inventory.pxe_servers})
    return World(storage=nas, pxe=hosts, offline=True)


# --- plan ----------------------------------------------------------------------------

def make_plan(loaded: LoadedInventory, renderer: Renderer, secrets: Mapping[str, str | None], world: World, *,
              policy: StoragePolicy, inventory_name: str = "", inventory_sha256: str = "",
              reporter: Reporter | None = None) -> Planned:
    """Read every system through its port and plan both halves (the core planners). No writes."""
    reporter = reporter or NullReporter()
    inv = loaded.inventory
    changes: list[Change] = []
    fingerprints: dict[str, str] = {}
    desired: dict[str, DesiredStorage] = {}
    actual: dict[str, ActualStorage] = {}
    deferred_deletes: list[Change] = []

    for name in sorted(inv.storage):
        desired[name] = desired_storage(loaded, name, secrets)
        system = f"storage:{name}"
        reporter.event(system, "read")
        actual[name] = world.storage[name].read(desired[name])
        fingerprints[system] = state_fingerprint(actual[name])
        for c in plan_storage(desired[name], actual[name], policy):
            (deferred_deletes if c.action is Action.DELETE else changes).append(c)

    by_server: dict[str, list[BootFile]] = {}
    for f in renderer.render(loaded, secrets):
        by_server.setdefault(f.server, []).append(f)
    for server in sorted(inv.pxe_servers):
        system = f"pxe:{server}"
        reporter.event(system, "read")
        manifest = world.pxe[server].read(by_server.get(server, []))
        planned = fp.plan_files(by_server.get(server, []), manifest)
        fp.check_ready(manifest, planned)
        if policy.machines is not None:
            # --target: only the targeted machines' files (old MAC scripts and removed machines' files
            # included), plus the shared files they boot through; everything else as the server holds it.
            planned = fp.for_targets(planned, policy.machines,
                                     shared_enough(loaded, renderer, server, policy.machines))
        fingerprints[system] = fp.manifest_fingerprint(manifest)
        changes += planned

    changes += deferred_deletes
    plan = Plan(changes=tuple(changes), fingerprints=fingerprints, inventory=inventory_name,
                inventory_sha256=inventory_sha256,
                options={"allow_destroy": policy.allow_destroy, "adopt": policy.adopt,
                         "targets": sorted(policy.machines) if policy.machines is not None else None,
                         "offline": world.offline, "snapshot": policy.snapshot, "snapshot_stamp": policy.stamp})
    return Planned(plan, desired, actual)


def shared_enough(loaded: LoadedInventory, renderer: Renderer, server: str,
                  targets: frozenset[str] | set[str]) -> dict[tuple[Root, str], set[str]]:
    """For --target: the contents of ``server``'s shared files that already serve the targeted machines.

    Shared files depend on the machines only through ARM64 support (its dnsmasq lines and binary).
    When no targeted machine is ARM64, a config with or without those lines serves them, and the
    ARM64 binary isn't theirs to copy: another machine's need is no reason to touch them.
    """
    targeted = [m for m in loaded.machines if m.pxe_server == server and m.name in targets]
    if not targeted:
        return {}
    arm = any(m.arch is Arch.ARM64 for m in targeted)
    out: dict[tuple[Root, str], set[str]] = {}
    variants = [Arch.ARM64] if arm else [Arch.X86_64, Arch.ARM64]
    renders = [[f for f in renderer.render(replace(loaded, machines=(replace(targeted[0], arch=arch),)), {},
                                           servers={server}) if f.machine is None] for arch in variants]
    for files in renders:
        for f in files:
            if f.kind is not Kind.BINARY:
                out.setdefault((f.root, f.path), set()).add(f.sha256)
    everywhere = set.intersection(*({(f.root, f.path) for f in files if f.kind is Kind.BINARY} for files in renders))
    for files in renders:
        for f in files:
            if f.kind is Kind.BINARY and (f.root, f.path) not in everywhere:
                out[(f.root, f.path)] = {fp.ANY}
    return out


def leave_alone(changes: Sequence[Change], machines: Iterable[Any]) -> tuple[Change, ...]:
    """One server's ``changes`` without touching the files of ``machines`` (names, or Machine values):
    as the server holds them, neither written nor deleted, including the old-MAC script the server's
    host file still names. Used after a storage failure (never point a machine at a disk that
    isn't there). ``--target`` uses ``fileplan.for_targets``.
    """
    return fp.without_machines(changes, {getattr(m, "name", m) for m in machines})


def blocking_refusals(plan: Plan, *, secrets_optional: bool = False) -> list[Change]:
    """Refused changes that stop an apply. Advisory ones (a missing iPXE binary source) never do;
    with ``secrets_optional`` (plan time, CI dry-runs) neither do those refused only because a
    CHAP secret isn't available here (the planner marks them ``needs_secret``)."""
    return [c for c in plan.changes if c.refused and c.is_change and not fp.is_advisory(c)
            and not (secrets_optional and isinstance(c.payload, AuthCreate) and c.payload.needs_secret)]


def missing_secrets(plan: Plan) -> list[str]:
    """Files about to be written that would carry a placeholder instead of a CHAP secret."""
    return [str(c.address) for c in plan.changes
            if c.is_change and not c.refused and isinstance(c.payload, fp.FilePayload) and c.payload.file is not None
            and MISSING_SECRET.encode() in c.payload.file.content]


def check_applicable(plan: Plan) -> None:
    """Raise unless every change of ``plan`` can be made: none refused, every CHAP secret a file needs
    at hand. The one check: the CLI calls it before asking to apply, ``apply_plan`` before acting."""
    refused = blocking_refusals(plan)
    if refused:
        raise NetprovError(f"{len(refused)} change(s) refused; nothing was changed: "
                           + "; ".join(f"{c.address}: {c.refused}" for c in refused[:5]))
    missing = missing_secrets(plan)
    if missing:
        raise NetprovError("CHAP secrets are not available for: " + ", ".join(missing[:5])
                           + " (set the secret_env variables / secret_file files); nothing was changed")


# --- apply ---------------------------------------------------------------------------

def apply_plan(plan: Plan, world: World, *, desired: Mapping[str, DesiredStorage], reporter: Reporter | None = None,
               parallel: int = 8, should_stop: Callable[[], bool] = lambda: False,
               result: ApplyResult | None = None) -> ApplyResult:
    """Carry out ``plan`` (made from live state) through ``world``'s ports; ``desired`` is the desired
    storage it was planned from (``Planned.desired``). Each system re-checks its state first.

    Phases: storage creates/updates, then boot files and dnsmasq, then storage deletes. Stops
    cleanly between steps when ``should_stop()`` turns true (Ctrl-C), and the result lists exactly
    what was done, what failed and what was not attempted.

    Every outcome is recorded in the result *before* the reporter hears of it, and a reporter
    that raises loses nothing (its error is logged at debug level). A ``NetprovError`` raised out
    of a port (a stale or unreachable NAS, a PXE server that refuses) is recorded as a failure of
    that system, not raised: what was made before it stays in ``result.done``. Pass ``result`` to
    keep hold of the record even if something else (a bug, a second Ctrl-C) escapes.
    """
    if plan.options.get("offline"):
        raise NetprovError("an offline plan cannot be applied: plan against the live systems")
    check_applicable(plan)
    run = _Apply(plan, world, desired, reporter or NullReporter(), parallel, should_stop,
                 result if result is not None else ApplyResult())
    if not run.storage_phase(deletes=False):
        return run.result
    run.files_phase()
    run.storage_phase(deletes=True)
    # A Ctrl-C during the last phase stops its remaining steps (the port skips them): say so, as the
    # earlier phases do, so the CLI reports an interrupted apply (exit 130), not a failed one.
    if should_stop():
        run.result.interrupted = True
    return run.result


def _systems(plan: Plan, prefix: str) -> list[tuple[str, str, list[Change]]]:
    """(system, name, its changes in plan order) of every system of one half the plan read."""
    return [(system, system.split(":", 1)[1], [c for c in plan.changes if c.system == system])
            for system in sorted(s for s in plan.fingerprints if s.startswith(prefix))]


@dataclass
class _Apply:
    """One apply's state: the plan, the ports, and the record every phase adds to."""

    plan: Plan
    world: World
    desired: Mapping[str, DesiredStorage]
    reporter: Reporter
    parallel: int
    should_stop: Callable[[], bool]
    result: ApplyResult

    def report(self, system: str, event: str, change: Any = None, error: str | None = None) -> None:
        try:
            self.reporter.event(system, event, change, error)
        except Exception:  # noqa: BLE001 - showing progress must never decide an outcome
            logger.debug("progress reporter failed on %s %s", system, event, exc_info=True)

    def storage_progress(self, system: str) -> Callable[..., None]:
        def cb(event: str, change: Change, error: str | None = None) -> None:
            if event == "done":
                self.result.done.append(str(change.address))
            elif event == "failed":
                self.result.failed.append((str(change.address), error or "failed"))
            elif event == "skipped":
                self.result.skipped.append(str(change.address))
            self.report(system, event, change, error)
        return cb

    def not_recorded(self, addresses: list[str]) -> list[str]:
        r = self.result
        seen = set(r.done) | {a for a, _ in r.failed} | set(r.skipped)
        return [a for a in addresses if a not in seen]

    def storage_phase(self, *, deletes: bool) -> bool:
        """Phase 1 (``deletes=False``): creates and updates, each NAS checking its fingerprint before any
        write; a port that raises stops everything (returns False). Phase 3: deletes, in reverse
        dependency order (the planner ordered them), unless a PXE server failed or Ctrl-C came."""
        r = self.result
        for system, name, changes in _systems(self.plan, "storage:"):
            # NOOPs travel along: they carry the ids of existing objects the changes refer to.
            todo = [c for c in changes if (c.action is Action.DELETE) == deletes]
            if deletes:
                if not todo:
                    continue
                if self.should_stop() or any(a.startswith("pxe:") for a, _ in r.failed):
                    r.interrupted = r.interrupted or self.should_stop()
                    r.skipped += [str(c.address) for c in todo]
                    continue
                todo += [c for c in changes if c.action is Action.NOOP]
            elif self.should_stop():
                r.interrupted = True
                r.skipped += [str(c.address) for c in todo if c.is_change]
                continue
            self.report(system, "phase", None, "delete" if deletes else "create/update")
            # Phase 1 changed this NAS on purpose, so its fingerprint no longer matches the plan's; the
            # deletes still verify each object by id and name/mark against apply's own fresh read.
            try:
                self.world.storage[name].apply(
                    todo, expected_fingerprint=None if deletes else self.plan.fingerprints[system],
                    desired=self.desired.get(name), progress=self.storage_progress(system),
                    parallel=self.parallel, should_stop=self.should_stop)
            except NetprovError as exc:
                r.failed.append((system, str(exc)))
                self.report(system, "error", None, str(exc))
                if deletes:
                    r.skipped += self.not_recorded([str(c.address) for c in todo if c.is_change])
                    continue
                # Nothing more is attempted anywhere (no file points at a disk whose creation may have
                # failed, no delete runs); everything not done is 'not attempted'.
                r.skipped += self.not_recorded([str(c.address) for c in self.plan.pending])
                r.stopped = system
                return False
        return True

    def files_phase(self) -> None:
        """Phase 2: boot files (each server checks its own files inside one lock). A machine whose
        storage chain failed keeps its old files: its script must not point at a disk that isn't there."""
        r = self.result
        if self.should_stop():
            r.interrupted = True
        failed = {str(c.address): c.machine for c in self.plan.changes if c.machine}
        failed_machines = {failed[a] for a, _ in r.failed if a in failed}
        for system, server, changes in _systems(self.plan, "pxe:"):
            held = sorted(failed_machines & {c.machine for c in changes} if failed_machines else ())
            if held:
                changes = list(leave_alone(changes, held))
                r.skipped += [f"{server}: files of {m} (its storage failed)" for m in held]
            todo = [c for c in changes if c.is_change and not c.refused]
            if not todo:
                continue
            files = [str(c.address) for c in todo if isinstance(c.payload, fp.FilePayload)]
            if self.should_stop():
                r.interrupted = True
                r.skipped += files
                continue
            # The host re-checks every changing file's "before" hash inside its lock, in the
            # same round trip as the upload, and raises StalePlanError on a mismatch.
            self.report(system, "phase", None, "push")

            def cb(event: str, change: Any = None, _system: str = system) -> None:
                self.report(_system, event, None, str(change.address) if change is not None else None)
            try:
                # Refused changes stay as the server holds them (only advisory ones are left by now).
                self.world.pxe[server].apply([c for c in changes if not c.refused], cb)
            except NetprovError as exc:
                r.failed.append((system, str(exc)))
                r.skipped += files
                self.report(system, "error", None, str(exc))
                continue
            r.done += files
            activation = fp.activation_of(changes)
            if activation is not fp.Activation.NONE:
                r.done.append(f"dnsmasq[{server}] {activation.value}")
