"""TrueNAS storage backend, the storage port: read the NAS into ``ActualStorage``; execute a storage plan.

This module reads (the queries, pipelined) and starts an apply (the stale check, then the run); what each
change does on the NAS is in ``steps.py``, how the chains run side by side and the report in ``schedule.py``,
which releases it drives in ``versions.py``.

Reading costs a constant number of API calls whatever the number of machines: each kind is
queried once (with filters and ``select``), all pipelined on the one connection, so the wall time
is about one round trip. Nothing is queried per machine.

Applying:

* re-reads the NAS first and raises ``StalePlanError`` when ``state_fingerprint(actual)`` (sessions excluded) is not
  the plan's (apply never acts on a world the plan did not see);
* then runs the changes (``schedule.ApplyRun``, each change by its ``steps`` executor); an exception that
  escapes the scheduler carries the partial report as ``.storage_report``.

Executor inputs come only from the plan's changes (each change's typed ``payload``, which holds no secret;
the executor is chosen by the payload's type) plus the CHAP secrets, which come from the ``DesiredStorage``
given to ``read``/``apply``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from netprov.adapters.truenas import normalise
from netprov.adapters.truenas.schedule import BULK_MIN, BULK_RTT, ApplyRun, ProgressFn, StorageReport
from netprov.adapters.truenas.versions import client_methods, version_support, version_tuple
from netprov.core.plan import Change
from netprov.core.storage import SERVICE, ActualStorage, DesiredStorage, state_fingerprint
from netprov.errors import StalePlanError

__all__ = ["DATASET_PROPERTIES", "StorageReport", "TrueNASStorage", "client_methods", "dataset_read_query",
           "dataset_rows", "version_support", "version_tuple"]

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
        run = ApplyRun(self, mine, actual, desired, progress,
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

