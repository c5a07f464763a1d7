"""TrueNAS middleware API client: one persistent, authenticated websocket.

Speaks both wire protocols of the middleware (middleware TS-25.04.2.4 src/middlewared/middlewared/main.py:233
``/api/<version>``, main.py:1394 ``/websocket``):

* JSON-RPC 2.0 at ``/api/current`` (or a pinned ``/api/vX``), TrueNAS 25.04 and later;
* the legacy DDP-like protocol at ``/websocket``, FreeNAS 11.3, CORE 12/13, SCALE <= 24.10
  (still served later).

A bare ``wss://host`` (or ``probe=True``) tries ``/api/current`` first and falls back to
``/websocket`` when the handshake is answered with an HTTP status instead of an upgrade.

Design:

* one ``websockets`` sync connection per :meth:`TrueNASClient.connect`; a daemon reader thread
  owns ``recv()`` and hands each reply to the caller waiting on its id, so calls from any number
  of threads, and the pipelined :meth:`TrueNASClient.call_many`, share the socket;
* a semaphore caps calls in flight at ``max_inflight`` (<= 20, the middleware's per-connection
  limit). A slot is freed only when the NAS answers (or the socket dies), never on a client-side
  timeout, so the NAS never sees more than ``max_inflight`` outstanding calls;
* waiting follows the work: a call waits while the NAS shows signs of life (any message, or a pong to
  the keepalive ping the client sends every ``timeout``/4 s while calls are outstanding) and fails
  after ``timeout`` s of silence or ``max_wait`` overall; a job waits while its state or progress
  moves (:meth:`TrueNASClient.wait_job`). Every timeout says the NAS may still be working and that a
  rerun is safe;
* every answer is checked before anyone reads it: a message that is not JSON, a binary frame, a reply
  to an id never sent, JSON nested too deeply or a message over ``MAX_ANSWER_BYTES`` fails every
  outstanding call at once and closes the connection; an answer of the wrong shape (every field
  netprov reads, :func:`netprov.adapters.truenas.normalise.answer_problem`) fails its call with
  :class:`BadAnswerError`;
* every failure becomes a :mod:`netprov.errors` exception with a one-line message that names the
  method. Call parameters (which may hold CHAP secrets) and credentials never reach a message or a
  log line; secret-looking parameter values and credentials are also scrubbed from any text the
  NAS sends back.

This module is the only place that imports ``websockets``/``ssl`` for TrueNAS; nothing above the
adapter layer sees their exceptions.
"""

from __future__ import annotations

import collections
import errno as errno_mod
import hashlib
import inspect
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

import websockets.exceptions as wsexc
from pydantic import SecretStr
from websockets.sync.client import connect as _ws_connect

from netprov.adapters.known_nas import Pin, describe, format_fingerprint
from netprov.adapters.truenas.normalise import answer_problem
from netprov.core.net import is_loopback
from netprov.core.secrets import mask_secrets
from netprov.core.text import one_line
from netprov.errors import (
    ApiError,
    ApiValidationError,
    AuthError,
    BadAnswerError,
    CallTimeout,
    ConnectError,
    MethodNotFound,
    RemoteError,
    TLSVerifyError,
)

__all__ = [
    "Credentials",
    "TrueNASClient",
    "MAX_INFLIGHT",
    "MAX_MESSAGE_BYTES",
    "MAX_ANSWER_BYTES",
    "plan_bulk_chunks",
    "fetch_certificate",
]

logger = logging.getLogger("netprov.truenas")
# websockets logs a connection that dies mid-read ("unexpected internal error", with a traceback) at
# ERROR; netprov reports that failure itself, in one line. Without this handler Python's last-resort
# handler would print the library's traceback to stderr too (seen by the fault matrix, ~1 in 100 drops).
# With --debug the root handler still shows it.
logging.getLogger("websockets").addHandler(logging.NullHandler())
# websockets logs every frame's payload at DEBUG, and payloads carry API keys, passwords and CHAP
# secrets. Its logger is pinned at INFO so that turning on debug logging never writes them out.
_wire_logger = logging.getLogger("netprov.truenas.wire")
_wire_logger.setLevel(logging.INFO)

#: Calls the middleware admits per connection: SoftHardSemaphore(10, 20), middleware TS-25.04.2.4
#: src/middlewared/middlewared/api/base/server/ws_handler/rpc.py:46 (apps/websocket_app.py:56 for /websocket).
MAX_INFLIGHT = 20
#: The middleware closes the socket (1009) on an authenticated message over 64 KiB: middleware TS-25.04.2.4
#: src/middlewared/middlewared/utils/limits.py:19 (MsgSizeLimit.AUTHENTICATED = 65536), :34 (MESSAGE_TOO_BIG).
MAX_MESSAGE_BYTES = 64 * 1024
#: The largest message netprov accepts from the NAS (websockets' ``max_size``); a bigger one closes the
#: connection with one line instead of filling memory. Measured on the simulator: the answer to
#: netprov's pool.dataset.query for 10,000 zvols is 12.0 MB with netprov's ``select`` (25.04 profile;
#: 7.6 MB on 13) and 28 MB without it (a NAS that ignores ``select``). 64 MiB is five times the first and
#: more than twice the second, and still refuses the 150 MB answer of issue 10.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: A call with no answer yet is allowed to run this many times ``timeout`` while the NAS shows it is
#: alive (answers keepalive pings) — unless ``max_wait`` says otherwise.
CALL_LIMIT_FACTOR = 10
#: Said with every timeout: the NAS may have carried the call out, and netprov reads before it writes.
RERUN_SAFE = "it may still be working on it; running the command again is safe (netprov reads the NAS first)"

# Middleware errnos (ErrnoMixin): ENOMETHOD = 201 in middleware TN-13.0-U6.1
# src/middlewared/middlewared/client/client.py:206; ENOTAUTHENTICATED is raised at TS-25.04.2.4
# src/middlewared/middlewared/main.py:866, its value 207 is in truenas_api_client (a separate repository since
# 24.10): not found in the middleware source; observed: 207 in "Not authenticated" errors.
ENOMETHOD = 201
ENOTAUTHENTICATED = 207
EACCES = errno_mod.EACCES
EBUSY = errno_mod.EBUSY

# JSON-RPC error codes: -32601/-32602 are JSON-RPC 2.0's; middleware TS-25.04.2.4
# src/middlewared/middlewared/api/base/server/ws_handler/rpc.py:116 (INVALID_PARAMS), :313 (METHOD_NOT_FOUND),
# :326 (TRUENAS_TOO_MANY_CONCURRENT_CALLS), :339 (TRUENAS_CALL_ERROR); the -32000/-32001 values are in
# truenas_api_client/jsonrpc.py, not in the middleware source; observed: -32001 with every CallError.
JSONRPC_METHOD_NOT_FOUND = -32601
JSONRPC_INVALID_PARAMS = -32602
JSONRPC_TOO_MANY_CALLS = -32000

