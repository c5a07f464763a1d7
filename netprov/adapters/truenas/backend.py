"""TrueNAS storage backend: read the NAS into ``ActualStorage``; execute a storage plan.

Reading costs a constant number of API calls whatever the number of machines: each kind is
queried once (with filters and ``select``), all pipelined on the one connection, so the wall time
is about one round trip. Nothing is queried per machine.

Applying:

* re-reads the NAS first and raises ``StalePlanError`` when ``state_fingerprint(actual)`` (sessions excluded) is not
  the plan's (apply never acts on a world the plan did not see);
* runs the shared portal first, then every machine's chain, then the service (enable, and start
  only when not running: on CORE ``service.start`` on a running service restarts ctld and drops
  every session);
* machine chains run side by side: each is a generator that yields one API call at a time; a
  scheduler gathers the calls every chain is waiting on and sends them together, pipelined with at
  most ``parallel`` calls in flight (or, with ``bulk=True``, through ``core.bulk`` when many calls
  share a method; errors stay attributable: one result per item). A chain stops at its first failure
  or refused change; the others go on. The report lists what was done, what failed (with the
  error line) and what was skipped (and why);
* before any update or delete the object is looked up again by id *and* name/mark (TrueNAS reuses
  ids), and the change fails if it no longer matches;
* an extent create on a zvol created moments ago is retried while the NAS says the device does not
  exist yet (backoff, about 10 s at most);
* a new CHAP auth row is checked right after its create: if another row holds its tag (a racing
  apply on another host picked the same tag), the row with the lowest id keeps it and the other
  moves to a fresh tag; only a tag holding this row alone is bound to a target
  (docs/adr/0005-chap-auth-tags.md). A portal create that the NAS refuses because a racing apply
  just made one on the same address uses that portal (reported as skipped, "not created");
* every change carried out has been reported (``progress("done", ...)``) before anything can raise;
  an exception that escapes the scheduler carries the partial report as ``.storage_report``.

Executor inputs come only from the plan's changes (each change's typed ``payload``, which holds no secret;
the executor is chosen by the payload's type) plus the CHAP secrets, which come from the ``DesiredStorage``
given to ``read``/``apply``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from netprov.adapters.truenas import normalise
from netprov.core.plan import Action, Address, Change
from netprov.core.storage import (
    PROP_MACHINE,
    PROP_MANAGED,
    SERVICE,
    ActualStorage,
    DesiredStorage,
    mark_comment,
    parse_mark,
    pick_portal,
    state_fingerprint,
)
from netprov.core.text import one_line
from netprov.core.storage.payloads import (
    AuthCreate,
    AuthDelete,
    AuthKept,
    AuthUpdate,
    ExtentCreate,
    ExtentDelete,
    ExtentRef,
    ExtentUpdate,
    InitiatorCreate,
    InitiatorDelete,
    InitiatorUpdate,
    IscsiGlobal,
    Kept,
    MappingCreate,
    MappingDelete,
    MappingRef,
    MappingUpdate,
    Net,
    PortalCreate,
    Service,
    TargetCreate,
    TargetDelete,
    TargetGroup,
    TargetUpdate,
    ZvolCreate,
    ZvolDelete,
    ZvolRename,
    ZvolReplace,
    ZvolUpdate,
    extent_address,
    zvol_address,
)
from netprov.errors import ApiError, NetprovError, RemoteError, StalePlanError

logger = logging.getLogger("netprov.storage")

ProgressFn = Callable[[str, Change, "str | None"], None]

#: A method with at least this many calls waiting in one round goes through ``core.bulk``.
BULK_MIN = 24
#: ``apply(bulk=None)`` uses ``core.bulk`` when a ``core.ping`` takes at least this long (seconds).
BULK_RTT = 0.008
#: How long an extent create keeps retrying while a new zvol's device node is missing.
DEVICE_WAIT = 10.0
#: How many tags an auth create tries before it gives up (each try: create, check the tag, delete if lost).
AUTH_RETRIES = 8
#: How long a new auth row waits for rows with higher ids on its tag (a racing apply's) to be deleted.
AUTH_SETTLE = 5.0
_DEVICE_MISSING = re.compile(r"(Device .* does not exist|Zvol .* does not exist)", re.IGNORECASE)
_BULKABLE = re.compile(r"^(pool\.dataset|iscsi\.(extent|target|targetextent|initiator|auth))\.(create|update|delete)$")

DATASET_SELECT = ["id", "name", "type", "volsize", "volblocksize", "refreservation", "origin", "comments",
                  "user_properties"]
#: The ZFS properties netprov reads from a zvol (ZFS names, as ``extra.properties`` takes them). ``comments``
#: and the ``netprov:*`` marks are user properties: they come unless ``retrieve_user_props`` is false.
DATASET_PROPERTIES = ["volsize", "volblocksize", "refreservation", "origin"]


def dataset_read_query(parent: str, version: tuple[int, int]) -> tuple[list, dict]:
    """The ``pool.dataset.query`` params that read ``parent`` and every dataset under it, asking the NAS
    for only what netprov reads. What each release does with them (middleware source at each tag; the
    citations are in truenas_sim/methods/dataset_read.py):

    * 24.10 and 25.04 push a lone ``["id", "=", X]`` down to ZFS, which then reads X and its subtree
      only, with just ``extra.properties`` (user properties always come). Any other filter starts the read
      at the pool roots, and with ``retrieve_children: false`` reads nothing else: a prefix filter would
      find nothing. So: ``id = parent`` with children, ``flat: false`` (no flattened copies), and the
      answer is the parent row with its datasets nested in ``children``.
    * 25.10 and later read every dataset whatever the filter; ``extra.properties`` still limits the
      work per dataset. A prefix filter with ``retrieve_children: false`` answers flat rows.
    * CORE 12/13 pass only ``extra.flat`` on (every property is read); FreeNAS 11.3 passes ``extra``
      through, so ``properties`` works there. Both read every dataset for a prefix filter and answer
      flat rows; ``select`` keeps the answer small. (A pushed-down ``id =`` on CORE would answer every
      property of every zvol, unselectable inside ``children``.)

    No option is sent to a release that ignores it; ``retrieve_user_props`` is never sent (netprov needs
    the user properties)."""
    select = DATASET_SELECT
    if (20, 0) <= version < (25, 10):
        return ([["id", "=", parent]],
                {"select": ["id", "name", "type", "children"],
                 "extra": {"retrieve_children": True, "flat": False, "properties": DATASET_PROPERTIES}})
    if version >= (25, 10):
        return [["id", "^", parent]], {
            "select": select, "extra": {"retrieve_children": False, "properties": DATASET_PROPERTIES}}
    if version < (12, 0):
        return [["id", "^", parent]], {"select": select, "extra": {"properties": DATASET_PROPERTIES}}
    return [["id", "^", parent]], {"select": select}


def dataset_rows(rows: Any) -> list:
    """A ``pool.dataset.query`` answer with nested ``children`` -> every dataset as its own row."""
    out: list = []
    stack = list(reversed(rows)) if isinstance(rows, list) else []
    while stack:
        r = stack.pop()
        out.append(r)
        kids = r.get("children") if isinstance(r, dict) else None
        if isinstance(kids, list):
            stack.extend(reversed(kids))
    return out


def version_tuple(version: str) -> tuple[int, int]:
    """``TrueNAS-25.04.2.4`` -> (25, 4); ``TrueNAS-SCALE-24.10.2`` -> (24, 10); ``TrueNAS-13.0-U6.1`` -> (13, 0)."""
    m = re.search(r"(?:FreeNAS|TrueNAS)(?:-SCALE)?-(\d+)\.(\d+)", version or "")
    if not m:
        m = re.search(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else (25, 4)


#: the oldest release netprov supports (FreeNAS 11.3) and the newest it knows (TrueNAS 26): the simulator has a
#: profile for each release in between that netprov's calls depend on (sim/truenas_sim/profiles.py)
OLDEST_SUPPORTED = (11, 3)
NEWEST_KNOWN = (26, 99)


def version_support(version: str) -> str | None:
    """None for a release netprov knows; a one-line warning for a newer one (it is driven like the newest
    known release); a NetprovError naming the version for one older than FreeNAS 11.3."""
    v = version_tuple(version)
    if v < OLDEST_SUPPORTED:
        raise NetprovError(
            f"the NAS runs {version or 'an unknown version'}, older than FreeNAS 11.3, the oldest release "
            "netprov supports: upgrade it (its API lacks the calls netprov makes)"
        )
    if v > NEWEST_KNOWN:
        return (f"the NAS runs {version}, newer than the newest release netprov knows (TrueNAS 26): "
                "driving it like TrueNAS 26")
    return None


def client_methods(version: tuple[int, int], *, jsonrpc: bool | None = None) -> frozenset[str]:
    """Every method netprov may call on a NAS of ``version`` (rpc.py's login and job calls, this module's
    read and apply, the demo). tests/sim/test_sim_sources.py checks each against the middleware source table
    (sim/truenas_sim/sources.py) for the profile of that version, and against the calls a real run makes.
    ``auth.login_with_api_key`` is tried with an API key on every release; FreeNAS 11.3 answers "method not
    found" and rpc.py turns that into a clear error."""
    snap = "pool.snapshot" if version >= (25, 10) else "zfs.snapshot"
    out = {
        "system.version", "core.ping", "core.get_jobs", "core.bulk", "auth.login",
        "pool.dataset.query", "pool.dataset.create", "pool.dataset.update", "pool.dataset.delete",
        "pool.dataset.promote",
        f"{snap}.query", f"{snap}.create", f"{snap}.clone", f"{snap}.delete",
        "iscsi.extent.query", "iscsi.extent.create", "iscsi.extent.update", "iscsi.extent.delete",
        "iscsi.target.query", "iscsi.target.create", "iscsi.target.update", "iscsi.target.delete",
        "iscsi.targetextent.query", "iscsi.targetextent.create", "iscsi.targetextent.update",
        "iscsi.targetextent.delete",
        "iscsi.initiator.query", "iscsi.initiator.create", "iscsi.initiator.update", "iscsi.initiator.delete",
        "iscsi.auth.query", "iscsi.auth.create", "iscsi.auth.update", "iscsi.auth.delete",
        "iscsi.portal.query", "iscsi.portal.create", "iscsi.global.config", "iscsi.global.sessions",
        "service.query", "service.update",
        "service.control" if version >= (25, 10) else "service.start",
    }
    if version >= (12, 0):
        out.add("auth.login_with_api_key")
    if version >= (25, 4) and jsonrpc is not False:
        out.add("auth.login_ex")
    return frozenset(out)


