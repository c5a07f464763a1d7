"""Websocket front-end of the simulator: both wire protocols, auth gating, limits, knobs.

Where the real ones are (middleware TS-25.04.2.4 src/middlewared/middlewared/): routes ``/api/<version>``
main.py:233 and ``/websocket`` main.py:1394; JSON-RPC handler api/base/server/ws_handler/rpc.py (10 calls in
flight per connection, 20 queued: SoftHardSemaphore(10, 20) rpc.py:46); message size limits
utils/limits.py:17-19 (8 KiB before auth, 64 KiB after; close code MESSAGE_TOO_BIG :34); unauthenticated
rate limit utils/rate_limit/cache.py:15 (max_calls 20).
"""

from __future__ import annotations

import asyncio
import dataclasses
import collections
import copy
import errno
import fnmatch
import http
import ipaddress
import json
import logging
import os
import random
import secrets
import ssl
import string
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from .errors import (
    CallError,
    MatchNotFound,
    MethodNotFound,
    NotAuthenticated,
    RateLimited,
    SimError,
    ValidationErrors,
    errname,
    fake_trace,
)
from .apiversions import api_version_for
from .nas import VOLBLOCKSIZES, Ctx, JobRequest, Nas, Session, dataset_record, zvol_path
from .profiles import get_profile
from .schema import check_arity

log = logging.getLogger("truenas_sim")

MAX_IN_FLIGHT = 20  # admitted (executing + waiting) per connection
MAX_EXECUTING = 10
ANON_LIMIT = 8 * 1024
RATE_LIMIT_CALLS = 20
RATE_LIMIT_WINDOW = 60.0
RATE_LIMIT_CACHE = 100
RATE_LIMIT_WIPE = 600.0


def is_loopback(ip: str) -> bool:
    """Whether a peer address counts as loopback (monkeypatch in tests to fake a remote peer)."""
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def generate_api_key(key_id: int = 1) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"{key_id}-" + "".join(secrets.choice(alphabet) for _ in range(64))


