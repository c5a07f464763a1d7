"""One plan and one apply over both halves: storage on the NAS, boot files on the PXE servers.

The engine does no printing and opens no connection itself: it is handed a
``World`` (per-system ports, or offline state) and a ``Reporter`` for progress.

Order (style.md §3): zvol -> extent -> target/auth/initiator -> mapping (storage,
non-destructive changes), then boot files and dnsmasq, and only then storage deletes,
so a machine never boots into a script or target that doesn't exist yet, and nothing
points at a resource when it is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from netprov.core import fileplan as fp
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.inventory import Arch, LoadedInventory
from netprov.core.plan import Action, Change, Plan, fingerprint
from netprov.core.boot_render import MISSING_SECRET, Renderer
from netprov.core.storage import (ActualStorage, DesiredStorage, StoragePolicy, desired_storage,
                                  plan_storage, state_fingerprint)
from netprov.core.storage.payloads import AuthCreate
from netprov.errors import NetprovError

STATE_FORMAT = 1
logger = logging.getLogger(__name__)


class StoragePort(Protocol):
    def read(self, desired: DesiredStorage) -> ActualStorage: ...
    def fingerprint(self, actual: ActualStorage) -> str: ...
    def apply(self, changes: list[Change], *, expected_fingerprint: str | None, desired: DesiredStorage | None = None,
              progress: Any = None, parallel: int = 8, should_stop: Callable[[], bool] | None = None) -> Any: ...


class BootHostPort(Protocol):
    def plan(self, desired: list[BootFile], *, diffs: bool = True) -> fp.FilePlan: ...
    def read_manifest(self, roots: Any = None, *, sources: Any = ()) -> fp.RemoteManifest: ...
    def apply(self, plan: fp.FilePlan, progress: Any = None, *,
              allow_conflicts: bool = False) -> Any: ...  # raises StalePlanError


class Reporter(Protocol):
    def event(self, system: str, event: str, change: Change | None = None, error: str | None = None) -> None: ...


class NullReporter:
    def event(self, system: str, event: str, change: Change | None = None, error: str | None = None) -> None:
        return None


@dataclass
class World:
    """Where actual state comes from: live ports, or an offline snapshot (``state``)."""

    storage: Mapping[str, StoragePort] = field(default_factory=dict)
    pxe: Mapping[str, BootHostPort] = field(default_factory=dict)
    offline_state: Mapping[str, Any] | None = None   # from `netprov state pull`, or {} for an empty world

    @property
    def offline(self) -> bool:
        return self.offline_state is not None


@dataclass
class RunPlan:
    """A plan plus what apply needs to carry it out (not serialised)."""

    plan: Plan
    storage: dict[str, tuple[DesiredStorage, ActualStorage, list[Change]]]
    files: dict[str, fp.FilePlan]
    desired_files: dict[str, list[BootFile]]
    loaded: LoadedInventory


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


# --- state snapshots ------------------------------------------------------------------

def manifest_to_json(m: fp.RemoteManifest) -> dict[str, Any]:
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
        # The host line files' text (MAC, address, name; no secrets): a --target plan from this
        # snapshot can tell whose old-MAC script a file is.
        "host_files": {p: text.decode("utf-8", "replace") for (r, p), text in sorted(m.old_text.items(),
                                                                                     key=lambda kv: kv[0][1])
                       if r is Root.HOSTS},
    }


def manifest_from_json(d: Mapping[str, Any]) -> fp.RemoteManifest:
    entries = {}
    for e in d.get("entries", []):
        entry = fp.RemoteEntry(Root(e["root"]), e["path"], e["type"], e.get("sha256"), bool(e.get("managed")),
                               e.get("mode"), e.get("size"))
        entries[(entry.root, entry.path)] = entry
    return fp.RemoteManifest(
        server=d["server"], roots={Root(k): v for k, v in d.get("roots", {}).items()}, entries=entries,
        missing_roots=frozenset(Root(r) for r in d.get("missing_roots", [])),
        bad_roots=frozenset(Root(r) for r in d.get("bad_roots", [])),
        sources=dict(d.get("sources", {})),
        owned={Root(k): frozenset(v) for k, v in d.get("owned", {}).items()},
        pending=fp.Activation(d.get("pending", "none")),
        old_text={(Root.HOSTS, p): text.encode() for p, text in (d.get("host_files") or {}).items()})


def manifest_fingerprint(m: fp.RemoteManifest) -> str:
    data = manifest_to_json(m)
    data.pop("sources", None)
    data.pop("host_files", None)   # fetched only when needed; the entries' hashes cover them
    return fingerprint(data)


def empty_actual(desired: DesiredStorage) -> ActualStorage:
    """A fresh NAS as the offline planner assumes it: the parent dataset, nothing else, iSCSI off."""
    return ActualStorage(parent=desired.parent, service={"enable": False, "state": "STOPPED"})


def server_roots(loaded: LoadedInventory, server: str) -> dict[Root, str]:
    s = loaded.inventory.pxe_servers[server]
    roots = {Root.TFTP: s.tftp_root, Root.DNSMASQ: s.dnsmasq_dir, Root.HOSTS: s.effective_hosts_dir}
    if s.http:
        roots[Root.HTTP] = s.http.root
    return roots


# --- plan ----------------------------------------------------------------------------

def make_plan(loaded: LoadedInventory, renderer: Renderer, secrets: Mapping[str, str | None], world: World, *,
              policy: StoragePolicy, inventory_name: str = "", inventory_sha256: str = "",
              reporter: Reporter | None = None) -> RunPlan:
    """Read actual state (or take the offline snapshot) and plan both halves. No writes."""
    reporter = reporter or NullReporter()
    inv = loaded.inventory
    changes: list[Change] = []
    fingerprints: dict[str, str] = {}
    storage_parts: dict[str, tuple[DesiredStorage, ActualStorage, list[Change]]] = {}
    state = world.offline_state or {}
    deferred_deletes: list[Change] = []

    for name in sorted(inv.storage):
        desired = desired_storage(loaded, name, secrets)
        system = f"storage:{name}"
        reporter.event(system, "read")
        if world.offline:
            snap = (state.get("storage") or {}).get(name)
            actual = ActualStorage.from_json(snap) if snap else empty_actual(desired)
        else:
            actual = world.storage[name].read(desired)
        fingerprints[system] = state_fingerprint(actual)
        planned = plan_storage(desired, actual, policy)
        storage_parts[name] = (desired, actual, planned)
        for c in planned:
            (deferred_deletes if c.action is Action.DELETE else changes).append(c)

    all_files = renderer.render(loaded, secrets)
    by_server: dict[str, list[BootFile]] = {}
    for f in all_files:
        by_server.setdefault(f.server, []).append(f)
    file_plans: dict[str, fp.FilePlan] = {}
    for server in sorted(inv.pxe_servers):
        system = f"pxe:{server}"
        desired_files = by_server.get(server, [])
        reporter.event(system, "read")
        if world.offline:
            snap = (state.get("pxe") or {}).get(server)
            manifest = manifest_from_json(snap) if snap else fp.RemoteManifest(
                server=server, roots=server_roots(loaded, server),
                sources={f.source: "unknown" for f in desired_files if f.source})
            fplan = fp.plan_files(desired_files, manifest)
        else:
            fplan = world.pxe[server].plan(desired_files)
        if policy.machines is not None:
            # --target: only the targeted machines' files (old MAC scripts and removed machines' files
            # included), plus the shared files they boot through; everything else as the server holds it.
            fplan = fp.for_targets(fplan, policy.machines,
                                   shared_enough(loaded, renderer, server, policy.machines))
        file_plans[server] = fplan
        fingerprints[system] = manifest_fingerprint(fplan.manifest) if fplan.manifest else ""
        changes += file_changes(system, fplan)

    changes += deferred_deletes
    plan = Plan(changes=tuple(changes), fingerprints=fingerprints, inventory=inventory_name,
                inventory_sha256=inventory_sha256,
                options={"allow_destroy": policy.allow_destroy, "adopt": policy.adopt,
                         "targets": sorted(policy.machines) if policy.machines is not None else None,
                         "offline": world.offline, "snapshot": policy.snapshot, "snapshot_stamp": policy.stamp})
    return RunPlan(plan, storage_parts, file_plans, by_server, loaded)


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


def leave_alone(fplan: fp.FilePlan, machines) -> fp.FilePlan:
    """``fplan`` without touching the files of ``machines`` (names, or Machine values): as the
    server holds them, neither written nor deleted, including the old-MAC script the server's
    host file still names. Used after a storage failure (never point a machine at a disk that
    isn't there). ``--target`` uses ``fileplan.for_targets``.
    """
    return fp.without_machines(fplan, {getattr(m, "name", m) for m in machines})


def _shared_reason(fplan: fp.FilePlan, reason: str) -> str:
    """Under --target, why a shared change is in the plan at all."""
    if fplan.targets is None:
        return reason
    return f"{reason}; shared by every machine on {fplan.server}, planned for targeted {', '.join(fplan.targets)}"


def file_changes(system: str, fplan: fp.FilePlan) -> list[Change]:
    """FilePlan -> plan Changes (conflicts become refused changes; activation a final change)."""
    out = []
    action_map = {fp.Action.CREATE: Action.CREATE, fp.Action.UPDATE: Action.UPDATE,
                  fp.Action.DELETE: Action.DELETE, fp.Action.NOOP: Action.NOOP}
    for c in fplan.changes:
        before = None if c.before_sha256 is None else {"sha256": c.before_sha256, "mode": _oct(c.before_mode)}
        after = None if c.action is fp.Action.DELETE else {"sha256": c.after_sha256, "mode": _oct(c.after_mode)}
        if c.action is fp.Action.CONFLICT:
            # A missing iPXE binary source only hurts the machines of that architecture: it is
            # reported (advisory) and left out, while everything else is applied.
            advisory = c.reason is fp.Reason.SOURCE_MISSING
            reason = (f"{c.reason.value}: machines needing {c.path} can't boot until it is in the TFTP root"
                      if advisory else c.reason.value + (f": {c.detail}" if c.detail else ""))
            out.append(Change(system, "file", c.address, Action.UPDATE if before else Action.CREATE,
                              _shared_reason(fplan, reason) if c.shared else reason, before, after,
                              machine=c.machine, refused=reason, diff=None, shared=c.shared,
                              data={"advisory": True} if advisory else {}))
            continue
        action = action_map[c.action]
        reason = c.reason.value + (f": {c.detail}" if c.detail else "")
        out.append(Change(system, "file", c.address, action, _shared_reason(fplan, reason) if c.shared else reason,
                          before if action is not Action.NOOP else None,
                          after if action is not Action.NOOP else None, machine=c.machine, diff=c.diff,
                          shared=c.shared))
    if fplan.activation is not fp.Activation.NONE:
        out.append(Change(system, "service", f"dnsmasq[{fplan.server}]", Action.UPDATE,
                          _shared_reason(fplan, fplan.activation_reason), None,
                          {"activation": fplan.activation.value}, shared=True))
    return out


def _machine_of(run: RunPlan, address: str) -> str | None:
    for c in run.plan.changes:
        if str(c.address) == address:
            return c.machine
    return None


def _oct(mode: int | None) -> str | None:
    return None if mode is None else f"{mode:04o}"


def blocking_refusals(plan: Plan, *, secrets_optional: bool = False) -> list[Change]:
    """Refused changes that stop an apply. Advisory ones (a missing iPXE binary source) never do;
    with ``secrets_optional`` (plan time, CI dry-runs) neither do those refused only because a
    CHAP secret isn't available here (the planner marks them ``needs_secret``)."""
    return [c for c in plan.changes if c.refused and c.is_change and not c.data.get("advisory")
            and not (secrets_optional and isinstance(c.payload, AuthCreate) and c.payload.needs_secret)]


def missing_secrets(run: RunPlan) -> list[str]:
    """Files about to be written that would carry a placeholder instead of a CHAP secret."""
    out = []
    for server, fplan in run.files.items():
        for c in fplan.pending:
            if c.file is not None and MISSING_SECRET.encode() in c.file.content:
                out.append(c.address)
    return out


# --- apply ---------------------------------------------------------------------------

def apply_plan(run: RunPlan, world: World, *, reporter: Reporter | None = None, parallel: int = 8,
               should_stop: Callable[[], bool] = lambda: False,
               result: ApplyResult | None = None) -> ApplyResult:
    """Carry out ``run`` (made from live state). Re-checks each system's fingerprint first.

    Stops cleanly between steps when ``should_stop()`` turns true (Ctrl-C), and the
    result lists exactly what was done, what failed and what was not attempted.

    Every outcome is recorded in the result *before* the reporter hears of it, and a reporter
    that raises loses nothing (its error is logged at debug level). A ``NetprovError`` raised out
    of a port (a stale or unreachable NAS, a PXE server that refuses) is recorded as a failure of
    that system, not raised: what was made before it stays in ``result.done``. Pass ``result`` to
    keep hold of the record even if something else (a bug, a second Ctrl-C) escapes.
    """
    if world.offline:
        raise NetprovError("an offline plan cannot be applied: plan against the live systems")
    reporter = reporter or NullReporter()
    result = result if result is not None else ApplyResult()
    refused = blocking_refusals(run.plan)
    if refused:
        raise NetprovError(f"{len(refused)} change(s) are refused; fix them or pass the flag they name: "
                           + "; ".join(f"{c.address}: {c.refused}" for c in refused[:5]))

    def report(system: str, event: str, change: Any = None, error: str | None = None) -> None:
        try:
            reporter.event(system, event, change, error)
        except Exception:  # noqa: BLE001 - showing progress must never decide an outcome
            logger.debug("progress reporter failed on %s %s", system, event, exc_info=True)

    def storage_progress(system: str):
        def cb(event: str, change: Change, error: str | None = None) -> None:
            if event == "done":
                result.done.append(str(change.address))
            elif event == "failed":
                result.failed.append((str(change.address), error or "failed"))
            elif event == "skipped":
                result.skipped.append(str(change.address))
            report(system, event, change, error)
        return cb

    def not_recorded(addresses: list[str]) -> list[str]:
        seen = set(result.done) | {a for a, _ in result.failed} | set(result.skipped)
        return [a for a in addresses if a not in seen]

    def stop_everything(why: str) -> ApplyResult:
        """A port raised in phase 1: nothing more is attempted anywhere (no file points at a disk
        whose creation may have failed, no delete runs); everything not done is 'not attempted'."""
        rest = [str(c.address) for c in run.plan.pending]
        result.skipped += not_recorded(rest)
        result.stopped = why
        return result

    # Phase 1: storage creates/updates (the fingerprint check happens here, before any write).
    for name, (desired, actual, changes) in sorted(run.storage.items()):
        system = f"storage:{name}"
        # NOOPs travel along: they carry the ids of existing objects the changes refer to.
        todo = [c for c in changes if c.action is not Action.DELETE]
        expected = run.plan.fingerprints[system]
        if should_stop():
            result.interrupted = True
            result.skipped += [str(c.address) for c in todo if c.is_change]
            continue
        report(system, "phase", None, "create/update")
        try:
            world.storage[name].apply(todo, expected_fingerprint=expected, desired=desired,
                                      progress=storage_progress(system), parallel=parallel,
                                      should_stop=should_stop)
        except NetprovError as exc:
            result.failed.append((system, str(exc)))
            report(system, "error", None, str(exc))
            return stop_everything(system)

    if should_stop():
        result.interrupted = True
    # Phase 2: boot files (each server checks its own fingerprint inside one lock). A machine whose
    # storage chain failed keeps its old files: its script must not point at a disk that isn't there.
    failed_machines = {m for m in (_machine_of(run, a) for a, _ in result.failed) if m}
    for server, fplan in sorted(run.files.items()):
        system = f"pxe:{server}"
        if failed_machines:
            held = [m for m in run.loaded.machines if m.pxe_server == server and m.name in failed_machines]
            if held:
                fplan = leave_alone(fplan, held)
                result.skipped += [f"{server}: files of {m.name} (its storage failed)" for m in held]
        if not fplan.has_changes:
            continue
        if should_stop():
            result.interrupted = True
            result.skipped += [c.address for c in fplan.pending]
            continue
        host = world.pxe[server]
        # The host re-checks every changing file's "before" hash inside its lock, in the
        # same round trip as the upload, and raises StalePlanError on a mismatch.
        report(system, "phase", None, "push")

        def cb(event: str, change: Any = None, _system: str = system) -> None:
            report(_system, event, None, getattr(change, "address", None))
        try:
            # Blocking conflicts were refused above; what is left (a missing binary source) is advisory.
            host.apply(fplan, cb, allow_conflicts=True)
        except NetprovError as exc:
            result.failed.append((system, str(exc)))
            result.skipped += [c.address for c in fplan.pending]
            report(system, "error", None, str(exc))
            continue
        result.done += [c.address for c in fplan.pending]
        if fplan.activation is not fp.Activation.NONE:
            result.done.append(f"dnsmasq[{server}] {fplan.activation.value}")

    # Phase 3: storage deletes, in reverse dependency order (the planner already ordered them).
    for name, (desired, actual, changes) in sorted(run.storage.items()):
        system = f"storage:{name}"
        todo = [c for c in changes if c.action is Action.DELETE]
        if not todo:
            continue
        if should_stop() or any(a.startswith("pxe:") for a, _ in result.failed):
            result.interrupted = result.interrupted or should_stop()
            result.skipped += [str(c.address) for c in todo]
            continue
        report(system, "phase", None, "delete")
        # Phase 1 changed this NAS on purpose, so its fingerprint no longer matches the plan's; the
        # deletes still verify each object by id and name/mark against apply's own fresh read.
        try:
            world.storage[name].apply(todo + [c for c in changes if c.action is Action.NOOP],
                                      expected_fingerprint=None, desired=desired,
                                      progress=storage_progress(system), parallel=parallel,
                                      should_stop=should_stop)
        except NetprovError as exc:
            result.failed.append((system, str(exc)))
            result.skipped += not_recorded([str(c.address) for c in todo])
            report(system, "error", None, str(exc))
    # A Ctrl-C during the last phase stops its remaining steps (the port skips them): say so, as the
    # earlier phases do, so the CLI reports an interrupted apply (exit 130), not a failed one.
    if should_stop():
        result.interrupted = True
    return result