@dataclass
class StorageReport:
    """What apply did. ``failed`` and ``skipped`` carry a one-line reason each."""

    system: str
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, str]] = field(default_factory=list)
    skipped: list[tuple[Change, str]] = field(default_factory=list)
    round_trips: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing failed (refused or skipped changes may remain)."""
        return not self.failed

    @property
    def complete(self) -> bool:
        return not self.failed and not self.skipped

    def lines(self) -> list[str]:
        out = [f"done     {c.action.value:8} {c.address}" for c in self.done]
        out += [f"FAILED   {c.action.value:8} {c.address}: {why}" for c, why in self.failed]
        out += [f"skipped  {c.action.value:8} {c.address}: {why}" for c, why in self.skipped]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"system": self.system,
                "done": [str(c.address) for c in self.done],
                "failed": [{"address": str(c.address), "machine": c.machine, "error": why} for c, why in self.failed],
                "skipped": [{"address": str(c.address), "machine": c.machine, "reason": why}
                            for c, why in self.skipped],
                "round_trips": dict(self.round_trips)}


class _Call:
    __slots__ = ("job", "method", "params")

    def __init__(self, method: str, *params: Any, job: bool = False) -> None:
        self.method, self.params, self.job = method, params, job


class _Sleep:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Op = _Call | _Sleep
Chain = Generator[Op, Any, None]


class ChangeFailed(NetprovError):
    """One change could not be carried out (the message is the report's error line)."""


class _Satisfied(Exception):
    """The change turned out to be unnecessary at apply time (another apply did it); reported as skipped."""


class TrueNASStorage:
    """The storage backend for one ``storage:`` entry of the inventory, over one ``TrueNASClient``."""

    def __init__(self, client: Any, storage_name: str, storage_model: Any) -> None:
        self.client = client
        self.storage_name = storage_name
        self.model = storage_model
        self.system = f"storage:{storage_name}"
        self.version = version_tuple(getattr(client, "version", "") or "")
        self.version_warning = version_support(getattr(client, "version", "") or "")
        self.core = self.version[0] < 20                     # FreeNAS 11 / TrueNAS CORE 12-13
        self.user_properties = not self.core                 # SCALE 22.02+
        self.service_control = self.version >= (25, 10)
        # pool.snapshot.* exists only from 25.10 (zfs.snapshot.* is private there); 11.3-25.04 have zfs.snapshot.*
        self.snapshot_ns = "pool.snapshot" if self.version >= (25, 10) else "zfs.snapshot"
        self._desired: DesiredStorage | None = None

    # ------------------------------------------------------------------ read

    def lookup_extra(self, properties: list[str]) -> dict:
        """``extra`` for a lookup of one dataset by ``id =`` (no children) that reads only ``properties``
        (ZFS names; user properties come anyway). CORE 12/13 ignore ``properties``: not sent there."""
        if (12, 0) <= self.version < (20, 0):
            return {"retrieve_children": False}
        return {"retrieve_children": False, "properties": list(properties)}

    def read_calls(self, desired: DesiredStorage | None = None) -> list[tuple[str, tuple]]:
        parent = desired.parent if desired is not None else self.model.parent
        calls: list[tuple[str, tuple]] = [
            ("pool.dataset.query", dataset_read_query(parent, self.version)),
            ("iscsi.extent.query", ([], {"select": ["id", "name", "type", "disk", "path", "serial", "blocksize",
                                                    "ro", "enabled", "comment"]})),
            ("iscsi.target.query", ([], {"select": ["id", "name", "alias", "mode", "groups"]})),
            ("iscsi.targetextent.query", ([], {"select": ["id", "target", "extent", "lunid"]})),
            ("iscsi.initiator.query", ([], {"select": ["id", "initiators", "comment"]})),
            ("iscsi.auth.query", ([], {"select": ["id", "tag", "user", "peeruser", "secret"]})),
            ("iscsi.portal.query", ([], {"select": ["id", "tag", "listen", "comment"]})),
            ("iscsi.global.config", ()),
            ("service.query", ([["service", "=", SERVICE]], {"select": ["service", "enable", "state"]})),
            ("iscsi.global.sessions", ([], {"select": ["target", "initiator", "initiator_addr"]})),
        ]
        sources = desired.clone_sources if desired is not None else []
        if sources:
            calls.append((f"{self.snapshot_ns}.query", ([["id", "in", sources]],
                                                         {"select": ["id", "name", "properties"]})))
        return calls

    def read(self, desired: DesiredStorage | None = None) -> ActualStorage:
        """The NAS's state, normalised. Constant number of calls (10, 11 with golden snapshots), pipelined."""
        if desired is not None:
            self._desired = desired
        desired = desired or self._desired
        return self.parse_read(desired, self.read_raw(desired))

    def read_raw(self, desired: DesiredStorage | None = None) -> dict[str, Any]:
        """The raw results of one read: ``{method: result}`` (all calls pipelined)."""
        calls = self.read_calls(desired or self._desired)
        results = self.client.call_many(calls)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return dict(zip([c[0] for c in calls], results))

    def parse_read(self, desired: DesiredStorage | None, by: dict[str, Any]) -> ActualStorage:
        """PURE: ``read_raw``'s results -> ``ActualStorage``."""
        parent = desired.parent if desired is not None else self.model.parent
        snaps = by.get(f"{self.snapshot_ns}.query") or []
        return normalise.build_actual(
            parent, datasets=dataset_rows(by["pool.dataset.query"]), extents=by["iscsi.extent.query"],
            targets=by["iscsi.target.query"], targetextents=by["iscsi.targetextent.query"],
            initiators=by["iscsi.initiator.query"], auths=by["iscsi.auth.query"],
            portals=by["iscsi.portal.query"], global_=by["iscsi.global.config"],
            service_rows=by["service.query"], sessions=by["iscsi.global.sessions"], snapshots=snaps)

    def fingerprint(self, actual: ActualStorage) -> str:
        return state_fingerprint(actual)

    # ------------------------------------------------------------------ apply

    def apply(self, changes: Sequence[Change], *, expected_fingerprint: str | None,
              desired: DesiredStorage | None = None,
              progress: ProgressFn | None = None, parallel: int = 8, bulk: bool | None = None,
              should_stop: Callable[[], bool] | None = None) -> StorageReport:
        """Carry out this system's changes (pass the whole list, NOOPs included: they hold the ids of
        existing objects the others refer to). Raises ``StalePlanError`` when the NAS changed since
        the plan (``expected_fingerprint=None``: no such check, for a second phase after netprov's own
        changes; every update/delete still verifies its object by id and name or mark); otherwise
        returns a report (a failing machine does not stop the others).

        ``parallel``: calls in flight at once (capped at the client's ``max_inflight`` and the
        middleware's 20; the middleware executes 10 at a time). ``bulk``: send rounds of >=
        ``BULK_MIN`` same-method calls through ``core.bulk`` (one job per 64 KiB chunk; items run one
        after another on the NAS, each keeps its own result or error). ``None`` (default) decides by
        the measured round trip: pipelined calls when it is under ``BULK_RTT`` (a LAN: the NAS's
        own work dominates and it runs 10 calls at once), ``core.bulk`` above (latency dominates:
        5,000 calls at 20 ms cost >= 10 s through the middleware's 10 execution slots, one bulk job
        per kind costs a few round trips). See benchmarks/bench_storage.py.

        ``should_stop`` is polled before each step: when it turns true (Ctrl-C), calls in flight
        finish and every step not begun is reported as skipped ("not attempted: interrupted")."""
        t0 = time.monotonic()
        desired = desired or self._desired
        before_rt = Counter(self.client.round_trips)
        actual = self.read(desired)
        got = self.fingerprint(actual)
        if expected_fingerprint is not None and got != expected_fingerprint:
            raise StalePlanError(f"{self.system}: the NAS changed since the plan was made "
                                 f"(state {got[:12]} != plan's {expected_fingerprint[:12]}); run plan again")
        mine = [c for c in changes if c.system == self.system]
        if bulk is None:
            busy = max(Counter(c.kind for c in mine if c.is_change).values(), default=0)
            bulk = False
            if busy >= BULK_MIN:
                t = time.monotonic()
                self.client.call("core.ping")
                bulk = time.monotonic() - t >= BULK_RTT
        run = _Run(self, mine, actual, desired, progress,
                   max(1, min(int(parallel), getattr(self.client, "max_inflight", 20), 20)), bulk)
        if should_stop is not None:
            run.should_stop = should_stop
        try:
            run.execute()
        except BaseException as e:
            # whatever escapes (a lost connection, Ctrl-C twice) after changes were made: the progress
            # callback has had a "done" for each of them already; the exception carries the report too
            e.storage_report = run.report  # type: ignore[attr-defined]
            raise
        after = Counter(self.client.round_trips)
        run.report.round_trips = {k: after[k] - before_rt.get(k, 0) for k in after if after[k] - before_rt.get(k, 0)}
        run.report.seconds = time.monotonic() - t0
        return run.report


class _Run:
    """One apply: registry of ids, the chains, the scheduler."""

    def __init__(self, st: TrueNASStorage, changes: list[Change], actual: ActualStorage,
                 desired: DesiredStorage | None, progress: ProgressFn | None, parallel: int,
                 bulk: bool = False) -> None:
        self.bulk = bulk
        self.st, self.client = st, st.client
        self.changes = changes
        self.desired = desired
        self.progress = progress
        self.parallel = parallel
        self.report = StorageReport(system=st.system)
        self.reg: dict[Address, Any] = {}        # address -> id (an auth group: its tag) of each object
        self.tags = max([a["tag"] for a in actual.auths if a.get("tag") is not None] +
                        [g["auth"] for t in actual.targets for g in t.get("groups") or [] if g.get("auth")] + [0])
        self.lock = threading.Lock()
        for c in changes:
            ref = _registered(c.payload) if c.action in (Action.NOOP, Action.UPDATE) else None
            if ref is not None:
                self.reg[c.address] = ref
        self.snapshots = actual.snapshots
        self.should_stop: Callable[[], bool] = lambda: False

    # -- events
    def _emit(self, event: str, c: Change, err: str | None = None) -> None:
        if event == "done":
            self.report.done.append(c)
        elif event == "failed":
            self.report.failed.append((c, err or "failed"))
        elif event == "skipped":
            self.report.skipped.append((c, err or "skipped"))
        if self.progress is not None:
            try:
                self.progress(event, c, err)
            except Exception:
                logger.debug("progress callback failed", exc_info=True)

    # -- top level
    def execute(self) -> None:
        pending = [c for c in self.changes if c.is_change]
        shared_pre = [c for c in pending if c.machine is None and isinstance(c.payload, PortalCreate | IscsiGlobal)]
        shared_post = [c for c in pending if c.machine is None and c not in shared_pre]
        chains: dict[str, list[Change]] = {}
        for c in pending:
            if c.machine is not None:
                chains.setdefault(c.machine, []).append(c)
        if shared_pre:
            self._schedule({"(shared)": shared_pre})
        self._schedule(chains)
        if shared_post:
            self._schedule({"(service)": shared_post})

    def _chain(self, changes: list[Change]) -> Chain:
        for i, c in enumerate(changes):
            if self.should_stop():
                # Ctrl-C: finish nothing new; every change not begun is reported as not attempted.
                for rest in changes[i:]:
                    self._emit("skipped", rest, "not attempted: interrupted")
                return
            if c.refused:
                self._emit("skipped", c, f"refused: {c.refused}")
                for rest in changes[i + 1:]:
                    self._emit("skipped", rest, f"not attempted: {c.address} was refused")
                return
            self._emit("start", c)
            try:
                yield from self._exec(c)
            except _Satisfied as e:
                self._emit("skipped", c, str(e))
                continue
            except Exception as e:        # NetprovError, or a NAS answer of the wrong shape: this change failed
                said = one_line(e, 400) or type(e).__name__
                self._emit("failed", c, said if isinstance(e, NetprovError) else
                           f"{type(e).__name__}: {said} (unexpected answer from the NAS)")
                for rest in changes[i + 1:]:
                    self._emit("skipped", rest, f"not attempted: {c.address} failed")
                return
            self._emit("done", c)

    # -- scheduler
    def _schedule(self, chains: dict[str, list[Change]]) -> None:
        live: dict[str, Chain] = {}
        ops: dict[str, Op] = {}
        wake: dict[str, float] = {}
        for key, changes in chains.items():
            g = self._chain(changes)
            try:
                ops[key] = next(g)
                live[key] = g
            except StopIteration:
                pass
        while live:
            now = time.monotonic()
            for key, op in list(ops.items()):
                if isinstance(op, _Sleep) and key not in wake:
                    wake[key] = now + op.seconds
            ready = [k for k, op in ops.items() if isinstance(op, _Call)]
            due = [k for k, t in wake.items() if t <= now]
            for k in due:
                del wake[k]
                self._advance(k, live, ops, None, None)
            if not ready:
                if not due and wake:
                    time.sleep(max(0.0, min(wake.values()) - time.monotonic()))
                continue
            results = self._dispatch([(k, ops[k]) for k in ready])
            for k, (res, err) in results.items():
                self._advance(k, live, ops, res, err)

    def _advance(self, key: str, live: dict, ops: dict, res: Any, err: BaseException | None) -> None:
        g = live[key]
        try:
            ops[key] = g.throw(err) if err is not None else g.send(res)
        except StopIteration:
            del live[key]
            ops.pop(key, None)

    def _dispatch(self, items: list[tuple[str, _Call]]) -> dict[str, tuple[Any, BaseException | None]]:
        out: dict[str, tuple[Any, BaseException | None]] = {}
        by_method: dict[str, list[tuple[str, _Call]]] = {}
        for k, op in items:
            by_method.setdefault(op.method, []).append((k, op))
        singles: list[tuple[str, _Call]] = []
        for method, group in by_method.items():
            if self.bulk and len(group) >= BULK_MIN and _BULKABLE.match(method):
                try:
                    res = self.client.bulk(method, [list(op.params) for _, op in group])
                except RemoteError as e:
                    for k, _ in group:
                        out[k] = (None, e)
                    continue
                for (k, _), r in zip(group, res):
                    out[k] = (None, r) if isinstance(r, BaseException) else (r, None)
            else:
                singles.extend(group)
        if len(singles) == 1:
            k, op = singles[0]
            out[k] = self._call_one(op)
        elif singles:
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.parallel) as pool:
                futs = {k: pool.submit(self._call_one, op) for k, op in singles}
                for k, f in futs.items():
                    out[k] = f.result()
        return out

    def _call_one(self, op: _Call) -> tuple[Any, BaseException | None]:
        try:
            if op.job:
                return self.client.call_job(op.method, *op.params), None
            return self.client.call(op.method, *op.params), None
        except NetprovError as e:
            return None, e

    # -- executors (generators: ``result = yield _Call(...)``), one per payload type
    def _exec(self, c: Change) -> Chain:
        fn = _EXECUTORS.get(type(c.payload))
        if fn is None:
            raise ChangeFailed(f"{c.address}: netprov cannot carry out a {c.kind} {c.action.value}")
        yield from fn(self, c, c.payload)

    def _ref(self, address: Address | None, what: str) -> Any:
        if address is None:
            return None
        if address not in self.reg:
            raise ChangeFailed(f"{what} {address} does not exist (it was not created)")
        return self.reg[address]

    def _verify(self, c: Change, method: str, filters: list, what: str) -> Chain:
        rows = yield _Call(method, filters, {"select": ["id"]})
        if not rows:
            raise ChangeFailed(f"{c.address}: {what} no longer matches what the plan saw (changed on the NAS, or "
                               "its id was reused); run plan again")

    def _verify_extent(self, c: Change, x: ExtentRef | ExtentUpdate | ExtentDelete) -> Chain:
        name = x.verify_name if isinstance(x, ExtentUpdate) else x.name
        yield from self._verify(c, "iscsi.extent.query", [["id", "=", x.id], ["name", "=", name]],
                                f"extent {name} (id {x.id})")

    def _verify_mapping(self, c: Change, r: MappingRef) -> Chain:
        yield from self._verify(c, "iscsi.targetextent.query", [["id", "=", r.id], ["target", "=", r.target_id],
                                                                ["extent", "=", r.extent_id]], f"mapping {r.id}")

    # zvol ---------------------------------------------------------------------------------
    def _mark_fields(self, machine: str, path: str, update: bool) -> dict:
        if self.st.user_properties:
            props = [{"key": PROP_MANAGED, "value": "true"}, {"key": PROP_MACHINE, "value": machine}]
            return {"user_properties_update" if update else "user_properties": props}
        return {"comments": mark_comment(path)}

    def _verify_zvol(self, c: Change, path: str, *, marked: bool = True) -> Chain:
        """The zvol still exists (and, ``marked``, still carries netprov's mark)."""
        rows = yield _Call("pool.dataset.query", [["id", "=", path]],
                           {"select": ["id", "type", "comments", "user_properties"],
                            "extra": self.st.lookup_extra([])})
        if not rows or rows[0].get("type") != "VOLUME":
            raise ChangeFailed(f"{c.address}: zvol no longer exists; run plan again")
        if not marked:
            return
        z = normalise.zvol(rows[0]) or {}
        props = z.get("props") or {}
        ok = str(props.get(PROP_MANAGED, "")).lower() == "true" or parse_mark(z.get("comments"))[0]
        if not ok:
            raise ChangeFailed(f"{c.address}: zvol is not marked as netprov's any more; run plan again")

    def _zvol_create(self, c: Change, p: ZvolCreate) -> Chain:
        if p.clone_from:
            yield _Call(f"{self.st.snapshot_ns}.clone", {"snapshot": p.clone_from, "dataset_dst": p.path})
            upd = self._mark_fields(p.machine, p.path, update=True)
            src = int((self.snapshots.get(p.clone_from) or {}).get("volsize") or 0)
            if p.grow_to and p.grow_to > src:
                upd["volsize"] = p.grow_to
            yield _Call("pool.dataset.update", p.path, upd)
            return
        yield _Call("pool.dataset.create", {"name": p.path, "type": "VOLUME", "volsize": p.volsize,
                                            "volblocksize": p.volblocksize, "sparse": p.sparse,
                                            **self._mark_fields(p.machine, p.path, update=False)})

    def _zvol_update(self, c: Change, p: ZvolUpdate) -> Chain:
        yield from self._verify_zvol(c, p.path, marked=not p.set_mark)
        upd: dict[str, Any] = {}
        if p.set_volsize:
            upd["volsize"] = p.set_volsize
        if p.set_mark:
            upd.update(self._mark_fields(p.machine, p.path, update=True))
        if upd:
            yield _Call("pool.dataset.update", p.path, upd)

    def _zvol_replace(self, c: Change, p: ZvolReplace) -> Chain:
        path = p.create.path
        yield from self._verify_zvol(c, path)
        # delete what the zvol delete would cascade to, explicitly: these deletes are refused by
        # TrueNAS while an initiator is logged in (the zvol delete's cascade would not be)
        for x in p.pre_delete:
            if isinstance(x, MappingRef):
                yield from self._verify_mapping(c, x)
                yield _Call("iscsi.targetextent.delete", x.id, False)
            else:
                yield from self._verify_extent(c, x)
                yield _Call("iscsi.extent.delete", x.id, False, False)
                self.reg.pop(extent_address(x.name), None)
        if p.net is not None:
            yield from self._retire_zvol(path, p.net)
        yield _Call("pool.dataset.delete", path, {"recursive": False})
        yield from self._zvol_create(c, p.create)

    def _zvol_delete(self, c: Change, p: ZvolDelete) -> Chain:
        yield from self._verify_zvol(c, p.path)
        if p.net is not None:
            yield from self._retire_zvol(p.path, p.net)
        yield _Call("pool.dataset.delete", p.path, {"recursive": False})

    def _retire_zvol(self, path: str, net: Net) -> Chain:
        """The net (ADR 0006): snapshot the zvol, clone the snapshot to the retired name, mark the clone as
        retired and promote it. The clone then owns the snapshot (and every older one) and the old zvol
        is a clone of it, so destroying the old zvol destroys no data: it stays in ``keep_as``."""
        snap, keep = net.snapshot, net.keep_as
        # Resumable: an apply that stopped part-way (or a rerun within the same second, which gives the same
        # names) finds some of the steps done. Each is taken up where it stopped, never done twice.
        rows = yield _Call("pool.dataset.query", [["id", "=", keep]],
                           {"select": ["id", "type", "origin", "comments"], "extra": self.st.lookup_extra(["origin"])})
        kept = normalise.zvol(rows[0]) if rows else None
        if kept is not None and (kept.get("origin") not in (None, snap)
                                 or (kept.get("origin") is None and kept.get("comments") != net.comment)):
            raise ChangeFailed(f"{zvol_address(path)}: {keep} exists and is not the retired copy of {path}; "
                               "nothing was deleted")
        if kept is None:
            snaps = yield _Call(f"{self.st.snapshot_ns}.query", [["id", "=", snap]], {"select": ["id", "name"]})
            if not snaps:
                yield _Call(f"{self.st.snapshot_ns}.create", {"dataset": path, "name": snap.split("@", 1)[1]})
            yield _Call(f"{self.st.snapshot_ns}.clone", {"snapshot": snap, "dataset_dst": keep})
        if kept is None or kept.get("comments") != net.comment:
            yield _Call("pool.dataset.update", keep, {"comments": net.comment})
        if kept is None or kept.get("origin") == snap:
            yield _Call("pool.dataset.promote", keep)

    def _zvol_rename(self, c: Change, p: ZvolRename) -> Chain:
        """``renamed_from``: snapshot the old zvol, clone it to the new name, promote the clone, point the
        machine's extents at it, then remove the old name (a clone of the new zvol by then: no data goes).
        Public API on every release: ``pool.dataset.rename`` exists only from 25.10 (ADR 0006)."""
        old, new, snap = p.old_path, p.path, p.snapshot
        yield from self._verify_zvol(c, old)
        if p.clone:
            yield _Call(f"{self.st.snapshot_ns}.create", {"dataset": old, "name": snap.split("@", 1)[1]})
            yield _Call(f"{self.st.snapshot_ns}.clone", {"snapshot": snap, "dataset_dst": new})
        upd: dict[str, Any] = self._mark_fields(p.machine, new, update=True)
        if p.set_volsize:
            upd["volsize"] = p.set_volsize
        yield _Call("pool.dataset.update", new, upd)
        if p.clone:
            origin = snap   # just cloned from it: no need to ask
        else:               # resuming an interrupted rename: was the clone promoted already?
            rows = yield _Call("pool.dataset.query", [["id", "=", new]],
                               {"select": ["id", "type", "origin"], "extra": self.st.lookup_extra(["origin"])})
            origin = (normalise.zvol(rows[0]) or {}).get("origin") if rows else None
        if origin and origin.split("@", 1)[0] == old:
            yield _Call("pool.dataset.promote", new)
        for x in p.extents:
            yield from self._verify_extent(c, x)
            yield _Call("iscsi.extent.update", x.id, {"disk": p.disk})
        yield _Call("pool.dataset.delete", old, {"recursive": False})
        if p.clone and not p.keep_snapshot:
            yield _Call(f"{self.st.snapshot_ns}.delete", f"{new}@{snap.split('@', 1)[1]}")

    # extent -------------------------------------------------------------------------------
    def _extent_create(self, c: Change, p: ExtentCreate) -> Chain:
        payload = {"name": p.name, "type": "DISK", "disk": p.disk, "serial": p.serial, "blocksize": p.blocksize,
                   "ro": False, "enabled": True, "comment": p.comment}
        waited, delay = 0.0, 0.1
        while True:
            try:
                res = yield _Call("iscsi.extent.create", payload)
                break
            except ApiError as e:
                if not _DEVICE_MISSING.search(str(e)) or waited >= DEVICE_WAIT:
                    raise
                yield _Sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        self.reg[c.address] = res["id"]

    def _extent_update(self, c: Change, p: ExtentUpdate) -> Chain:
        yield from self._verify_extent(c, p)
        res = yield _Call("iscsi.extent.update", p.id, p.fields_to_set())
        self.reg[c.address] = res.get("id", p.id) if isinstance(res, dict) else p.id

    def _extent_delete(self, c: Change, p: ExtentDelete) -> Chain:
        yield from self._verify_extent(c, p)
        yield _Call("iscsi.extent.delete", p.id, False, False)
        self.reg.pop(c.address, None)

    # initiator ----------------------------------------------------------------------------
    def _initiator_create(self, c: Change, p: InitiatorCreate) -> Chain:
        res = yield _Call("iscsi.initiator.create", {"initiators": list(p.initiators), "comment": p.comment})
        self.reg[c.address] = res["id"]

    def _verify_initiator(self, c: Change, row_id: int, comment: str | None) -> Chain:
        yield from self._verify(c, "iscsi.initiator.query", [["id", "=", row_id], ["comment", "=", comment or ""]],
                                f"initiator group {row_id}")

    def _initiator_update(self, c: Change, p: InitiatorUpdate) -> Chain:
        yield from self._verify_initiator(c, p.id, p.verify_comment)
        upd: dict[str, Any] = {"initiators": list(p.initiators)}
        if p.comment is not None:
            upd["comment"] = p.comment
        yield _Call("iscsi.initiator.update", p.id, upd)

    def _initiator_delete(self, c: Change, p: InitiatorDelete) -> Chain:
        yield from self._verify_initiator(c, p.id, p.verify_comment)
        yield _Call("iscsi.initiator.delete", p.id)

    # auth ---------------------------------------------------------------------------------
    def _secret(self, machine: str) -> str:
        secret = self.desired.secret(machine) if self.desired is not None else None
        if not secret:
            raise ChangeFailed(f"CHAP secret for {machine} is not available (set the variable or file the "
                               "inventory names)")
        return secret

    def _auth_create(self, c: Change, p: AuthCreate) -> Chain:
        secret = self._secret(p.machine)
        self.reg[c.address] = yield from self._create_auth(c, p.user, secret)

    def _auth_update(self, c: Change, p: AuthUpdate) -> Chain:
        flt = [["id", "=", p.id], ["user", "=", p.verify_user]]
        if p.verify_tag is not None:          # a leftover row being reused: still on its tag, unused
            flt.append(["tag", "=", p.verify_tag])
        yield from self._verify(c, "iscsi.auth.query", flt, f"CHAP user {p.verify_user} (id {p.id})")
        if p.verify_tag is not None:
            yield from self._check_tag_unused(c, p.verify_tag, None)
        upd: dict[str, Any] = {}
        if p.user is not None:
            upd["user"] = p.user
        if p.clear_peer:
            upd.update(peeruser="", peersecret="")
        if p.set_secret:
            upd["secret"] = self._secret(p.machine)
        if upd:
            yield _Call("iscsi.auth.update", p.id, upd)

    def _auth_delete(self, c: Change, p: AuthDelete) -> Chain:
        rows = yield _Call("iscsi.auth.query", [["id", "in", list(p.ids)]], {"select": ["id", "tag", "user"]})
        if len(rows) != len(p.ids) or any(r.get("tag") != p.tag for r in rows) or (
                p.verify_user is not None and any(r.get("user") != p.verify_user for r in rows)):
            raise ChangeFailed(f"{c.address}: auth group tag {p.tag} changed on the NAS; run plan again")
        if p.unused or p.not_used_by:
            yield from self._check_tag_unused(c, p.tag, None if p.unused else list(p.not_used_by))
        for aid in p.ids:
            yield _Call("iscsi.auth.delete", aid)

    def _check_tag_unused(self, c: Change, tag: int, target_ids: list[int] | None) -> Chain:
        """Fail unless no target (``target_ids``: none of these targets) uses auth ``tag`` right now."""
        flt = [["id", "in", list(target_ids)]] if target_ids is not None else []
        targets = yield _Call("iscsi.target.query", flt, {"select": ["id", "name", "groups"]})
        users = [t.get("name") for t in targets or [] if any(g.get("auth") == tag for g in t.get("groups") or [])]
        if users:
            raise ChangeFailed(f"{c.address}: auth tag {tag} is used by target {users[0]} now; run plan again")

    def _next_tag(self, seen: int = 0) -> int:
        with self.lock:
            self.tags = max(self.tags, seen) + 1
            return self.tags

    def _create_auth(self, c: Change, user: str, secret: str) -> Generator[Op, Any, int]:
        """Create the machine's auth row on a tag no other row holds, and return that tag.

        Another apply (another host) may pick the same "highest tag + 1" at the same moment. After the
        create, the tag is queried again: when a row with a lower id holds it, this row lost (ids only
        grow, so the lowest id is the first row, which every later creator sees); it is deleted and a
        tag above everything now on the NAS is tried. When only rows with higher ids share it, they are
        waited for (their appliers delete them) for ``AUTH_SETTLE`` seconds, then this row gives way too.
        Only a tag that holds this row alone is returned, so only such a tag is bound to a target.
        See docs/adr/0005-chap-auth-tags.md.
        """
        tag = self._next_tag()
        for attempt in range(AUTH_RETRIES):
            res = yield _Call("iscsi.auth.create", {"tag": tag, "user": user, "secret": secret,
                                                    "peeruser": "", "peersecret": ""})
            if not isinstance(res, dict) or not isinstance(res.get("id"), int):
                raise ChangeFailed(f"{c.address}: the NAS answered the auth create without the row's id")
            mine = res["id"]
            waited, delay = 0.0, 0.05
            while True:
                rows = yield _Call("iscsi.auth.query", [["tag", "=", tag]], {"select": ["id", "tag"]})
                others = [r["id"] for r in rows or [] if r.get("id") != mine]
                if not others:
                    return tag
                if min(others) < mine or waited >= AUTH_SETTLE:
                    break
                yield _Sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.5)
            logger.info("%s: auth tag %s is also held by row(s) %s; moving to another tag", c.address, tag, others)
            yield _Call("iscsi.auth.delete", mine)
            tags = yield _Call("iscsi.auth.query", [], {"select": ["tag"]})
            targets = yield _Call("iscsi.target.query", [], {"select": ["groups"]})
            seen = max([r.get("tag") or 0 for r in tags or []] +
                       [g.get("auth") or 0 for t in targets or [] for g in t.get("groups") or []] + [0])
            tag = self._next_tag(seen)
        raise ChangeFailed(f"{c.address}: could not get an auth tag of its own after {AUTH_RETRIES} tries (other "
                           "applies keep taking the same tags); run apply again")

    # target -------------------------------------------------------------------------------
    def _groups(self, groups: tuple[TargetGroup, ...]) -> list[dict]:
        return [{"portal": self._ref(g.portal, "portal"), "initiator": self._ref(g.initiator, "initiator group"),
                 "authmethod": g.authmethod, "auth": self._ref(g.auth, "auth group")} for g in groups]

    def _target_create(self, c: Change, p: TargetCreate) -> Chain:
        groups = self._groups(p.groups)
        res = yield _Call("iscsi.target.create", {"name": p.name, "alias": None, "mode": "ISCSI", "groups": groups})
        self.reg[c.address] = res["id"]
        # groups that did not stick: a quirk from the old API notes, not found in the middleware source
        # (middleware TS-25.04.2.4 src/middlewared/middlewared/plugins/iscsi_/targets.py:134 saves every group
        # it validated); kept as a guard
        if len(res.get("groups") or []) != len(groups):
            yield _Call("iscsi.target.update", res["id"], {"groups": groups})

    def _verify_target(self, c: Change, target_id: int, name: str) -> Chain:
        yield from self._verify(c, "iscsi.target.query", [["id", "=", target_id], ["name", "=", name]],
                                f"target {name} (id {target_id})")

    def _target_update(self, c: Change, p: TargetUpdate) -> Chain:
        yield from self._verify_target(c, p.id, p.verify_name)
        upd: dict[str, Any] = {}
        if p.name is not None:
            upd["name"] = p.name
        if p.groups is not None:
            upd["groups"] = self._groups(p.groups)
        if p.mode is not None:
            upd["mode"] = p.mode
        if upd:
            yield _Call("iscsi.target.update", p.id, upd)

    def _target_delete(self, c: Change, p: TargetDelete) -> Chain:
        yield from self._verify_target(c, p.id, p.name)
        yield _Call("iscsi.target.delete", p.id, False)
        self.reg.pop(c.address, None)

    # mapping ------------------------------------------------------------------------------
    def _mapping_create(self, c: Change, p: MappingCreate) -> Chain:
        res = yield _Call("iscsi.targetextent.create", {"target": self._ref(p.target, "target"),
                                                        "extent": self._ref(p.extent, "extent"), "lunid": p.lunid})
        self.reg[c.address] = res["id"]

    def _mapping_update(self, c: Change, p: MappingUpdate) -> Chain:
        yield from self._verify_mapping(c, p.ref)
        yield _Call("iscsi.targetextent.update", p.ref.id, {"lunid": p.lunid})

    def _mapping_delete(self, c: Change, p: MappingDelete) -> Chain:
        yield from self._verify_mapping(c, p.ref)
        yield _Call("iscsi.targetextent.delete", p.ref.id, False)

    # shared -------------------------------------------------------------------------------
    def _portal_create(self, c: Change, p: PortalCreate) -> Chain:
        if self.st.core:
            payload = {"comment": p.comment, "listen": [{"ip": p.ip, "port": p.port}],
                       "discovery_authmethod": "NONE", "discovery_authgroup": None}
        else:
            payload = {"comment": p.comment, "listen": [{"ip": p.ip}]}
        try:
            res = yield _Call("iscsi.portal.create", payload)
        except ApiError:
            # another apply may have created it a moment ago ("IP is already in use"): use that one
            found = yield from self._portal_listening(p.ip, p.port)
            if found is None:
                raise
            self.reg[c.address] = found
            raise _Satisfied(f"not created: another apply created a portal on {p.ip}:{p.port} meanwhile "
                             f"(id {found}); using it")
        self.reg[c.address] = res["id"]

    def _portal_listening(self, ip: str, port: int) -> Generator[Op, Any, int | None]:
        """The id of a portal listening on ip:port (or on the wildcard address), as the planner chooses."""
        portals = yield _Call("iscsi.portal.query", [], {"select": ["id", "listen"]})
        cfg = yield _Call("iscsi.global.config")
        gport = (cfg or {}).get("listen_port") if isinstance(cfg, dict) else None
        found = pick_portal(portals or [], gport, ip, port)
        return None if found is None else found["id"]

    def _iscsi_global(self, c: Change, p: IscsiGlobal) -> Chain:
        raise ChangeFailed(f"{c.address}: netprov does not change the NAS-wide basename")
        yield  # a generator, like every executor

    def _service(self, c: Change, p: Service) -> Chain:
        if p.enable:
            yield _Call("service.update", SERVICE, {"enable": True})
        if p.start:
            # look again right before: starting a running service restarts it on CORE (drops sessions)
            rows = yield _Call("service.query", [["service", "=", SERVICE]], {"select": ["service", "state"]})
            state = (rows[0].get("state") if rows else None) or "UNKNOWN"
            if state != "RUNNING":
                if self.st.service_control:
                    ok = yield _Call("service.control", "START", SERVICE, {"silent": False}, job=True)
                elif self.st.core:
                    ok = yield _Call("service.start", SERVICE)
                else:
                    ok = yield _Call("service.start", SERVICE, {"silent": False})
                if ok is False:
                    raise ChangeFailed("the iSCSI service failed to start")