class Knobs:
    """Fault injection and timing switches (all take effect immediately, from any thread).

    ``latency``             seconds slept before each reply (inside the per-connection execution slot, so it
                            also makes the 10-executing / 20-admitted limits observable).
    ``fail_call``           ``(n, errno, message)``: the n-th call received from now (1-based, any connection)
                            answers with ``CallError(message, errno)`` in the protocol's shape; one shot.
    ``drop_at``             ``n``: the connection receiving the n-th call from now is aborted (no close frame,
                            no reply); one shot.
    ``out_of_order``        replies are buffered for ``out_of_order_window`` seconds and flushed in a shuffled
                            order (seeded RNG; a batch of >= 2 is never flushed in arrival order).
    ``zvol_device_lag``     ``n``: every zvol created (or cloned) while n > 0 fails its first n
                            ``iscsi.extent.create`` attempts with the real "Device '/dev/zvol/...'
                            ... does not exist" validation error (SCALE profiles; CORE checks the
                            dataset instead, so there is no race there).
    ``insecure_transport``  treat every connection as remote plain ws:// (API keys get revoked on 25.04+).
    ``rate_limit``          per (method, IP) limit on unauthenticated calls (24.10+), on by default.
    ``rate_limit_sleep``    (lo, hi) seconds slept before "Rate Limit Exceeded" (real: 1-10 s).
    ``auth_failure_sleep``  (lo, hi) seconds slept when ``auth.login_with_api_key`` gets an unknown key
                            (real 25.04+: 1-2 s); default 0 to keep tests fast.

    Broken answers and server-side cost (see ``bad_answer`` and ``cost_of``):

    ``bad_answers``         ``{method: (kind, value)}``: every successful answer to ``method`` is replaced
                            by a broken one until the entry is removed. Kinds: ``garbage`` (a non-JSON
                            text frame), ``binary`` (a binary frame), ``wrong_id`` (the reply carries an id
                            that was never sent; the real one is never answered), ``deep`` (``value``-deep
                            nested JSON, default 200,000), ``huge`` (a result of ``value`` bytes, default
                            150 MB), ``value`` (the result is ``value``, e.g. a string or ``[None]``),
                            ``field`` (``value`` = ``(name, v)``: field ``name`` of the result, or of every
                            row of a list result, is set to ``v``).
    ``row_cost``            ``{method pattern: seconds}`` slept per row a call answers (a list's length,
                            else 1), e.g. ``{"pool.dataset.query": 0.002}``; fnmatch patterns.
    ``call_cost``           ``{method pattern: seconds}`` slept per call, e.g. ``{"*.create": 0.05,
                            "*.delete": 0.05}``. Inside ``core.bulk`` jobs each item costs its method's
                            ``call_cost`` (or ``row_cost`` per row) and the job's progress is updated
                            after each item; other jobs update their progress while they spend theirs.
                            The cost is slept without blocking (pings are answered meanwhile) inside the
                            connection's execution slot, like ``latency``.
    ``dataset_cost``        seconds per dataset a ``pool.dataset.query`` reads: what the release reads,
                            not what the filter keeps (every dataset unless the filter is one the
                            release pushes down to ZFS; methods.py ``dataset_read_plan``).
    ``property_cost``       seconds per property read from each of those datasets: every ZFS property
                            the simulator models unless the release honours ``extra.properties``, plus
                            one per user property (``comments`` is one) unless ``retrieve_user_props``
                            is false. Both also apply to a query run inside ``core.bulk``; they add to
                            ``row_cost``/``call_cost``. "10 ms per dataset queried, 100 ms per zvol
                            created": ``dataset_cost=0.002, property_cost=0.008/17`` (a zvol read with
                            all 17 modelled ZFS properties costs 10 ms, each user property 0.47 ms more)
                            and ``call_cost={"pool.dataset.create": 0.1}`` (benchmarks/bench_slow_nas.py).
    ``stalled_jobs``        an fnmatch pattern: jobs of matching methods (``core.bulk`` included) stay
                            RUNNING with no progress until the knob changes.
    """

    def __init__(self, sim: Simulator):
        self._sim = sim
        # -- broken answers and server-side cost (issue 10, client robustness) ----------------------
        self.bad_answers: dict[str, tuple] = {}
        self.row_cost: dict[str, float] = {}
        self.call_cost: dict[str, float] = {}
        self.dataset_cost: float = 0.0
        self.property_cost: float = 0.0
        self.stalled_jobs: str | None = None
        self.latency: float = 0.0
        self.out_of_order: bool = False
        self.out_of_order_window: float = 0.05
        self.insecure_transport: bool = False  # treat every connection as non-loopback, non-TLS
        self.rate_limit_sleep: tuple = (1.0, 10.0)  # real server sleeps 1-10 s before "Rate Limit Exceeded"
        self.rate_limit: bool = True  # per (method, IP) limit on unauthenticated calls (24.10+)
        self.auth_failure_sleep: tuple = (0.0, 0.0)
        self._fail_call = None
        self._fail_at = None
        self._drop_at = None
        self._drop_abs = None

    @property
    def fail_call(self):
        return self._fail_call

    @fail_call.setter
    def fail_call(self, value):
        self._fail_call = value
        self._fail_at = None if value is None else self._sim._calls_total + int(value[0])

    @property
    def drop_at(self):
        return self._drop_at

    @drop_at.setter
    def drop_at(self, value):
        self._drop_at = value
        self._drop_abs = None if value is None else self._sim._calls_total + int(value)

    # --- lose_reply_at (fault matrix, tests/faults) -------------------------------------------
    # ``n``: the n-th call received from now (1-based, any connection) runs to completion, its reply
    # (result or error) is never sent, and its connection is then aborted (no close frame); one shot.
    # The client can't tell whether the call happened: a rerun must find out from the NAS itself.
    _lose_abs = None

    @property
    def lose_reply_at(self):
        return None if self._lose_abs is None else self._lose_abs - self._sim._calls_total

    @lose_reply_at.setter
    def lose_reply_at(self, value):
        self._lose_abs = None if value is None else self._sim._calls_total + int(value)

    def _take_lose_reply(self, n: int) -> bool:
        if self._lose_abs is not None and n >= self._lose_abs:
            self._lose_abs = None
            return True
        return False
    # --- end lose_reply_at ---------------------------------------------------------------------

    @property
    def zvol_device_lag(self) -> int:
        return self._sim.nas.device_lag_default

    @zvol_device_lag.setter
    def zvol_device_lag(self, n: int):
        self._sim.nas.device_lag_default = int(n or 0)

    # -- broken answers and server-side cost (issue 10, client robustness) --------------------------
    BAD_KINDS = ("garbage", "binary", "wrong_id", "deep", "huge", "value", "field")

    def bad_answer(self, method: str, kind: str | None, value: Any = None) -> None:
        """Answer every successful call of ``method`` with a broken ``kind`` of answer (None: stop)."""
        if kind is None:
            self.bad_answers.pop(method, None)
            return
        if kind not in self.BAD_KINDS:
            raise ValueError(f"unknown bad answer kind {kind!r}: one of {', '.join(self.BAD_KINDS)}")
        self.bad_answers[method] = (kind, value)

    def cost_of(self, method: str, result: Any = None) -> float:
        """Seconds the NAS spends on one call of ``method`` that answers ``result``."""
        rows = len(result) if isinstance(result, list) else 1
        total = 0.0
        for pattern, seconds in list(self.row_cost.items()):
            if fnmatch.fnmatchcase(method, pattern):
                total += seconds * rows
                break
        for pattern, seconds in list(self.call_cost.items()):
            if fnmatch.fnmatchcase(method, pattern):
                total += seconds
                break
        return total

    def work_cost(self, work: Any) -> float:
        """Seconds the NAS spends on what one call read (``Ctx.work``: datasets and properties)."""
        if not isinstance(work, dict):
            return 0.0
        return self.dataset_cost * work.get("datasets", 0) + self.property_cost * work.get("properties", 0)

    def job_stalled(self, method: str) -> bool:
        pattern = self.stalled_jobs
        return pattern is not None and fnmatch.fnmatchcase(method, pattern)