_JOB_DONE = {"SUCCESS", "FAILED", "ABORTED"}
_SECRET_KEY = re.compile(r"secret|passw|api_?key|token|private|otp", re.IGNORECASE)
_REASON_PREFIX = re.compile(r"^\[E[A-Z0-9_]*\]\s*")
_VALIDATION_LINE = re.compile(r"^\[(E[A-Z0-9_]+)\]\s+([\w\-\[\]*]+(?:\.[\w\-\[\]*]+)+):\s*(.+)$")
_MAX_REASON = 400
_HAS_LEGACY_FLAG = "legacy" in inspect.signature(_ws_connect).parameters


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def _secret(value: Any) -> SecretStr | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value
    if hasattr(value, "get_secret_value"):
        return SecretStr(value.get_secret_value())
    return SecretStr(str(value))


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to log in: an API key, or a username and password.

    Secrets are held as :class:`pydantic.SecretStr` (plain ``str`` is converted), so ``repr`` and
    ``str`` mask them. ``username`` may accompany an API key; it is used only for
    ``auth.login_ex`` on servers that no longer offer ``auth.login_with_api_key`` (27+).
    """

    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_key", _secret(self.api_key))
        object.__setattr__(self, "password", _secret(self.password))
        if self.api_key is None and not (self.username and self.password is not None):
            raise ValueError("Credentials need an api_key, or a username and a password")

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.api_key, self.password) if s is not None]

    def __repr__(self) -> str:
        parts = []
        if self.api_key is not None:
            parts.append("api_key='**********'")
        if self.username is not None:
            parts.append(f"username={self.username!r}")
        if self.password is not None:
            parts.append("password='**********'")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _collect_secrets(obj: Any, out: list[str], key: str = "") -> None:
    """Values under secret-looking keys (CHAP secret, password, key...) anywhere in ``obj``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _collect_secrets(v, out, str(k))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_secrets(v, out, key)
    elif isinstance(obj, str) and key and _SECRET_KEY.search(key) and len(obj) >= 4:
        out.append(obj)
    elif hasattr(obj, "get_secret_value"):
        v = obj.get_secret_value()
        if isinstance(v, str) and len(v) >= 4:
            out.append(v)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    return mask_secrets(text, secrets, patterns=False)


def _plain(obj: Any) -> Any:
    """Make params JSON-serialisable: tuples→lists, SecretStr→its value (never logged)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "get_secret_value"):
        return obj.get_secret_value()
    return obj


def _norm_triples(extra: Any) -> list[tuple[str, str, int | None]]:
    out: list[tuple[str, str, int | None]] = []
    if not isinstance(extra, list):
        return out
    for item in extra:
        if isinstance(item, (list, tuple)) and len(item) >= 2:
            attr = item[0]
            msg = item[1]
            code = item[2] if len(item) > 2 and isinstance(item[2], int) else None
            out.append(("" if attr is None else str(attr), one_line(msg, 200), code))
    return out


def _parse_validation_text(text: str) -> list[tuple[str, str, int | None]] | None:
    """Turn ``str(ValidationErrors)`` (``[EINVAL] attr: msg`` per line) back into triples."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return None
    out = []
    for ln in lines:
        m = _VALIDATION_LINE.match(ln)
        if not m:
            return None
        code = getattr(errno_mod, m.group(1), None)
        out.append((m.group(2), one_line(m.group(3), 200), code if isinstance(code, int) else None))
    return out


def _envelope(protocol: str, call_id: Any, method: str, params: list) -> dict:
    if protocol == "legacy":
        return {"msg": "method", "id": call_id, "method": method, "params": params}
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def plan_bulk_chunks(
    method: str, items: Sequence[Any], *, protocol: str = "jsonrpc", limit: int = MAX_MESSAGE_BYTES
) -> tuple[list[list[int]], list[int]]:
    """Split ``items`` (each a params list) into ``core.bulk`` calls whose messages stay under ``limit``.

    Returns ``(chunks, too_large)``: chunks are lists of item indexes in input order, packed
    greedily; ``too_large`` lists the items that cannot fit in any message on their own. The size
    counted is the exact serialised envelope (with room for a 12-character id).
    """
    overhead = len(_dumps(_envelope(protocol, "n" + "9" * 11, "core.bulk", [method, []])).encode())
    budget = limit - 1
    chunks: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    size = overhead
    for i, item in enumerate(items):
        alone = len(_dumps(item).encode())
        if overhead + alone > budget:
            too_large.append(i)
            continue
        if current and size + 1 + alone > budget:
            chunks.append(current)
            current, size = [], overhead
        size += alone + (1 if current else 0)  # a comma separates items
        current.append(i)
    if current:
        chunks.append(current)
    return chunks, too_large


# --------------------------------------------------------------------------------------------
# Pinned certificates (netprov trust; docs/troubleshooting.md)
# --------------------------------------------------------------------------------------------


class _PinMismatch(OSError):
    """The NAS presented a certificate other than the pinned one (raised inside the TLS handshake)."""

    def __init__(self, der: bytes) -> None:
        super().__init__("the NAS's certificate is not the pinned one")
        self.der = der


