"""netprov's error tree.

Every failure a user can act on is a ``NetprovError``; the CLI maps each to one
line on stderr and exit code 1. Library exceptions (websockets, paramiko, ssl,
pydantic) are translated into these at the adapter edge and never reach the core
or the CLI. Messages never contain secrets.
"""

from __future__ import annotations


class NetprovError(Exception):
    """Base class: an expected failure with a message a user can act on."""


class InventoryError(NetprovError):
    """The inventory is invalid. ``problems`` holds one ``Problem`` per finding."""

    def __init__(self, problems: list, message: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__(message or "\n".join(str(p) for p in self.problems))


class TemplateError(NetprovError):
    """A built-in or user template failed to load or render."""


class RemoteError(NetprovError):
    """Talking to a NAS or a PXE server failed."""


class ConnectError(RemoteError):
    """The remote could not be reached (DNS, refused, TLS, handshake, dropped)."""


class TLSVerifyError(ConnectError):
    """The remote's TLS certificate could not be verified."""


class AuthError(RemoteError):
    """The remote refused our credentials (bad API key, password, SSH key)."""


class HostKeyError(ConnectError):
    """An SSH host key is unknown or does not match known_hosts."""


class CallTimeout(RemoteError):
    """A remote call did not answer in time."""


class MethodNotFound(RemoteError):
    """The NAS does not offer this API method (version mismatch)."""


class ApiError(RemoteError):
    """The NAS answered a call with an error.

    ``method`` is the API method; ``errors`` is a list of
    ``(attribute, message, errno)`` tuples for validation errors (``attribute``
    is the dotted field path the middleware reports, e.g.
    ``pool_dataset_create.volsize``), empty for other errors.
    """

    def __init__(self, method: str, message: str, *, errno: int | None = None,
                 errors: list[tuple[str, str, int | None]] | None = None,
                 resource: str | None = None) -> None:
        self.method = method
        self.errno = errno
        self.errors = list(errors or [])
        self.resource = resource
        super().__init__(message)


class ApiValidationError(ApiError):
    """The middleware rejected the arguments (``ValidationErrors``)."""


class BadAnswerError(ApiError):
    """The NAS answered a call with something netprov cannot use (a wrong shape or type in a field).

    The message names the method and what was expected; it never quotes the answer's values.
    """


class StalePlanError(NetprovError):
    """The world (or, for a saved plan, the inventory, its templates or secrets) changed since the
    plan was made; plan again."""


class ConvergenceError(NetprovError):
    """After apply, a fresh plan still has changes. ``plan`` is that fresh plan (to show the user)."""

    def __init__(self, message: str, *, plan: object = None) -> None:
        self.plan = plan
        super().__init__(message)


class PushError(RemoteError):
    """Pushing or activating boot files on a PXE server failed (and was rolled back)."""


class PathConfinementError(NetprovError):
    """A path would land outside the configured roots."""