# ----------------------------------------------------------------------------------------- errors
def jsonrpc_error(exc: BaseException, profile) -> dict:
    if isinstance(exc, MethodNotFound):
        return {"code": -32601, "message": "Method does not exist"}
    if isinstance(exc, NotAuthenticated):
        return {
            "code": -32001,
            "message": "Method call error",
            "data": {
                "error": 207,
                "errname": "ENOTAUTHENTICATED",
                "reason": "[ENOTAUTHENTICATED] Not authenticated",
                "trace": None,
                "extra": None,
            },
        }
    if isinstance(exc, ValidationErrors):
        return {
            "code": -32602,
            "message": "Invalid params",
            "data": {
                "error": errno.EINVAL,
                "errname": "EINVAL",
                "reason": str(exc),
                "trace": fake_trace(exc),
                "extra": [[a, m, e] for a, m, e in exc.errors],
            },
        }
    if isinstance(exc, CallError):
        return {
            "code": -32001,
            "message": "Method call error",
            "data": {
                "error": exc.errno,
                "errname": errname(exc.errno),
                "reason": str(exc),
                "trace": fake_trace(exc),
                "extra": exc.extra,
            },
        }
    if isinstance(exc, MatchNotFound):
        return {
            "code": -32001,
            "message": "Method call error",
            "data": {
                "error": errno.EINVAL,
                "errname": "EINVAL",
                "reason": "MatchNotFound()",
                "trace": fake_trace(exc),
                "extra": None,
            },
        }
    return {
        "code": -32001,
        "message": "Method call error",
        "data": {
            "error": errno.EINVAL,
            "errname": "EINVAL",
            "reason": str(exc) or repr(exc),
            "trace": fake_trace(exc),
            "extra": None,
        },
    }


def legacy_error(exc: BaseException, profile, known_services=()) -> dict:
    def mk(err, type_, reason, trace=None, extra=None):
        d = {"error": err}
        if profile.errname:
            d["errname"] = errname(err)
        d.update({"type": type_, "reason": reason, "trace": trace, "extra": extra})
        return d

    if isinstance(exc, MethodNotFound):
        return mk(201, None, exc.legacy_reason(known_services))
    if isinstance(exc, NotAuthenticated):
        return mk(profile.notauth_errno, None, "Not authenticated")
    if isinstance(exc, ValidationErrors):
        err = exc.errors[0][2] if exc.single else errno.EAGAIN
        return mk(err, "VALIDATION", str(exc), fake_trace(exc), [[a, m, e] for a, m, e in exc.errors])
    if isinstance(exc, CallError):
        return mk(exc.errno, None, str(exc), fake_trace(exc), exc.extra)
    if isinstance(exc, MatchNotFound):
        return mk(errno.EINVAL, None, "MatchNotFound()", fake_trace(exc))
    return mk(errno.EINVAL, None, str(exc) or repr(exc), fake_trace(exc))


class TooManyCalls(SimError):
    pass


