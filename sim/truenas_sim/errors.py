"""Middleware exception classes as the simulator raises them.

Shapes: CallError / ValidationError(s) / InstanceNotFound as in middleware TS-25.04.2.4
src/middlewared/middlewared/service_exception.py:16,27,51,116; JSON-RPC error envelopes as
api/base/server/ws_handler/rpc.py:115-119 (validation: -32602 "Invalid params") and :339 (-32001 call error).
"""

from __future__ import annotations

import errno as _errno

ENOMETHOD = 201
ENOTAUTHENTICATED = 207
ESERVICESTARTFAILURE = 202

_EXTRA_NAMES = {
    ENOMETHOD: "ENOMETHOD",
    ENOTAUTHENTICATED: "ENOTAUTHENTICATED",
    ESERVICESTARTFAILURE: "ESERVICESTARTFAILURE",
    203: "EALERTCHECKERUNAVAILABLE",
    204: "EREMOTENODEERROR",
    205: "EDATASETISLOCKED",
    206: "EINVALIDRRDTIMESTAMP",
}


def errname(code: int | None) -> str:
    if code is None:
        return "EFAULT"
    return _EXTRA_NAMES.get(code) or _errno.errorcode.get(code) or str(code)


class SimError(Exception):
    """Base of everything a simulated method can raise."""


class CallError(SimError):
    def __init__(self, errmsg: str, errno: int = _errno.EFAULT, extra=None):
        super().__init__(errmsg)
        self.errmsg = errmsg
        self.errno = errno
        self.extra = extra

    def __str__(self) -> str:
        return f"[{errname(self.errno)}] {self.errmsg}"


class ValidationErrors(SimError):
    """One or more (attribute, message, errno) triples."""

    def __init__(self, errors=None, single: bool = False):
        super().__init__()
        self.errors: list[tuple[str | None, str, int]] = list(errors or [])
        self.single = single  # raised as a lone ValidationError (legacy uses its own errno)

    def add(self, attribute, errmsg, errno=_errno.EINVAL):
        self.errors.append((attribute, errmsg, errno))

    def check(self):
        if self.errors:
            raise self

    def __bool__(self):
        return bool(self.errors)

    def __str__(self) -> str:
        return "".join(f"[{errname(e)}] {a if a is not None else 'None'}: {m}\n" for a, m, e in self.errors)

    @property
    def class_name(self):
        return "ValidationError" if self.single else "ValidationErrors"


def ValidationError(attribute, errmsg, errno=_errno.EINVAL) -> ValidationErrors:
    return ValidationErrors([(attribute, errmsg, errno)], single=True)


def InstanceNotFound(verbose: str, id_) -> ValidationErrors:
    # middleware TS-25.04.2.4 src/middlewared/middlewared/service/crud_service.py:326 (InstanceNotFound,
    # service_exception.py:116: errno ENOENT), sent as -32602 (api/base/server/ws_handler/rpc.py:116)
    return ValidationErrors([(None, f"{verbose} {id_} does not exist", _errno.ENOENT)], single=True)


class MatchNotFound(SimError):
    """`get: true` with no match: an IndexError with empty text upstream -> reason "MatchNotFound()"."""

    def __str__(self) -> str:
        return ""

    def __repr__(self) -> str:
        return "MatchNotFound()"


class MethodNotFound(SimError):
    def __init__(self, method: str):
        super().__init__(method)
        self.method = method
        svc, _, name = method.rpartition(".")
        self.service, self.name = svc, name

    def __str__(self) -> str:
        return f"[ENOMETHOD] Method {self.name!r} not found in {self.service!r}"

    def legacy_reason(self, known_services) -> str:
        if self.service in known_services:
            return f"[ENOMETHOD] Method {self.name!r} not found in {self.service!r}"
        return f"[ENOMETHOD] Service {self.service!r} not found"


class NotAuthenticated(SimError):
    pass


class NotAuthorized(CallError):
    def __init__(self):
        super().__init__("Not authorized", _errno.EACCES)


class RateLimited(CallError):
    def __init__(self):
        super().__init__("Rate Limit Exceeded", _errno.EBUSY)


def fake_trace(exc: BaseException) -> dict:
    cls = type(exc).__name__
    if isinstance(exc, ValidationErrors):
        cls = exc.class_name
    text = str(exc) or repr(exc)
    return {
        "class": cls,
        "frames": [],
        "formatted": f"Traceback (most recent call last):\n  (simulated)\n{cls}: {text}",
        "repr": f"{cls}({text!r})" if not isinstance(exc, MatchNotFound) else "MatchNotFound()",
    }