#: Which executor carries out a change: by its payload's type (a no-op's ``Kept``/``AuthKept`` needs none).
_EXECUTORS: dict[type, Callable[..., Chain]] = {
    ZvolCreate: _Run._zvol_create, ZvolUpdate: _Run._zvol_update, ZvolRename: _Run._zvol_rename,
    ZvolReplace: _Run._zvol_replace, ZvolDelete: _Run._zvol_delete,
    ExtentCreate: _Run._extent_create, ExtentUpdate: _Run._extent_update, ExtentDelete: _Run._extent_delete,
    InitiatorCreate: _Run._initiator_create, InitiatorUpdate: _Run._initiator_update,
    InitiatorDelete: _Run._initiator_delete,
    AuthCreate: _Run._auth_create, AuthUpdate: _Run._auth_update, AuthDelete: _Run._auth_delete,
    TargetCreate: _Run._target_create, TargetUpdate: _Run._target_update, TargetDelete: _Run._target_delete,
    MappingCreate: _Run._mapping_create, MappingUpdate: _Run._mapping_update, MappingDelete: _Run._mapping_delete,
    PortalCreate: _Run._portal_create, IscsiGlobal: _Run._iscsi_global, Service: _Run._service,
}


def _registered(p: object) -> int | None:
    """What later changes of a chain refer to an existing object by: its id (an auth group: its tag)."""
    if isinstance(p, AuthKept | AuthUpdate):
        return p.tag
    if isinstance(p, Kept | ExtentUpdate | InitiatorUpdate | TargetUpdate):
        return p.id
    if isinstance(p, MappingUpdate):
        return p.ref.id
    return None