# ------------------------------------------------------------------------------------- connection
class Conn:
    def __init__(self, sim: Simulator, ws, kind: str):
        self.sim = sim
        self.ws = ws
        self.kind = kind  # "jsonrpc" | "legacy"
        self.session = Session()
        self.options: dict = {}
        self.connected = kind == "jsonrpc"
        self.admitted = 0
        self.exec_sem = asyncio.Semaphore(MAX_EXECUTING)
        self.subs: dict[str, str] = {}
        self.pending: list = []
        self.flush_handle = None
        self.rng = random.Random(sim.seed)
        addr = ws.remote_address
        self.peer_ip = addr[0] if addr else "127.0.0.1"
        self.tasks: set = set()
        self.api_version: str | None = None

    # -------------------------------------------------------------- sending
    async def _send_now(self, obj):
        try:
            await self.ws.send(json.dumps(obj))
        except ConnectionClosed:
            pass

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    async def send_reply(self, obj):
        if not self.sim.knobs.out_of_order:
            await self._send_now(obj)
            return
        self.pending.append(obj)
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(
                self.sim.knobs.out_of_order_window, lambda: self._spawn(self._flush())
            )

    async def _flush(self):
        self.flush_handle = None
        batch, self.pending = self.pending, []
        order = list(range(len(batch)))
        self.rng.shuffle(order)
        if len(order) > 1 and order == sorted(order):
            order = order[1:] + order[:1]
        for i in order:
            await self._send_now(batch[i])

    def send_event(self, collection, msg, id_, fields):
        if self.kind == "jsonrpc":
            params = {"msg": msg, "collection": collection, "id": id_}
            if fields is not None and msg != "removed":
                params["fields"] = fields
            obj = {"jsonrpc": "2.0", "method": "collection_update", "params": params}
        else:
            obj = {"msg": msg, "collection": collection, "id": id_}
            if fields is not None and msg != "removed":
                obj["fields"] = fields
        self._spawn(self._send_now(obj))

    def wants(self, collection) -> bool:
        return any(n == collection or n == "*" for n in self.subs.values())

    async def reply_result(self, id_, result):
        if self.kind == "jsonrpc":
            await self.send_reply({"jsonrpc": "2.0", "result": result, "id": id_})
        else:
            await self.send_reply({"msg": "result", "id": id_, "result": result})

    async def reply_bad(self, id_, result, kind: str, value: Any = None):
        """Answer with a broken message of ``kind`` (``Knobs.bad_answer``)."""
        if kind == "garbage":
            await self._send_raw("<html><body><h1>502 Bad Gateway</h1></body></html>")
        elif kind == "binary":
            await self._send_raw(b"\x00\xffnot a text frame")
        elif kind == "wrong_id":
            await self.reply_result(id_ + 1_000_000 if isinstance(id_, int) else f"{id_}-other", result)
        elif kind == "deep":
            depth = int(value or 200_000)
            head = {"jsonrpc": "2.0", "id": id_} if self.kind == "jsonrpc" else {"msg": "result", "id": id_}
            body = json.dumps(head)[:-1] + ', "result": ' + "[" * depth + "]" * depth + "}"
            await self._send_raw(body)
        elif kind == "huge":
            await self.reply_result(id_, "x" * int(value or 150_000_000))
        elif kind == "value":
            await self.reply_result(id_, value)
        elif kind == "field":
            name, v = value
            result = copy.deepcopy(result)
            for row in result if isinstance(result, list) else [result]:
                if isinstance(row, dict):
                    row[name] = v
            await self.reply_result(id_, result)

    async def _send_raw(self, data):
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            pass

    async def reply_error(self, id_, exc):
        if isinstance(exc, TooManyCalls):
            if self.kind == "jsonrpc":
                err = {"code": -32000, "message": "Maximum number of concurrent calls (20) has exceeded"}
                await self._send_now({"jsonrpc": "2.0", "error": err, "id": id_})
            else:
                d = {
                    "error": errno.ETOOMANYREFS,
                    "errname": "ETOOMANYREFS",
                    "type": None,
                    "reason": "Maximum number of concurrent calls (20) has exceeded.",
                    "trace": None,
                    "extra": None,
                }
                await self._send_now({"msg": "result", "id": id_, "error": d})
            return
        if self.kind == "jsonrpc":
            await self.send_reply(
                {"jsonrpc": "2.0", "error": jsonrpc_error(exc, self.sim.profile), "id": id_}
            )
        else:
            await self.send_reply(
                {
                    "msg": "result",
                    "id": id_,
                    "error": legacy_error(exc, self.sim.profile, self.sim.nas.known_services()),
                }
            )

    # -------------------------------------------------------------- main loop
    async def run(self):
        p = self.sim.profile
        try:
            async for raw in self.ws:
                if isinstance(raw, (bytes, bytearray)):
                    await self.ws.close(1003, "Invalid websocket message type")
                    return
                size = len(raw.encode("utf-8"))
                if not self.session.authenticated and size > ANON_LIMIT:
                    await self.ws.close(1007, "Anonymous connection max message length is 8 kB")
                    return
                if self.session.authenticated and p.post_auth_limit and size > p.post_auth_limit:
                    await self.ws.close(1009, "Max message length is 64 kB")
                    return
                if self.kind == "jsonrpc":
                    await self.on_jsonrpc(raw)
                else:
                    await self.on_legacy(raw)
        except ConnectionClosed:
            pass
        finally:
            for t in list(self.tasks):
                t.cancel()

    async def on_jsonrpc(self, raw: str):
        def err(code, message, id_=None):
            return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id_}

        try:
            msg = json.loads(raw)
        except ValueError as e:
            await self._send_now(err(-32700, str(e)))
            return
        if isinstance(msg, list):
            await self._send_now(err(-32700, "Batch messages are not supported at this time"))
            return
        if not isinstance(msg, dict):
            await self._send_now(err(-32700, "Invalid Message Format"))
            return
        notify = "id" not in msg
        id_ = msg.get("id")
        problem = None
        if "jsonrpc" not in msg:
            problem = "Missing 'jsonrpc' member"
        elif msg["jsonrpc"] != "2.0":
            problem = "'jsonrpc' member must be of type string and hold value '2.0'"
        elif not isinstance(msg.get("method"), str):
            problem = (
                "Missing 'method' member" if "method" not in msg else "'method' member must be of type string"
            )
        elif not isinstance(msg.get("params", []), list):
            problem = "'params' member must be of type array"
        elif id_ is not None and not isinstance(id_, (str, int)) or isinstance(id_, bool):
            problem = "'id' member must be of type string, number or null"
        if problem:
            if not notify:
                await self._send_now(err(-32600, problem, id_ if isinstance(id_, (str, int)) else None))
            return
        await self.on_call(msg["method"], msg.get("params", []), id_, notify)

    async def on_legacy(self, raw: str):
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        t = msg.get("msg")
        if not self.connected:
            if t == "connect" and msg.get("version") == "1" and "1" in (msg.get("support") or ["1"]):
                self.connected = True
                await self._send_now({"msg": "connected", "session": str(uuid.uuid4())})
            else:
                await self._send_now({"msg": "failed", "version": "1"})
            return
        if t == "ping":
            pong = {"msg": "pong"}
            if "id" in msg:
                pong["id"] = msg["id"]
            await self._send_now(pong)
        elif t == "method":
            params = msg.get("params", [])
            if not isinstance(params, list):
                self.sim._count_call(msg.get("method"))
                await self.reply_error(msg.get("id"), CallError("`params` must be a list.", errno.EINVAL))
                return
            await self.on_call(msg.get("method"), params, msg.get("id"), False)
        elif t == "sub":
            sid = msg.get("id")
            if not self.session.authenticated:
                await self._send_now(
                    {
                        "msg": "result",
                        "id": sid,
                        "error": legacy_error(CallError("Not authorized", errno.EACCES), self.sim.profile),
                    }
                )
                return
            self.subs[sid] = msg.get("name")
            await self._send_now({"msg": "ready", "subs": [sid]})
        elif t == "unsub":
            self.subs.pop(msg.get("id"), None)
        elif t == "connect":
            await self._send_now({"msg": "connected", "session": str(uuid.uuid4())})

    async def on_call(self, method, params, id_, notify):
        sim = self.sim
        n = sim._count_call(method)
        k = sim.knobs
        if k._drop_abs is not None and n >= k._drop_abs:
            k._drop_at = k._drop_abs = None
            self.ws.transport.abort()
            return
        fail = None
        if k._fail_at is not None and n >= k._fail_at:
            _, eno, message = k._fail_call
            fail = CallError(message, eno)
            k._fail_call = k._fail_at = None
        if self.admitted >= MAX_IN_FLIGHT:
            if not notify:
                await self.reply_error(id_, TooManyCalls())
            return
        self.admitted += 1
        if k._take_lose_reply(n):  # lose_reply_at: run the call, drop its reply and the connection
            self._spawn(self._execute_and_lose(method, params, id_, fail))
            return
        self._spawn(self._execute(method, params, id_, notify, fail))

    async def _execute_and_lose(self, method, params, id_, fail):
        try:
            async with self.exec_sem:
                if self.sim.knobs.latency:
                    await asyncio.sleep(self.sim.knobs.latency)
                if fail is None:
                    try:
                        await self.sim._dispatch(self, method, params, id_)
                    except Exception:  # noqa: BLE001 - its answer is lost either way
                        pass
        finally:
            self.admitted -= 1
            self.ws.transport.abort()

    async def _execute(self, method, params, id_, notify, fail):
        try:
            async with self.exec_sem:
                if self.sim.knobs.latency:
                    await asyncio.sleep(self.sim.knobs.latency)
                if fail is not None:
                    raise fail
                result = await self.sim._dispatch(self, method, params, id_)
            if not notify:
                bad = self.sim.knobs.bad_answers.get(method)
                if bad is not None:
                    await self.reply_bad(id_, result, *bad)
                else:
                    await self.reply_result(id_, result)
        except asyncio.CancelledError:
            raise
        except SimError as e:
            if not notify:
                await self.reply_error(id_, e)
        except Exception as e:  # pragma: no cover - bug in the simulator: answer like the middleware would
            log.exception("simulator method %s crashed", method)
            if not notify:
                await self.reply_error(id_, e)
        finally:
            self.admitted -= 1


