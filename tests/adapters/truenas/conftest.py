"""Fixtures for the TrueNAS RPC client tests.

``stub_nas``: a tiny websocket server (real sockets, 127.0.0.1) that speaks both middleware
protocols with the middleware's envelopes verbatim (JSON-RPC: middleware TS-25.04.2.4
src/middlewared/middlewared/api/base/server/ws_handler/rpc.py:115-119, :339; legacy: TS-24.10.2.2
src/middlewared/middlewared/main.py:402). It is deliberately dumb: tests
register method handlers on it and inspect what it saw (peak calls in flight, message sizes).
The TrueNAS simulator (truenas_sim) is used by test_rpc_sim.py for behaviour; this stub pins
wire shapes and failure modes precisely.

``tls_files``: a throwaway CA and a server certificate for 127.0.0.1/localhost signed by it.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import logging
import random
import ssl
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable

import pytest
from websockets.asyncio.server import serve

API_KEY = "1-" + "k" * 64
_QUIET = logging.getLogger("tests.stub_nas")  # websockets would log frames (secrets) at DEBUG
_QUIET.setLevel(logging.INFO)
USERS = {"root": "pw-root-secret"}


class Raw(Exception):
    """Reply with this exact error object (JSON-RPC ``error`` / legacy ``error``)."""

    def __init__(self, error: dict) -> None:
        self.error = error


class Validation(Exception):
    def __init__(self, triples: list) -> None:
        self.triples = triples


class CallError(Exception):
    def __init__(self, errno: int, errname: str, message: str) -> None:
        self.errno, self.errname, self.message = errno, errname, message


@dataclass
class StubNAS:
    jsonrpc_route: bool = True  # False: 24.10-style, /api/current answers 404
    version: str = "TrueNAS-25.04.1"
    tls: ssl.SSLContext | None = None
    delay: float = 0.0  # seconds before each reply
    jitter: float = 0.0  # random extra delay → out-of-order replies
    drop_after: int | None = None  # abort the TCP connection on the n-th method call
    admit: int = 20  # calls admitted at once; more get "too many concurrent calls"
    chatter: bool = False  # send a ping, events and notifications before every reply
    methods: dict[str, Callable[..., Any]] = field(default_factory=dict)
    # observations
    peak_inflight: int = 0
    calls: list[str] = field(default_factory=list)
    sizes: dict[str, list[int]] = field(default_factory=dict)
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    pongs: list[str] = field(default_factory=list)

    # error helpers for handlers: raise nas.Raw({...}) / nas.Validation([...]) / nas.CallError(...)
    Raw = Raw
    Validation = Validation
    CallError = CallError
    API_KEY = API_KEY
    USERS = USERS

    def __post_init__(self) -> None:
        self._inflight = 0
        self._jobs: dict[int, dict] = {}
        self._job_ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self.port = 0

    # -- lifecycle
    def start(self) -> "StubNAS":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)

    @property
    def base(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(
            self._handler,
            "127.0.0.1",
            0,
            logger=_QUIET,
            ssl=self.tls,
            process_request=self._route,
            max_size=None,
            ping_interval=None,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def _route(self, connection, request):
        self.paths.append(request.path)
        if request.path == "/websocket" or (self.jsonrpc_route and request.path == "/api/current"):
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")

    # -- protocol
    async def _handler(self, ws) -> None:
        self.connections += 1
        legacy = ws.request.path == "/websocket"
        state = {"authed": False}
        if legacy:
            hello = json.loads(await ws.recv())
            if hello.get("msg") != "connect":
                await ws.send(json.dumps({"msg": "failed", "version": "1"}))
                return
            await ws.send(json.dumps({"msg": "connected", "session": "s-1"}))
        tasks = set()
        async for raw in ws:
            msg = json.loads(raw)
            if legacy and msg.get("msg") == "pong":
                self.pongs.append(msg.get("id"))
                continue
            if legacy and msg.get("msg") == "ping":
                await ws.send(json.dumps({"msg": "pong", **({"id": msg["id"]} if "id" in msg else {})}))
                continue
            method = msg["method"]
            self.calls.append(method)
            self.sizes.setdefault(method, []).append(len(raw))
            if self.drop_after is not None and len(self.calls) >= self.drop_after:
                ws.transport.abort()
                return
            t = asyncio.ensure_future(self._process(ws, legacy, state, msg))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    async def _process(self, ws, legacy: bool, state: dict, msg: dict) -> None:
        self._inflight += 1
        self.peak_inflight = max(self.peak_inflight, self._inflight)
        try:
            if self._inflight > self.admit:
                err = (
                    {
                        "error": 109,
                        "errname": "ETOOMANYREFS",
                        "type": None,
                        "reason": "Maximum number of concurrent calls (20) has exceeded.",
                        "trace": None,
                        "extra": None,
                    }
                    if legacy
                    else {"code": -32000, "message": "Maximum number of concurrent calls (20) has exceeded"}
                )
                return await self._reply(ws, legacy, msg["id"], error=err)
            if self.delay or self.jitter:
                await asyncio.sleep(self.delay + random.random() * self.jitter)
            try:
                result = self._call(state, msg["method"], msg.get("params", []))
            except Raw as e:
                return await self._reply(ws, legacy, msg["id"], error=e.error)
            except Validation as e:
                reason = "".join(f"[EINVAL] {a}: {m}\n" for a, m, _ in e.triples)
                data = {
                    "error": 22,
                    "errname": "EINVAL",
                    "reason": reason,
                    "trace": {
                        "class": "ValidationErrors",
                        "frames": [],
                        "formatted": "Traceback ...",
                        "repr": "ValidationErrors()",
                    },
                    "extra": [list(t) for t in e.triples],
                }
                if legacy:
                    err = dict(data, error=11, errname="EAGAIN", type="VALIDATION")
                else:
                    err = {"code": -32602, "message": "Invalid params", "data": data}
                return await self._reply(ws, legacy, msg["id"], error=err)
            except CallError as e:
                data = {
                    "error": e.errno,
                    "errname": e.errname,
                    "reason": f"[{e.errname}] {e.message}",
                    "trace": None,
                    "extra": None,
                }
                err = (
                    dict(data, type=None)
                    if legacy
                    else {"code": -32001, "message": "Method call error", "data": data}
                )
                return await self._reply(ws, legacy, msg["id"], error=err)
            except KeyError:
                if legacy:
                    svc, _, name = msg["method"].rpartition(".")
                    err = {
                        "error": 201,
                        "errname": "ENOMETHOD",
                        "type": None,
                        "reason": f"[ENOMETHOD] Method '{name}' not found in '{svc}'",
                        "trace": None,
                        "extra": None,
                    }
                else:
                    err = {"code": -32601, "message": "Method does not exist"}
                return await self._reply(ws, legacy, msg["id"], error=err)
            await self._reply(ws, legacy, msg["id"], result=result)
        finally:
            self._inflight -= 1

    async def _reply(self, ws, legacy: bool, call_id, *, result=None, error=None) -> None:
        if self.chatter:
            if legacy:
                noise = [
                    {"msg": "ping", "id": f"srv-{call_id}"},
                    {"msg": "added", "collection": "core.get_jobs", "id": 99, "fields": {"id": 99}},
                    {"msg": "nosub", "collection": "x", "error": None},
                ]
            else:
                noise = [
                    {
                        "jsonrpc": "2.0",
                        "method": "collection_update",
                        "params": {"msg": "changed", "collection": "core.get_jobs", "id": 99, "fields": {}},
                    },
                    {"jsonrpc": "2.0", "method": "notify_unsubscribed", "params": {"collection": "x"}},
                ]
            # Only what a real NAS sends between replies: junk (non-JSON, stray ids) now ends the session
            # at once, see test_rpc_answers.py.
            for n in noise:
                await ws.send(json.dumps(n))
        if legacy:
            body = {"msg": "result", "id": call_id}
        else:
            body = {"jsonrpc": "2.0", "id": call_id}
        if error is not None:
            body["error"] = error
        else:
            body["result"] = result
        try:
            await ws.send(json.dumps(body))
        except Exception:
            pass

    def _call(self, state: dict, method: str, params: list) -> Any:
        if method == "auth.login_with_api_key":
            state["authed"] = params[0] == API_KEY
            return state["authed"]
        if method == "auth.login":
            state["authed"] = USERS.get(params[0]) == params[1]
            return state["authed"]
        if method == "core.ping":
            return "pong"
        if method not in ("system.version", "core.get_jobs", "core.bulk") and method not in self.methods:
            raise KeyError(method)
        if not state["authed"]:
            raise CallError(207, "ENOTAUTHENTICATED", "Not authenticated")
        if method == "system.version":
            return self.version
        if method == "core.get_jobs":
            job_id = params[0][0][2]
            return [self._jobs[job_id]] if job_id in self._jobs else []
        if method == "core.bulk":
            target, items = params[0], params[1]
            out = []
            for p in items:
                try:
                    out.append({"result": self._call(state, target, p), "error": None})
                except Validation as e:
                    out.append(
                        {"result": None, "error": "".join(f"[EINVAL] {a}: {m}\n" for a, m, _ in e.triples)}
                    )
                except CallError as e:
                    out.append({"result": None, "error": f"[{e.errname}] {e.message}"})
            return self._job("core.bulk", "SUCCESS", result=out)
        return self.methods[method](*params)

    def _job(self, method: str, state: str, *, result=None, error=None, exc_info=None) -> int:
        job_id = next(self._job_ids)
        self._jobs[job_id] = {
            "id": job_id,
            "method": method,
            "state": state,
            "result": result,
            "error": error,
            "exc_info": exc_info,
            "progress": {"percent": 100},
        }
        return job_id

    def add_job(self, method: str, state: str, **kw) -> int:
        return self._job(method, state, **kw)


@pytest.fixture
def stub_nas():
    made: list[StubNAS] = []

    def make(**kw) -> StubNAS:
        s = StubNAS(**kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@dataclass
class TLSFiles:
    ca_pem: str
    cert_pem: str
    key_pem: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_pem, self.key_pem)
        # TLS 1.2 only: with TLS 1.3 the client's first request can ride along with its Finished message,
        # and CPython 3.11's asyncio SSL server occasionally never hands those bytes to websockets (the
        # connection then sits until the server's 10 s open timeout). Not a client bug; see the report.
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TLSFiles:
    """A private CA and a 127.0.0.1/localhost server certificate it signed (cryptography)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netprov test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "truenas.local")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = d / "ca.pem", d / "cert.pem", d / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TLSFiles(str(ca_pem), str(cert_pem), str(key_pem))
