"""Run one apply's machine chains side by side, and report what was done, what failed and what was skipped.

Gathers the calls every chain is waiting on and sends them together; it does not decide what a change does
on the NAS (``steps.py`` does) nor read the NAS or check the plan is fresh (``backend.py`` does).

* the shared portal runs first, then every machine's chain, then the service (enable, and start
  only when not running: on CORE ``service.start`` on a running service restarts ctld and drops
  every session);
* machine chains run side by side: each is a generator that yields one API call at a time; the
  scheduler gathers the calls every chain is waiting on and sends them together, pipelined with at
  most ``parallel`` calls in flight (or, with ``bulk=True``, through ``core.bulk`` when many calls
  share a method; errors stay attributable: one result per item). A chain stops at its first failure
  or refused change; the others go on. The report lists what was done, what failed (with the
  error line) and what was skipped (and why);
* every change carried out has been reported (``progress("done", ...)``) before anything can raise.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netprov.adapters.truenas.steps import Call, Chain, Op, Satisfied, Sleep, Steps
from netprov.core.plan import Change
from netprov.core.storage import ActualStorage, DesiredStorage
from netprov.core.storage.payloads import IscsiGlobal, PortalCreate
from netprov.core.text import one_line
from netprov.errors import NetprovError, RemoteError

logger = logging.getLogger("netprov.storage")

ProgressFn = Callable[[str, Change, "str | None"], None]

#: A method with at least this many calls waiting in one round goes through ``core.bulk``.
BULK_MIN = 24
#: ``apply(bulk=None)`` uses ``core.bulk`` when a ``core.ping`` takes at least this long (seconds).
BULK_RTT = 0.008
_BULKABLE = re.compile(r"^(pool\.dataset|iscsi\.(extent|target|targetextent|initiator|auth))\.(create|update|delete)$")


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


class ApplyRun:
    """One apply: the chains (their steps share ``Steps``), the scheduler, the report."""

    # ``st``: the TrueNASStorage (its client, system name and release traits)
    def __init__(self, st: Any, changes: list[Change], actual: ActualStorage,
                 desired: DesiredStorage | None, progress: ProgressFn | None, parallel: int,
                 bulk: bool = False) -> None:
        self.bulk = bulk
        self.client = st.client
        self.changes = changes
        self.progress = progress
        self.parallel = parallel
        self.report = StorageReport(system=st.system)
        self.steps = Steps(st, changes, actual, desired)
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
                yield from self.steps.run(c)
            except Satisfied as e:
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
                if isinstance(op, Sleep) and key not in wake:
                    wake[key] = now + op.seconds
            ready = [k for k, op in ops.items() if isinstance(op, Call)]
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

    def _dispatch(self, items: list[tuple[str, Call]]) -> dict[str, tuple[Any, BaseException | None]]:
        out: dict[str, tuple[Any, BaseException | None]] = {}
        by_method: dict[str, list[tuple[str, Call]]] = {}
        for k, op in items:
            by_method.setdefault(op.method, []).append((k, op))
        singles: list[tuple[str, Call]] = []
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

    def _call_one(self, op: Call) -> tuple[Any, BaseException | None]:
        try:
            if op.job:
                return self.client.call_job(op.method, *op.params), None
            return self.client.call(op.method, *op.params), None
        except NetprovError as e:
            return None, e