# -------------------------------------------------------------------------------------- simulator
class Simulator:
    """A TrueNAS middleware stand-in serving real websockets on 127.0.0.1.

    Seeding a golden image: ``sim.add_snapshot("tank/golden/debian@v1", volsize=10 * 2**30)`` creates the
    ancestors (filesystems), the zvol ``tank/golden/debian`` and its snapshot ``v1``; clone it with
    ``pool.snapshot.clone({"snapshot": "tank/golden/debian@v1", "dataset_dst": "tank/netprov/m1"})``.

    Extra helpers: ``add_api_key(username, roles)`` (limited-role keys for redaction/authorisation tests),
    ``add_user(name, password)``, ``reload_count`` / ``restart_count`` (iSCSI service reloads/restarts
    performed), ``nas`` (the state object).
    """

    def __init__(
        self,
        profile: str = "25.04",
        api_key: str | None = None,
        users: dict | None = None,
        state: dict | str | os.PathLike | None = None,
        tls: tuple | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1234,
        version: str | None = None,
    ):
        self.profile = get_profile(profile)
        if version is not None:  # report another system.version (a newer/older release) with this behaviour
            self.profile = dataclasses.replace(self.profile, version_string=version)
        self.seed = seed
        self.nas = Nas(self.profile, seed=seed)
        self.nas.on_event = self._emit
        self.nas.wants_event = lambda coll: any(
            c.session.authenticated and c.wants(coll) for c in list(self._conns)
        )
        if state is not None:
            self.load_state(state if isinstance(state, dict) else json.loads(Path(state).read_text()))
        self.api_key_generated = False
        if api_key is None:
            live = [k for k in self.nas.api_keys.values() if not k.get("revoked") and k.get("roles") is None]
            if live:
                api_key = live[0]["key"]
            else:
                api_key = generate_api_key(self._next_key_id())
                self.api_key_generated = True
        self.api_key = api_key
        if not any(k["key"] == api_key for k in self.nas.api_keys.values()):
            self._store_key(api_key, "root", None)
        for u, pw in (users or {}).items():
            self.nas.users[u] = pw
        self.tls = tls
        self.host = host
        self._req_port = port
        self.port: int | None = None
        self.round_trips: collections.Counter = collections.Counter()
        self._calls_total = 0
        self.knobs = Knobs(self)
        self.on_mutation = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._conns: set[Conn] = set()
        self._rate: dict = {}
        self._bulk_locks: dict = {}
        self._rate_wiped = time.monotonic()
        self._stop_evt: asyncio.Event | None = None

    # -------------------------------------------------------------- keys / users / state helpers
    def _next_key_id(self) -> int:
        return max(self.nas.api_keys, default=0) + 1

    def _store_key(self, key: str, username: str, roles):
        head = key.split("-", 1)[0]
        kid = int(head) if head.isdigit() and int(head) not in self.nas.api_keys else self._next_key_id()
        self.nas.api_keys[kid] = {
            "id": kid,
            "key": key,
            "username": username,
            "roles": roles,
            "revoked": False,
        }
        return kid

    def add_api_key(self, username: str = "root", roles: list | None = None) -> str:
        """Create another API key; ``roles=None`` means full admin, else e.g. ``["SHARING_ISCSI_READ"]``."""
        with self.nas.lock:
            key = generate_api_key(self._next_key_id())
            self._store_key(key, username, list(roles) if roles is not None else None)
            return key

    def api_key_revoked(self, key: str | None = None) -> bool:
        key = key or self.api_key
        return any(k["key"] == key and k.get("revoked") for k in self.nas.api_keys.values())

    def add_user(self, username: str, password: str, otp_token: str | None = None):
        """Add a password login; with ``otp_token`` the user has two-factor auth (fixed token)."""
        with self.nas.lock:
            self.nas.users[username] = password
            if otp_token is not None:
                self.nas.otp[username] = otp_token

    def dump_state(self) -> dict:
        return self.nas.dump()

    def load_state(self, d: dict):
        if isinstance(d, (str, os.PathLike)):
            d = json.loads(Path(d).read_text())
        self.nas.load(d)

    def save_state(self, path):
        """Write the state (it holds the API keys and CHAP secrets) readable by the owner only."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.dump_state(), indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def from_state_file(cls, path, **kwargs) -> Simulator:
        d = json.loads(Path(path).read_text())
        kwargs.setdefault("profile", d.get("profile", "25.04"))
        return cls(state=d, **kwargs)

    def add_session(self, target_name: str, initiator: str) -> dict:
        """Log an iSCSI initiator into ``target_name`` (short name or full IQN)."""
        return self.nas.add_session(target_name, initiator)

    def clear_sessions(self):
        with self.nas.lock:
            self.nas.drop_sessions()

    def write_data(self, dataset: str, data: str) -> None:
        """Stand-in for writing a zvol's blocks: ``data`` is the zvol's whole content. Snapshots copy it,
        clones start from their snapshot's, promote and rename keep it; ``read_data`` reads it back."""
        with self.nas.lock:
            self.nas.datasets[dataset]["data"] = data

    def read_data(self, name: str) -> str | None:
        """The content of a dataset or a snapshot (``pool/zvol@snap``); KeyError when it doesn't exist."""
        with self.nas.lock:
            rec = self.nas.snapshots[name] if "@" in name else self.nas.datasets[name]
            return rec.get("data")

    def add_snapshot(self, snapshot: str, volsize: int = 8 * 2**30, volblocksize: str | None = None) -> dict:
        """Seed a golden image: zvol ``<dataset>`` (created with its ancestors if missing) + ``@snapshot``."""
        ds, _, snap = snapshot.partition("@")
        if not snap:
            raise ValueError("snapshot must look like pool/path/zvol@name")
        nas = self.nas
        with nas.lock:
            parts = ds.split("/")
            cur = parts[0]
            for comp in parts[1:-1]:
                cur = f"{cur}/{comp}"
                if cur not in nas.datasets:
                    nas.datasets[cur] = dataset_record(cur, "FILESYSTEM")
            if ds not in nas.datasets:
                vbs = VOLBLOCKSIZES[volblocksize or self.profile.default_volblocksize or "8K"]
                if volsize % vbs:
                    raise ValueError("volsize must be a multiple of volblocksize")
                nas.datasets[ds] = dataset_record(ds, "VOLUME", volsize=volsize, volblocksize=vbs, sparse=False)
            d = nas.datasets[ds]
            nas.snapshots[snapshot] = {
                "creation": int(time.time()),
                "createtxg": nas.next_txg(),
                "volsize": d.get("volsize"),
                "volblocksize": d.get("volblocksize"),
            }
            return {"dataset": ds, "snapshot": snapshot, "disk": zvol_path(snapshot)}

    @property
    def reload_count(self) -> int:
        return self.nas.reload_count

    @property
    def restart_count(self) -> int:
        return self.nas.restart_count

    def reset_counters(self):
        self.round_trips.clear()

    # -------------------------------------------------------------- URLs
    @property
    def scheme(self) -> str:
        return "wss" if self.tls else "ws"

    def url_for(self, path: str) -> str:
        if self.port is None:
            raise RuntimeError("simulator not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def url(self) -> str:
        return self.url_for("/api/current" if self.profile.jsonrpc else "/websocket")

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Simulator:
        if self._thread is not None:
            return self
        started = threading.Event()
        errors: list = []

        def runner():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._main(started))
            except BaseException as e:  # pragma: no cover
                errors.append(e)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=runner, name="truenas-sim", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            self._thread = None
            raise errors[0]
        return self

    async def _main(self, started: threading.Event):
        ssl_ctx = None
        if self.tls:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            # TLS 1.2: CPython 3.11's asyncio server sometimes never reads the first request after a
            # TLS 1.3 handshake (seen ~1 run in 30 in the client tests); a real NAS sits behind nginx.
            ssl_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ssl_ctx.load_cert_chain(self.tls[0], self.tls[1])
        self._stop_evt = asyncio.Event()
        async with ws_serve(
            self._handler,
            self.host,
            self._req_port,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
            ping_interval=None,
            ssl=ssl_ctx,
            compression=None,
        ) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await self._stop_evt.wait()
            server.close()
            for c in list(self._conns):
                try:
                    c.ws.transport.abort()
                except Exception:  # pragma: no cover
                    pass

    def stop(self):
        if self._thread is None:
            return
        loop = self._loop
        if loop is not None and self._stop_evt is not None:
            try:
                loop.call_soon_threadsafe(self._stop_evt.set)
            except RuntimeError:  # pragma: no cover - loop already closed
                pass
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -------------------------------------------------------------- HTTP routing
    def _process_request(self, connection, request):
        path = request.path.split("?", 1)[0]
        p = self.profile
        if path == "/api/versions" and p.jsonrpc:
            # mw: main.py:1270 @ TS-25.04.2.4 | if version.version != "v24.10"
            body = json.dumps([v for v in p.pinned_versions if v != "v24.10"]).encode()
            headers = Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ]
            )
            return Response(200, "OK", headers, body)
        if path == "/websocket":
            return None
        if p.jsonrpc and (path == "/api/current" or path[len("/api/") :] in p.pinned_versions):
            return None
        return connection.respond(http.HTTPStatus.NOT_FOUND, "404 Not Found\n")

    async def _handler(self, ws):
        path = ws.request.path.split("?", 1)[0]
        conn = Conn(self, ws, "legacy" if path == "/websocket" else "jsonrpc")
        conn.api_version = api_version_for(self.profile, conn.kind, path)
        self._conns.add(conn)
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)

    # -------------------------------------------------------------- events
    def _emit(self, collection, msg, id_, fields):
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def fanout():
            for c in list(self._conns):
                if c.session.authenticated and c.wants(collection):
                    c.send_event(collection, msg, id_, fields)

        try:
            if threading.current_thread() is self._thread:
                fanout()
            else:
                loop.call_soon_threadsafe(fanout)
        except RuntimeError:  # pragma: no cover
            pass

    # -------------------------------------------------------------- dispatch
    def _count_call(self, method) -> int:
        self._calls_total += 1
        self.round_trips[str(method)] += 1
        return self._calls_total

    def _secure_transport(self, conn: Conn) -> bool:
        if self.knobs.insecure_transport:
            return False
        if self.tls:
            return True
        return is_loopback(conn.peer_ip)

    async def _rate_limit(self, method: str, ip: str):
        now = time.monotonic()
        key = (method, ip)
        if now - self._rate_wiped >= RATE_LIMIT_WIPE:
            self._rate.clear()
            self._rate_wiped = now
        if key not in self._rate and len(self._rate) >= RATE_LIMIT_CACHE:
            raise RateLimited()  # global cache full: every unauthenticated call fails until the wipe
        ent = self._rate.get(key)
        if ent is None or now - ent[0] >= RATE_LIMIT_WINDOW:
            ent = self._rate[key] = [now, 0]
        ent[1] += 1
        if ent[1] > RATE_LIMIT_CALLS:
            lo, hi = self.knobs.rate_limit_sleep
            if hi > 0:
                await asyncio.sleep(random.uniform(lo, hi))
            raise RateLimited()

    def _mutated(self):
        cb = self.on_mutation
        if cb is not None:
            try:
                cb()
            except Exception:  # pragma: no cover
                log.exception("on_mutation callback failed")

    async def _dispatch(self, conn: Conn, method: str, params: list, msg_id):
        nas = self.nas
        ctx = Ctx(
            session=conn.session,
            secure_transport=self._secure_transport(conn),
            peer_ip=conn.peer_ip,
            conn=conn,
            api_version=conn.api_version,
        )
        if method in ("core.subscribe", "core.unsubscribe") and conn.kind == "jsonrpc":
            if not conn.session.authenticated:
                raise NotAuthenticated()
            if method == "core.subscribe":
                if len(params) != 1 or not isinstance(params[0], str):
                    raise ValidationErrors([("core_subscribe.event", "Input should be a valid string", 22)])
                sid = str(uuid.uuid4())
                conn.subs[sid] = params[0]
                return sid
            conn.subs.pop(params[0] if params else None, None)
            return None
        spec = nas.methods.get(method)
        if spec is None:
            raise MethodNotFound(method)
        if not spec.no_auth and not conn.session.authenticated:
            raise NotAuthenticated()
        if (
            spec.no_auth
            and not conn.session.authenticated
            and self.profile.rate_limit
            and self.knobs.rate_limit
            and method != "core.set_options"
        ):
            await self._rate_limit(method, conn.peer_ip)
        if method == "auth.login_with_api_key" and self.knobs.auth_failure_sleep[1] > 0:
            key = params[0] if params else None
            if not any(k["key"] == key for k in nas.api_keys.values()):
                await asyncio.sleep(random.uniform(*self.knobs.auth_failure_sleep))
        if spec.job:
            nas.authorize(ctx, method)
            check_arity(self.profile.pydantic, method, params, spec.max_args, spec.min_args)
            with nas.lock:
                jr = spec.func(ctx, *params)
            job, fut = self._start_job(ctx, jr, msg_id)
            if (
                self.profile.legacy_jobs_option
                and conn.kind == "jsonrpc"
                and conn.options.get("legacy_jobs", True) is False
            ):
                outcome = await fut
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            return job["id"]
        try:
            result = nas.call(ctx, method, params)
        finally:
            if spec.mutating:
                self._mutated()
        cost = self.knobs.cost_of(method, result) + self.knobs.work_cost(ctx.work)
        if cost > 0:
            await asyncio.sleep(cost)
        return result

    def _start_job(self, ctx: Ctx, jr: JobRequest, msg_id):
        nas = self.nas
        with nas.lock:
            job = nas.new_job(jr.method, jr.arguments, ctx, jr.description)
            if "message_ids" in job and msg_id is not None:
                job["message_ids"].append(msg_id)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._run_job(job, jr, ctx, fut))
        return job, fut

    async def _bulk_items(self, ctx: Ctx, job, method, plist, results):
        nas = self.nas
        spec = nas.methods.get(method)
        for i, params in enumerate(plist):
            self.round_trips[f"core.bulk:{method}"] += 1
            ctx.work = None
            try:
                if spec is not None and spec.job:
                    with nas.lock:
                        inner = spec.func(ctx, *params)
                    ijob, _ = self._start_job(ctx, inner, None)
                    item = {"job_id": ijob["id"], "result": None, "error": None}
                else:
                    item = {"result": nas.call(ctx, method, params), "error": None}
            except SimError as e:
                item = {"result": None, "error": str(e) or repr(e)}
            except Exception as e:  # a simulator bug: report it per item like the middleware would
                log.exception("bulk item %s crashed", method)
                item = {"result": None, "error": str(e) or repr(e)}
            finally:
                if spec is not None and spec.mutating:
                    self._mutated()
            results.append(item)
            cost = self.knobs.cost_of(method, item.get("result")) + self.knobs.work_cost(ctx.work)
            if cost > 0:
                await asyncio.sleep(cost)
            pct = int(100 * (i + 1) / max(len(plist), 1))
            # Throttled to 10% steps, like upstream; a bulk that costs time reports every item (the NAS's
            # own description "i/n" changes with every item).
            if cost > 0 or pct - job["progress"]["percent"] >= 10 or i + 1 == len(plist):
                with nas.lock:
                    nas.job_update(
                        job, progress={"percent": pct, "description": f"{i + 1}/{len(plist)}", "extra": None}
                    )
            await asyncio.sleep(0)

    async def _spend(self, job, cost: float, steps: int = 10):
        """Sleep ``cost`` seconds (Knobs.call_cost) in steps, moving the job's progress with each."""
        if cost <= 0:
            return
        for k in range(steps):
            await asyncio.sleep(cost / steps)
            with self.nas.lock:
                self.nas.job_update(job, progress={"percent": int(100 * (k + 1) / steps) - 1,
                                                   "description": f"step {k + 1}/{steps}", "extra": None})

    async def _run_job(self, job, jr: JobRequest, ctx: Ctx, fut):
        nas = self.nas
        await asyncio.sleep(0)
        with nas.lock:
            nas.job_update(job, state="RUNNING")
        outcome: Any = None
        stop = self._stop_evt
        while self.knobs.job_stalled(jr.method) and stop is not None and not stop.is_set():
            await asyncio.sleep(0.02)  # Knobs.stalled_jobs: RUNNING, no progress
        try:
            if jr.bulk is not None:
                method, plist = jr.bulk
                # core.bulk holds a lock named bulk:<method>: two bulks for one method run one after the other
                lock = self._bulk_locks.setdefault(method, asyncio.Lock())
                await lock.acquire()
                results = []
                try:
                    await self._bulk_items(ctx, job, method, plist, results)
                finally:
                    lock.release()
                outcome = results
            else:
                await self._spend(job, self.knobs.cost_of(jr.method))
                with nas.lock:
                    outcome = jr.run()
                self._mutated()
            with nas.lock:
                nas.job_update(
                    job,
                    state="SUCCESS",
                    result=copy.deepcopy(outcome),
                    progress={"percent": 100, "description": "", "extra": None},
                    time_finished={"$date": int(time.time() * 1000)},
                )
        except Exception as e:  # noqa: BLE001 - any failure ends the job as FAILED
            exc_info = {
                "repr": repr(e),
                "type": "VALIDATION" if isinstance(e, ValidationErrors) else type(e).__name__,
                "errno": getattr(e, "errno", errno.EINVAL),
                "extra": [[a, m, n] for a, m, n in e.errors]
                if isinstance(e, ValidationErrors)
                else getattr(e, "extra", None),
            }
            with nas.lock:
                nas.job_update(
                    job,
                    state="FAILED",
                    error=str(e) or repr(e),
                    exception=fake_trace(e)["formatted"],
                    exc_info=exc_info,
                    time_finished={"$date": int(time.time() * 1000)},
                )
            outcome = e
        if not fut.done():
            fut.set_result(outcome)