def _pinned_context(pin: Pin) -> ssl.SSLContext:
    """A client context that accepts exactly the pinned certificate, and nothing else.

    No CA vouches for a self-signed certificate, so chain and host-name checks are off; instead the
    peer's DER certificate is hashed as soon as the handshake completes, inside ``wrap_socket``, and a
    mismatch closes the socket there: websockets has not sent its HTTP upgrade yet, and no credential
    is ever sent. TLS itself proves the peer holds the pinned certificate's private key.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    expected = pin.sha256

    class PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            der = self.getpeercert(binary_form=True) or b""
            if hashlib.sha256(der).digest() != expected:
                raise _PinMismatch(der)

    ctx.sslsocket_class = PinnedSocket
    return ctx


def fetch_certificate(url: str, *, timeout: float = 30.0) -> bytes:
    """The DER certificate the NAS at ``url`` presents (``netprov trust``). Only a TLS handshake: no
    HTTP request, no credential; nothing is verified (the caller shows the fingerprint to the user)."""
    raw = url.strip()
    if "://" not in raw:
        raw = "wss://" + raw
    parts = urlsplit(raw)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme.lower(), parts.scheme.lower())
    host = parts.hostname or ""
    if scheme != "wss" or not host:
        raise ConnectError(f"{one_line(url, 120)} is not a wss:// URL: there is no TLS certificate to trust")
    try:
        port = parts.port or 443
    except ValueError:
        raise ConnectError(f"{one_line(url, 120)} has an invalid port") from None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as e:
        raise ConnectError(f"TLS handshake with {host}:{port} failed ({e.reason or e}): is it a wss:// URL?") from None
    except (OSError, TimeoutError) as e:
        raise ConnectError(f"cannot reach {host}:{port}: {one_line(e, 200) or type(e).__name__}") from None
    if not der:
        raise ConnectError(f"{host}:{port} presented no TLS certificate")
    return der


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Pending:
    method: str
    params: Any  # the call's params: the answer check reads the query options; secrets are scrubbed from them
    event: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Any = None  # the raw error object from the NAS
    sent: float = 0.0  # time.monotonic() when the call was sent
    dropped: str | None = None  # set when the socket died before the reply
    violation: str | None = None  # set when the NAS broke the protocol (the connection is then closed)
    abandoned: bool = False  # caller timed out; reply (if any) is discarded


class TrueNASClient:
    """A logged-in session with a TrueNAS/FreeNAS middleware. Create with :meth:`connect`."""

    def __init__(
        self, *, creds: Credentials, timeout: float, max_inflight: int, max_wait: float | None = None
    ) -> None:
        self._creds = creds
        #: Seconds a call may go without a sign of life from the NAS, and a job without progress.
        self.timeout = float(timeout)
        #: Overall limit on one call or one job, however alive the NAS is (None: a call gets
        #: ``CALL_LIMIT_FACTOR`` x ``timeout``; a job that keeps making progress is waited for).
        self.max_wait = None if max_wait is None else float(max_wait)
        #: Keepalive ping period while calls are outstanding (a pong is a sign of life).
        self.ping_every = min(max(self.timeout / 4, 0.05), 10.0)
        self._heard = time.monotonic()  # when the NAS last sent anything (a message or a pong)
        self.max_inflight = max(1, min(int(max_inflight), MAX_INFLIGHT))
        self.protocol: str = ""
        self.version: str = ""
        self.url: str = ""
        self.host: str = ""
        self.round_trips: collections.Counter[str] = collections.Counter()
        #: Highest number of calls simultaneously awaiting a reply (for tests and benchmarks).
        self.peak_inflight = 0
        self._ws: Any = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: dict[Any, _Pending] = {}
        self._pings: dict[str, threading.Event] = {}
        self._slots = threading.BoundedSemaphore(self.max_inflight)
        self._ids = itertools.count(1)
        self._closed = False
        self._close_reason = ""
        self._violation = ""   # set when netprov closed the connection because the NAS broke the protocol
        self._keeper: threading.Thread | None = None
        self._pin: Pin | None = None
        self._trust_command = "netprov trust STORAGE INVENTORY"

    # ---------------------------------------------------------------- connect / close

    @classmethod
    def connect(
        cls,
        url: str,
        creds: Credentials,
        *,
        ca_file: str | None = None,
        insecure: bool = False,
        timeout: float = 30.0,
        max_inflight: int = MAX_INFLIGHT,
        probe: bool = False,
        max_wait: float | None = None,
        pin: Pin | None = None,
        trust_command: str = "netprov trust STORAGE INVENTORY",
    ) -> "TrueNASClient":
        """Open, (for legacy) handshake, log in and read ``system.version``.

        ``url``: ``wss://host/api/current`` (JSON-RPC), ``wss://host/websocket`` (legacy), or a
        bare ``wss://host`` to probe. ``http(s)://`` is accepted as ``ws(s)://``.

        ``timeout``: how long a call may go without any sign of life from the NAS (no answer, no
        keepalive pong), and how long a job may go without progress. ``max_wait``: an overall limit on
        one call or job (default: ``CALL_LIMIT_FACTOR`` x ``timeout`` for a call, none for a job that
        keeps progressing).

        ``pin``: the certificate pinned for this NAS (:mod:`netprov.adapters.known_nas`): the NAS must
        present exactly it, checked before anything is sent; another one is refused loudly. ``insecure``
        overrides it. ``trust_command``: how messages tell the user to (re)pin (``netprov trust ...``).
        """
        if not isinstance(creds, Credentials):
            raise TypeError("creds must be a netprov.adapters.truenas.rpc.Credentials")
        self = cls(creds=creds, timeout=timeout, max_inflight=max_inflight, max_wait=max_wait)
        self._pin = None if insecure else pin
        self._trust_command = trust_command
        candidates, ssl_ctx, host = self._plan_urls(url, probe=probe, ca_file=ca_file, insecure=insecure)
        self.host = host
        try:
            self._open(candidates, ssl_ctx)
            self._login()
            self.version = str(self.call("system.version"))
        except BaseException:
            self.close()
            raise
        logger.debug("connected to %s (%s, %s)", self.host, self.protocol, self.version)
        return self

    def _plan_urls(
        self, url: str, *, probe: bool, ca_file: str | None, insecure: bool
    ) -> tuple[list[str], ssl.SSLContext | None, str]:
        raw = url.strip()
        if "://" not in raw:
            raw = "wss://" + raw
        parts = urlsplit(raw)
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme.lower(), parts.scheme.lower())
        if scheme not in ("ws", "wss"):
            raise ConnectError(f"unsupported TrueNAS URL scheme {parts.scheme!r}: use wss://HOST")
        host = parts.hostname or ""
        if not host:
            raise ConnectError("TrueNAS URL has no host name: use wss://HOST")
        netloc = parts.netloc.rsplit("@", 1)[-1]  # never carry userinfo into a URL we print
        if self._creds.api_key is not None and scheme == "ws" and not is_loopback(host):
            raise ConnectError(
                f"refusing to send an API key over unencrypted ws:// to {host}: use wss://{netloc} "
                "(TrueNAS 25.04+ revokes API keys that cross plain ws://)"
            )
        path = parts.path.rstrip("/")
        base = urlunsplit((scheme, netloc, "", "", ""))
        if probe or not path:
            candidates = [base + "/api/current", base + "/websocket"]
        else:
            candidates = [urlunsplit((scheme, netloc, path, parts.query, ""))]

        ctx = None
        if scheme == "wss":
            if insecure:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                msg = (
                    f"TLS certificate verification is disabled for {host} (insecure): "
                    "anyone on the path can read and alter this session"
                )
                warnings.warn(msg, stacklevel=3)
                logger.warning(msg)
            elif self._pin is not None:
                ctx = _pinned_context(self._pin)
            else:
                try:
                    ctx = ssl.create_default_context(cafile=ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise TLSVerifyError(
                        f"cannot load CA file {ca_file!r} to verify {host}: {e.strerror or e}"
                    ) from None
        return candidates, ctx, host

    def _open(self, candidates: list[str], ctx: ssl.SSLContext | None) -> None:
        for i, candidate in enumerate(candidates):
            last = i == len(candidates) - 1
            try:
                kwargs: dict[str, Any] = dict(
                    ssl=ctx,
                    open_timeout=self.timeout,
                    max_size=MAX_ANSWER_BYTES,
                    compression=None,
                    # No websockets keepalive: it would kill a connection whose pong waits behind a large
                    # answer or a busy NAS. netprov pings itself while calls are outstanding and counts
                    # anything the NAS sends as a sign of life (_keepalive, _wait).
                    ping_interval=None,
                    close_timeout=2,
                    user_agent_header="netprov",
                    logger=_wire_logger,
                )
                if _HAS_LEGACY_FLAG:
                    kwargs["legacy"] = True
                self._ws = _ws_connect(candidate, **kwargs)
            except wsexc.InvalidStatus as e:
                status = e.response.status_code
                if not last:
                    logger.debug("%s answered HTTP %s; trying the next endpoint", candidate, status)
                    continue
                where = urlsplit(candidate).path
                raise ConnectError(
                    f"{self.host} refused the websocket upgrade on {where} (HTTP {status}): "
                    "is this a TrueNAS API endpoint? use wss://HOST/api/current (25.04+), "
                    "wss://HOST/websocket (older), or wss://HOST to probe"
                ) from None
            except _PinMismatch as e:
                raise TLSVerifyError(self._changed_message(e.der)) from None
            except ssl.SSLCertVerificationError as e:
                raise TLSVerifyError(
                    f"TLS certificate of {self.host} could not be verified ({e.verify_message or e.reason}); "
                    f"nothing was sent to it. A fresh TrueNAS serves a self-signed certificate: check its "
                    f"fingerprint and pin it with `{self._trust_command}`, or pass the CA certificate that "
                    "signed it with --ca-file, or (unsafe) skip verification with --insecure; see "
                    "docs/troubleshooting.md"
                ) from None
            except ssl.SSLError as e:
                raise ConnectError(
                    f"TLS handshake with {self.host} failed ({e.reason or e}): check the URL scheme and port"
                ) from None
            except (TimeoutError, wsexc.InvalidHandshake, wsexc.InvalidURI, OSError, EOFError) as e:
                raise ConnectError(
                    f"cannot reach TrueNAS at {self.host}: {one_line(e, 200) or type(e).__name__}"
                ) from None
            self.url = candidate
            break
        self.protocol = "legacy" if urlsplit(self.url).path.rstrip("/").endswith("/websocket") else "jsonrpc"
        if self.protocol == "legacy":
            self._legacy_handshake()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"netprov-truenas-{self.host}", daemon=True
        )
        self._reader.start()
        self._keeper = threading.Thread(
            target=self._keepalive, name=f"netprov-truenas-ping-{self.host}", daemon=True
        )
        self._keeper.start()

    def _changed_message(self, der: bytes) -> str:
        pin = self._pin
        assert pin is not None
        new = describe(der)
        was = f" ({pin.comment})" if pin.comment else ""
        return (
            f"the TLS certificate of {self.host} ({pin.key}) CHANGED and does not match the pinned one; "
            f"nothing was sent to it. Pinned: {format_fingerprint(pin.sha256)}{was}; presented now: "
            f"{new.fingerprint} ({new.summary()}). Someone may be intercepting the connection, or the NAS's "
            f"certificate was replaced (a new certificate, a reinstall). Check the fingerprint on the NAS "
            f"itself (docs/troubleshooting.md), then pin the new one with `{self._trust_command}`"
        )

    def _keepalive(self) -> None:
        """While calls are outstanding, ping every ``ping_every`` s; a pong proves the NAS alive."""
        while not self._closed:
            with self._lock:
                busy = bool(self._pending)
            if not busy:
                time.sleep(self.ping_every)
                continue
            try:
                pong = self._ws.ping()
            except Exception:  # noqa: BLE001 - a closed socket: the reader reports it
                return
            # A pong is counted however late it comes (a frozen NAS sends none: calls then time out).
            if pong.wait(self.timeout):
                self._heard = time.monotonic()
                time.sleep(self.ping_every)

    def _legacy_handshake(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            self._ws.send(_dumps({"msg": "connect", "version": "1", "support": ["1"]}))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                msg = json.loads(self._ws.recv(timeout=remaining))
                kind = msg.get("msg") if isinstance(msg, dict) else None
                if kind == "connected":
                    return
                if kind == "failed":
                    raise ConnectError(f"{self.host} refused the legacy websocket protocol (version 1)")
        except TimeoutError:
            raise ConnectError(
                f"{self.host} did not answer the legacy websocket handshake within {self.timeout:g} s"
            ) from None
        except wsexc.ConnectionClosed as e:
            raise ConnectError(
                f"{self.host} closed the connection during the handshake{self._close_detail(e)}"
            ) from None
        except ValueError:
            raise ConnectError(
                f"{self.host} sent a non-JSON handshake reply: not a TrueNAS endpoint?"
            ) from None

    def close(self) -> None:
        """Close the socket; pending calls fail with :class:`ConnectError`. Idempotent."""
        with self._lock:
            already = self._closed
            self._closed = True
            if not self._close_reason:
                self._close_reason = "the client closed the connection"
        ws = self._ws
        if ws is not None and not already:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        self._fail_all(self._close_reason)

    def __enter__(self) -> "TrueNASClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<TrueNASClient {self.host} {self.protocol} {self.version or '?'}>"

    # ---------------------------------------------------------------- login

    def _login(self) -> None:
        c = self._creds
        if c.api_key is not None:
            key = c.api_key.get_secret_value()
            try:
                ok = self.call("auth.login_with_api_key", key)
            except MethodNotFound:
                # FreeNAS 11.3 has no API keys; TrueNAS 27+ drops login_with_api_key for login_ex,
                # which needs the key's username.
                no_keys = AuthError(
                    f"{self.host} offers no API-key login this client can use: FreeNAS 11.3 has no API "
                    "keys (use a username and password); TrueNAS 27+ also needs the API key's username"
                )
                if not c.username:
                    raise no_keys from None
                try:
                    resp = self.call(
                        "auth.login_ex",
                        {"mechanism": "API_KEY_PLAIN", "username": c.username, "api_key": key},
                    )
                except MethodNotFound:
                    raise no_keys from None
                self._check_login_ex(resp, what=f"API key of user {c.username!r}")
                return
            if ok is not True:
                raise AuthError(
                    f"{self.host} refused the API key (auth.login_with_api_key): "
                    "check that it is correct and not expired or revoked"
                )
            return
        password = c.password.get_secret_value() if c.password is not None else ""
        if self.protocol == "jsonrpc":
            try:
                resp = self.call(
                    "auth.login_ex",
                    {"mechanism": "PASSWORD_PLAIN", "username": c.username, "password": password},
                )
            except MethodNotFound:
                pass
            else:
                self._check_login_ex(resp, what=f"password of user {c.username!r}")
                return
        ok = self.call("auth.login", c.username, password)
        if ok is not True:
            raise AuthError(f"{self.host} refused the username/password for user {c.username!r} (auth.login)")

    def _check_login_ex(self, resp: Any, *, what: str) -> None:
        kind = resp.get("response_type") if isinstance(resp, dict) else None
        if kind == "SUCCESS":
            return
        hints = {
            "OTP_REQUIRED": "the account requires a one-time password, which netprov does not support: "
            "use an API key",
            "EXPIRED": "the credentials have expired (an API key sent over plain ws:// is revoked by 25.04+)",
            "REDIRECT": "log in to the active storage controller instead"
            + (f" ({', '.join(map(str, resp.get('urls') or []))})" if isinstance(resp, dict) else ""),
        }
        raise AuthError(
            f"{self.host} refused the {what} (auth.login_ex: {kind or 'unexpected reply'})"
            + (f": {hints[kind]}" if kind in hints else "")
        )

    # ---------------------------------------------------------------- calls

    def call(
        self, method: str, *params: Any, timeout: float | None = None, resource: str | None = None
    ) -> Any:
        """Call ``method`` with positional ``params``; return its result or raise a RemoteError.

        Without ``timeout`` the call waits while the NAS shows signs of life (see :meth:`connect`);
        an explicit ``timeout`` is a hard limit on this call."""
        t, limit = self._limits(timeout)
        start = time.monotonic()
        pending = self._submit(method, params, t, limit, start)
        return self._wait(pending, t, limit, start, resource)

    def _limits(self, timeout: float | None) -> tuple[float, float]:
        """(silence allowed, overall limit) for one call."""
        if timeout is not None:
            return float(timeout), float(timeout)
        if self.max_wait is not None:
            return self.timeout, max(self.max_wait, self.timeout)
        return self.timeout, self.timeout * CALL_LIMIT_FACTOR

    def query(
        self,
        namespace: str,
        filters: Sequence[Any] | None = None,
        *,
        select: Sequence[Any] | None = None,
        order_by: Sequence[str] | None = None,
        get: bool = False,
        limit: int | None = None,
        offset: int | None = None,
        count: bool = False,
        extra: dict | None = None,
        timeout: float | None = None,
        resource: str | None = None,
    ) -> Any:
        """``<namespace>.query(filters, options)`` sending only the options that are set (filter_list: middleware
        TS-25.04.2.4 src/middlewared/middlewared/utils/__init__.py:584)."""
        method = namespace if namespace.endswith(".query") else namespace + ".query"
        options: dict[str, Any] = {}
        if select:
            options["select"] = list(select)
        if order_by:
            options["order_by"] = list(order_by)
        if count:
            options["count"] = True
        if get:
            options["get"] = True
        if limit:
            options["limit"] = int(limit)
        if offset:
            options["offset"] = int(offset)
        if extra:
            options["extra"] = dict(extra)
        return self.call(method, list(filters or []), options, timeout=timeout, resource=resource)

    def call_many(self, calls: Iterable[Sequence[Any]], *, timeout: float | None = None) -> list[Any]:
        """Pipeline many calls on the one socket; return results in input order.

        Each item is ``(method, params_tuple)`` or ``(method, params_tuple, resource)``. At most
        ``max_inflight`` calls are outstanding at once; replies are matched by id. An item the NAS
        rejects yields its :class:`ApiError` (validation errors included) in place of a result
        instead of raising. :class:`ConnectError`, :class:`CallTimeout`, :class:`MethodNotFound`
        and :class:`AuthError` are raised (the first one, after every submitted call settled).
        """
        t, limit = self._limits(timeout)
        submitted: list[tuple[_Pending | ApiError, float, str | None]] = []
        for item in calls:
            method = item[0]
            raw = item[1] if len(item) > 1 else ()
            params = tuple(raw) if isinstance(raw, (list, tuple)) else (() if raw is None else (raw,))
            resource = item[2] if len(item) > 2 else None
            start = time.monotonic()
            try:
                submitted.append((self._submit(method, params, t, limit, start), start, resource))
            except ApiError as e:
                submitted.append((e, start, resource))
        results: list[Any] = []
        first_fatal: RemoteError | None = None
        for pending, start, resource in submitted:
            if isinstance(pending, ApiError):
                results.append(pending)
                continue
            try:
                results.append(self._wait(pending, t, limit, start, resource))
            except ApiError as e:
                results.append(e)
            except RemoteError as e:
                results.append(e)
                first_fatal = first_fatal or e
        if first_fatal is not None:
            raise first_fatal
        return results

    def ping(self, timeout: float | None = None) -> bool:
        """Round trip without side effects: legacy ``ping`` message, or ``core.ping`` on JSON-RPC."""
        t = self.timeout if timeout is None else float(timeout)
        if self.protocol != "legacy":
            return self.call("core.ping", timeout=t) == "pong"
        pid = f"p{next(self._ids)}"
        ev = threading.Event()
        with self._lock:
            self._check_open("ping")
            self._pings[pid] = ev
        self._send_raw("ping", _dumps({"msg": "ping", "id": pid}))
        try:
            if not ev.wait(t):
                raise CallTimeout(f"ping: no pong from {self.host} within {t:g} s")
        finally:
            with self._lock:
                self._pings.pop(pid, None)
        if self._closed and not getattr(ev, "ponged", False):
            raise ConnectError(f"ping: connection to {self.host} dropped ({self._close_reason})")
        return True

    # ---------------------------------------------------------------- jobs / bulk

    def call_job(
        self, method: str, *params: Any, timeout: float | None = None, resource: str | None = None
    ) -> Any:
        """Call a job method and wait for the job (see :meth:`wait_job`; ``timeout`` as there)."""
        job_id = self.call(method, *params, resource=resource)
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            return job_id  # 25.10+ new-style jobs answer with the result itself
        return self.wait_job(job_id, timeout, method=method, resource=resource)

    def wait_job(
        self,
        job_id: int,
        timeout: float | None = None,
        *,
        method: str | None = None,
        resource: str | None = None,
        max_wait: float | None = None,
    ) -> Any:
        """Poll ``core.get_jobs`` until job ``job_id`` ends; return its result or raise.

        The job is waited for as long as it makes progress: it times out only when its state and
        progress (percent, description) stay the same for ``timeout`` s (default: the client's), or
        when it runs longer than ``max_wait`` s overall (default: the client's ``max_wait``, else no
        limit)."""
        t = self.timeout if timeout is None else float(timeout)
        limit = self.max_wait if max_wait is None else float(max_wait)
        start = last_change = time.monotonic()
        delay = 0.02
        state, seen = "unknown", None
        where = f" ({resource})" if resource else ""
        while True:
            jobs = self.call("core.get_jobs", [["id", "=", job_id]])
            if not jobs:
                raise ApiError(
                    method or "core.get_jobs",
                    f"{method or 'job'}: job {job_id} not found on {self.host}",
                    resource=resource,
                )
            job = jobs[0]
            method = method or job.get("method") or "job"
            state = job.get("state") or "unknown"
            if state == "SUCCESS":
                return job.get("result")
            if state in _JOB_DONE:
                raise self._job_error(method, job_id, job, resource)
            progress = job.get("progress") or {}
            now = time.monotonic()
            mark = (state, progress.get("percent"), progress.get("description"))
            if mark != seen:
                seen, last_change = mark, now
            pct = progress.get("percent")
            done = f", {pct:g}% done" if isinstance(pct, (int, float)) else ""
            if now - last_change >= t:
                raise CallTimeout(
                    f"{method}{where}: job {job_id} on {self.host} made no progress for {t:g} s "
                    f"(still {state}{done}); {RERUN_SAFE}"
                )
            if limit is not None and now - start >= limit:
                raise CallTimeout(
                    f"{method}{where}: job {job_id} on {self.host} did not finish within {limit:g} s "
                    f"(still {state}{done}); {RERUN_SAFE}"
                )
            pause = min(delay, t / 4, last_change + t - now)
            if limit is not None:
                pause = min(pause, start + limit - now)
            time.sleep(max(0.0, pause))
            delay = min(delay * 2, 0.5)

    def _job_error(self, method: str, job_id: int, job: dict, resource: str | None) -> ApiError:
        exc_info = job.get("exc_info") or {}
        where = f"{method}" + (f" ({resource})" if resource else "")
        if exc_info.get("type") == "VALIDATION":
            triples = _norm_triples(exc_info.get("extra"))
            if triples:
                return self._validation_error(method, triples, resource, secrets=[])
        if job.get("state") == "ABORTED":
            return ApiError(method, f"{where}: job {job_id} was aborted on {self.host}", resource=resource)
        reason = self._clean_reason(job.get("error") or "job failed", [])
        code = exc_info.get("errno") if isinstance(exc_info.get("errno"), int) else None
        return ApiError(method, f"{where}: job {job_id} failed: {reason}", errno=code, resource=resource)

    def bulk(
        self, method: str, params_list: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> list[Any]:
        """Run ``method`` once per params tuple through ``core.bulk`` jobs.

        Items are packed greedily into ``core.bulk`` calls whose messages stay under 64 KiB, run
        one after another (in input order). Returns, in input order, each item's result or an
        :class:`ApiError` (an :class:`ApiValidationError` when the NAS's flattened error text is a
        list of ``[ERRNO] attribute: message`` lines). Each chunk's job is waited for while it
        makes progress (``timeout``: the longest pause in its progress, see :meth:`wait_job`).
        """
        items = [_plain(list(p)) for p in params_list]
        results: list[Any] = [None] * len(items)
        chunks, too_large = plan_bulk_chunks(method, items, protocol=self.protocol)
        for i in too_large:
            results[i] = ApiError(
                method,
                f"{method}: bulk item {i} is {len(_dumps(items[i]).encode())} bytes, "
                "over the NAS's 64 KiB message limit",
            )
        for chunk in chunks:
            out = self.call_job("core.bulk", method, [items[i] for i in chunk], timeout=timeout)
            if not isinstance(out, list) or len(out) != len(chunk):
                raise ApiError(method, f"core.bulk({method}): unexpected job result from {self.host}")
            for i, entry in zip(chunk, out, strict=True):
                err = entry.get("error") if isinstance(entry, dict) else None
                if err:
                    secrets: list[str] = []
                    _collect_secrets(items[i], secrets)
                    triples = _parse_validation_text(err)
                    if triples:
                        results[i] = self._validation_error(method, triples, None, secrets)
                    else:
                        results[i] = ApiError(method, f"{method}: {self._clean_reason(err, secrets)}")
                else:
                    res = entry.get("result") if isinstance(entry, dict) else entry
                    problem = answer_problem(method, items[i], res)
                    results[i] = res if problem is None else BadAnswerError(
                        method, f"{method}: {self.host} sent a bulk item result netprov cannot use: {problem}"
                    )
        return results

    # ---------------------------------------------------------------- plumbing

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ConnectError(f"{method}: connection to {self.host} is closed ({self._close_reason})")

    def _submit(self, method: str, params: tuple, t: float, limit: float, start: float) -> _Pending:
        n = next(self._ids)
        call_id: Any = f"n{n}" if self.protocol == "legacy" else n
        data = _dumps(_envelope(self.protocol, call_id, method, _plain(list(params))))
        if len(data.encode()) >= MAX_MESSAGE_BYTES:
            raise ApiError(
                method,
                f"{method}: request is {len(data.encode())} bytes, over the NAS's 64 KiB "
                "message limit (use bulk() or smaller batches)",
            )
        self._check_open(method)
        # A slot frees when the NAS answers a call: wait for one while the NAS shows signs of life.
        while not self._slots.acquire(
            timeout=min(self.ping_every, max(0.0, self._deadline(t, limit, start) - time.monotonic()))
        ):
            self._check_open(method)
            if time.monotonic() >= self._deadline(t, limit, start):
                raise CallTimeout(
                    f"{method}: {self.max_inflight} calls to {self.host} already in flight "
                    f"and none finished in time; {RERUN_SAFE}"
                )
        pending = _Pending(method, params, sent=time.monotonic())
        with self._lock:
            if self._closed:
                self._slots.release()
                raise ConnectError(f"{method}: connection to {self.host} is closed ({self._close_reason})")
            self._pending[call_id] = pending
            self.round_trips[method] += 1
            self.peak_inflight = max(self.peak_inflight, len(self._pending))
        logger.debug("call %s id=%s", method, call_id)
        self._send_raw(method, data, call_id)
        return pending

    def _deadline(self, t: float, limit: float, start: float) -> float:
        """When a call begun at ``start`` gives up: ``t`` s of silence from the NAS, or ``limit`` overall."""
        return min(max(start, self._heard) + t, start + limit)

    def _send_raw(self, method: str, data: str, call_id: Any = None) -> None:
        try:
            self._ws.send(data)
        except (wsexc.ConnectionClosed, OSError, RuntimeError) as e:
            detail = (
                self._close_detail(e) if isinstance(e, wsexc.ConnectionClosed) else f": {one_line(e, 120)}"
            )
            with self._lock:
                if call_id is not None and self._pending.pop(call_id, None) is not None:
                    self._slots.release()
                reason = self._violation
            if reason:
                # netprov itself closed it (the NAS broke the protocol): that is the cause to report
                raise ConnectError(f"{method}: connection to {self.host} is closed ({reason})") from None
            raise ConnectError(f"{method}: connection to {self.host} dropped while sending{detail}") from None

    def _wait(self, pending: _Pending, t: float, limit: float, start: float, resource: str | None) -> Any:
        retry_delay = 0.01
        where = f" ({resource})" if resource else ""
        while True:
            while not pending.event.is_set():
                now = time.monotonic()
                if now >= self._deadline(t, limit, pending.sent):
                    pending.abandoned = True
                    if now >= pending.sent + limit and max(pending.sent, self._heard) + t > now:
                        raise CallTimeout(
                            f"{pending.method}: no answer from {self.host} within {limit:g} s{where}; "
                            f"the NAS is still connected and {RERUN_SAFE}"
                        )
                    raise CallTimeout(
                        f"{pending.method}: no answer from {self.host} within {t:g} s{where}, and no sign of "
                        f"life from it meanwhile; {RERUN_SAFE}"
                    )
                pending.event.wait(min(self.ping_every, self._deadline(t, limit, pending.sent) - now))
            if pending.violation is not None:
                raise ConnectError(
                    f"{pending.method}: {pending.violation}; the call may or may not have been applied"
                )
            if pending.dropped is not None:
                raise ConnectError(
                    f"{pending.method}: connection to {self.host} dropped before the NAS "
                    f"answered ({pending.dropped}); the call may or may not have been applied"
                )
            if (
                pending.error is not None
                and self._is_too_many_calls(pending.error)
                and start + limit - time.monotonic() > retry_delay
            ):
                # The NAS refused to admit the call (its 20-call limit raced with our slot release); it
                # did not run, so sending it again is safe.
                logger.debug("%s refused %s: too many calls in flight; retrying", self.host, pending.method)
                time.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, 0.2)
                pending = self._submit(pending.method, pending.params, t, limit, start)
                continue
            if pending.error is not None:
                raise self._map_error(pending.method, pending.error, resource, pending.params)
            problem = answer_problem(pending.method, pending.params, pending.result)
            if problem is not None:
                raise BadAnswerError(
                    pending.method,
                    f"{pending.method}{where}: {self.host} sent an answer netprov cannot use: {problem}",
                    resource=resource,
                )
            return pending.result

    @staticmethod
    def _is_too_many_calls(error: Any) -> bool:
        if not isinstance(error, dict):
            return False
        return error.get("code") == JSONRPC_TOO_MANY_CALLS or error.get("error") == errno_mod.ETOOMANYREFS

    def _read_loop(self) -> None:
        reason = "connection closed"
        violation: str | None = None
        try:
            while True:
                raw = self._ws.recv()
                self._heard = time.monotonic()
                violation = self._handle(raw)
                if violation is not None:
                    break
        except wsexc.ConnectionClosed as e:
            if e.sent is not None and e.sent.code == 1009:  # websockets refused a message over max_size
                violation = (
                    f"{self.host} sent a message larger than {MAX_ANSWER_BYTES // 2**20} MiB, "
                    "netprov's limit for one answer"
                )
            else:
                reason = (
                    ("the NAS closed the connection" + self._close_detail(e))
                    if not self._closed
                    else self._close_reason
                )
        except Exception as e:  # noqa: BLE001 - the reader must never die silently
            reason = f"reader failed: {type(e).__name__}"
            logger.warning("truenas reader for %s stopped: %s", self.host, type(e).__name__)
        if violation is not None:
            self._violated(violation)
            return
        with self._lock:
            self._closed = True
            if not self._close_reason:
                self._close_reason = reason
        self._fail_all(self._close_reason)

    def _violated(self, what: str) -> None:
        """The NAS broke the protocol: no reply can be trusted to reach its call any more. Close the
        connection and fail every outstanding call at once with ``what`` (one line, no NAS text)."""
        logger.debug("closing the connection: %s", what)
        text = f"{what}; netprov closed the connection"
        with self._lock:
            already = self._closed
            self._closed = True
            self._violation = self._violation or text
            if not self._close_reason:
                self._close_reason = text
        self._fail_all(text, violation=True)
        if not already:
            try:
                self._ws.close(1002, "protocol error")
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
                pass

    @staticmethod
    def _close_detail(e: wsexc.ConnectionClosed) -> str:
        frame = e.rcvd or e.sent
        if frame is None:
            return " without a close frame"
        return f" (code {frame.code}{': ' + one_line(frame.reason, 120) if frame.reason else ''})"

    def _fail_all(self, reason: str, *, violation: bool = False) -> None:
        """Fail every outstanding call with ``reason``: its connection dropped, or (``violation``) the NAS
        broke the protocol. Wake every waiting ping."""
        with self._lock:
            pendings = list(self._pending.values())
            self._pending.clear()
            pings = list(self._pings.values())
        for p in pendings:
            if violation:
                p.violation = reason
            else:
                p.dropped = reason
            self._slots.release()
            p.event.set()
        for ev in pings:
            ev.set()

    def _handle(self, raw: str | bytes) -> str | None:
        """Route one message; return what is wrong with it when the NAS broke the protocol."""
        expected = "a JSON-RPC 2.0 message" if self.protocol != "legacy" else "a legacy-protocol JSON message"
        if isinstance(raw, (bytes, bytearray)):
            return f"{self.host} sent a binary frame of {len(raw)} bytes (expected {expected})"
        try:
            msg = json.loads(raw)
        except RecursionError:
            return f"{self.host} sent JSON nested too deeply to read (expected {expected})"
        except ValueError as e:
            return f"{self.host} sent a message that is not JSON ({one_line(e, 80)}; expected {expected})"
        if not isinstance(msg, dict):
            return f"{self.host} sent a JSON {type(msg).__name__} instead of an object (expected {expected})"
        if self.protocol == "legacy":
            kind = msg.get("msg")
            if kind == "result":
                return self._dispatch(msg.get("id"), msg.get("result"), msg.get("error"))
            elif kind == "ping":
                pong = {"msg": "pong"} | ({"id": msg["id"]} if "id" in msg else {})
                try:
                    self._ws.send(_dumps(pong))
                except Exception:  # noqa: BLE001 - the read loop notices a dead socket next
                    pass
            elif kind == "pong":
                with self._lock:
                    ev = self._pings.get(msg.get("id")) if isinstance(msg.get("id"), str) else None
                if ev is not None:
                    ev.ponged = True  # type: ignore[attr-defined]
                    ev.set()
            elif isinstance(kind, str):
                logger.debug("ignoring legacy %r message", kind)  # events, ready, nosub, ...
            else:
                return f"{self.host} sent a message without a 'msg' kind (expected {expected})"
            return None
        if "method" in msg:
            logger.debug("ignoring notification %r", msg.get("method"))
            return None
        if "id" in msg and ("result" in msg or "error" in msg):
            if msg["id"] is None:
                err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
                return (
                    f"{self.host} reported an error that belongs to no call "
                    f"(code {one_line(err.get('code'), 20)}: {one_line(err.get('message'), 80)})"
                )
            return self._dispatch(msg["id"], msg.get("result"), msg.get("error"))
        return f"{self.host} sent a message that is neither a reply nor a notification (expected {expected})"

    def _dispatch(self, call_id: Any, result: Any, error: Any) -> str | None:
        with self._lock:
            pending = self._pending.pop(call_id, None) if isinstance(call_id, (str, int)) else None
        if pending is None:
            shown = one_line(call_id, 40) if isinstance(call_id, (str, int)) else type(call_id).__name__
            return (
                f"{self.host} sent a reply for call id {shown}, which is not a call netprov is waiting for "
                "(a wrong or repeated id)"
            )
        self._slots.release()
        if pending.abandoned:
            logger.debug("late reply for %s id=%s after its timeout", pending.method, call_id)
        if error is not None:
            pending.error = error
        pending.result = result
        logger.debug(
            "reply %s id=%s %s", pending.method, call_id, "error" if pending.error is not None else "ok"
        )
        pending.event.set()
        return None

    # ---------------------------------------------------------------- error mapping

    def _clean_reason(self, text: Any, secrets: list[str]) -> str:
        s = one_line(text, _MAX_REASON)
        s = _REASON_PREFIX.sub("", s)
        if s in ("MatchNotFound()", "MatchNotFound"):
            s = "no matching object (a query with get=True matched nothing)"
        return _scrub(s, list(secrets) + self._creds.secrets())

    def _validation_error(
        self,
        method: str,
        triples: list[tuple[str, str, int | None]],
        resource: str | None,
        secrets: list[str],
    ) -> ApiValidationError:
        clean = [(a, self._clean_reason(m, secrets), c) for a, m, c in triples]
        head = method + (f" ({resource})" if resource else "")
        body = "; ".join(f"{a}: {m}" if a else m for a, m, _ in clean)
        return ApiValidationError(
            method, f"{head}: {body}", errno=errno_mod.EINVAL, errors=clean, resource=resource
        )

    def _not_found(self, method: str) -> MethodNotFound:
        nas = f"{self.host} ({self.version})" if self.version else self.host
        return MethodNotFound(
            f"{method}: the NAS {nas} does not offer this API method; "
            "this TrueNAS version may not be supported"
        )

    def _map_error(self, method: str, error: Any, resource: str | None, params: Any) -> RemoteError:
        secrets: list[str] = []
        _collect_secrets(params, secrets)
        head = method + (f" ({resource})" if resource else "")
        if self.protocol == "legacy":
            if not isinstance(error, dict):
                return ApiError(method, f"{head}: the NAS returned an unreadable error", resource=resource)
            code = error.get("error")
            reason = error.get("reason") or error.get("errname") or "call failed"
            extra = error.get("extra")
            if error.get("type") == "VALIDATION":
                triples = (
                    _norm_triples(extra) or _parse_validation_text(reason) or [("", one_line(reason, _MAX_REASON), code)]
                )
                return self._validation_error(method, triples, resource, secrets)
        else:
            if not isinstance(error, dict):
                return ApiError(method, f"{head}: the NAS returned an unreadable error", resource=resource)
            rpc_code = error.get("code")
            data = error.get("data") if isinstance(error.get("data"), dict) else {}
            if rpc_code == JSONRPC_METHOD_NOT_FOUND:
                return self._not_found(method)
            if rpc_code == JSONRPC_INVALID_PARAMS:
                triples = (
                    _norm_triples(data.get("extra"))
                    or _parse_validation_text(data.get("reason") or "")
                    or [
                        (
                            "",
                            one_line(data.get("reason") or error.get("message") or "Invalid params",
                                     _MAX_REASON),
                            data.get("error"),
                        )
                    ]
                )
                return self._validation_error(method, triples, resource, secrets)
            if rpc_code == JSONRPC_TOO_MANY_CALLS:
                return ApiError(
                    method,
                    f"{head}: {self.host} refused the call: too many concurrent calls",
                    errno=errno_mod.ETOOMANYREFS,
                    resource=resource,
                )
            if not data:
                return ApiError(
                    method,
                    f"{head}: {self._clean_reason(error.get('message') or rpc_code, secrets)}",
                    resource=resource,
                )
            code = data.get("error")
            reason = data.get("reason") or error.get("message") or "call failed"
            extra = data.get("extra")
        # Shared TrueNAS error-object handling (legacy top level / JSON-RPC data).
        text = self._clean_reason(reason, secrets)
        if code == ENOMETHOD or "Method does not exist" in str(reason):
            return self._not_found(method)
        if code == ENOTAUTHENTICATED or (code == EACCES and "not authenticated" in str(reason).lower()):
            return AuthError(
                f"{head}: {self.host} says the session is not authenticated: check the credentials"
            )
        if code == EACCES:
            return AuthError(
                f"{head}: not authorized on {self.host}: the account lacks the role this method needs"
            )
        if code == EBUSY and method.startswith("auth."):
            return ApiError(
                method,
                f"{head}: {text}: too many logins from this address; wait up to 10 minutes",
                errno=code,
                resource=resource,
            )
        triples = (
            _norm_triples(extra) if isinstance(extra, list) and extra and isinstance(extra[0], list) else []
        )
        if triples and code == errno_mod.EINVAL:
            return self._validation_error(method, triples, resource, secrets)
        return ApiError(
            method, f"{head}: {text}", errno=code if isinstance(code, int) else None, resource=resource
        )
