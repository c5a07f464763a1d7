"""What each storage change hands the executor: one frozen dataclass per change kind (and action), and
the one place storage addresses are built.

A payload holds ids, names and sizes (ints), never a secret: a CHAP secret is named by its machine and
read by the executor at apply time. ``Kept`` is the payload of a no-op whose object later changes of the
chain refer to (by id). A create's payload is the one source of the ``after`` a plan shows (``sides``,
through ``after_of``), and ``check_agrees`` checks an update's shown ``after`` against what its payload
will set, so the same value never travels twice unchecked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from netprov.core.plan import Action, Address, Payload
from netprov.core.secrets import MASK
from netprov.core.storage.model import EXTENT_BLOCKSIZE, SERVICE
from netprov.core.units import format_size

# -- addresses ---------------------------------------------------------------------------------------

GLOBAL_ADDRESS = Address("iscsi.global", "basename")
SERVICE_ADDRESS = Address("service", SERVICE)


def zvol_address(path: str) -> Address:
    return Address("zvol", path)


def extent_address(name: str) -> Address:
    return Address("extent", name)


def initiator_address(machine: str | None, row_id: int | None = None) -> Address:
    """``initiator[m1]``, ``initiator[m1]#7`` (one of several), ``initiator#7`` (a group of no machine)."""
    return Address("initiator", machine, row_id)


def auth_address(machine: str, row_id: int | None = None) -> Address:
    return Address("auth", machine, row_id)


def auth_tag_address(tag: int) -> Address:
    """An auth group netprov does not hold as the machine's: ``auth-tag#3``."""
    return Address("auth-tag", None, tag)


def target_address(name: str) -> Address:
    return Address("target", name)


def mapping_address(target: str, extent: str) -> Address:
    return Address("targetextent", f"{target}/{extent}")


def portal_address(ip: str | None, port: int | None) -> Address:
    return Address("portal", f"{ip}:{port}")


def portal_id_address(portal_id: int) -> Address:
    return Address("portal", None, portal_id)


def size_text(n: int | None) -> str | None:
    return None if n is None else format_size(int(n))


# -- parts ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Net:
    """The net under a destroyed zvol (ADR 0006): snapshot, the retired copy's name and its comment."""
    snapshot: str
    keep_as: str
    comment: str


@dataclass(frozen=True)
class ExtentRef:
    """An extent as the plan saw it (apply checks id and name before touching it)."""
    id: int
    name: str


@dataclass(frozen=True)
class MappingRef:
    """A target/extent mapping as the plan saw it (apply checks all three ids)."""
    id: int
    target_id: int
    extent_id: int


@dataclass(frozen=True)
class TargetGroup:
    """One target group; its objects named by address (the executor resolves them to ids)."""
    portal: Address
    initiator: Address
    authmethod: str
    auth: Address | None

    def display(self) -> dict[str, Any]:
        return {"portal": str(self.portal), "initiator": str(self.initiator), "authmethod": self.authmethod,
                "auth": None if self.auth is None else str(self.auth)}


# -- payloads ------------------------------------------------------------------------------------------

class _Create(Payload, ABC):
    """A create's payload: what the plan shows after it is derived from the payload alone (each create
    class says how, in ``shown``; a class without it can't be instantiated)."""

    def sides(self, action: Action) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
        return (None, self.shown()) if action is Action.CREATE else None

    @abstractmethod
    def shown(self) -> dict[str, Any]:
        """The ``after`` a plan shows for this create, derived from the payload alone."""


class _Update(Payload):
    """An update's payload: ``sets`` says what the plan's shown ``after`` must hold (``check_agrees``)."""

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Kept(Payload):
    """A no-op on an object later changes refer to: its id."""
    id: int


@dataclass(frozen=True)
class ZvolCreate(_Create):
    path: str
    machine: str
    volsize: int                 # bytes (0: as the golden snapshot)
    volblocksize: str
    sparse: bool
    clone_from: str | None = None
    grow_to: int | None = None   # a clone grows to disk.size when that is above the snapshot's size

    def shown(self) -> dict[str, Any]:
        size = size_text(self.volsize) if self.volsize else None
        if self.clone_from:
            return {"name": self.path, "clone_from": self.clone_from, "volsize": size}
        return {"name": self.path, "volsize": size, "volblocksize": self.volblocksize, "sparse": self.sparse}


@dataclass(frozen=True)
class ZvolUpdate(_Update):
    """Grow and/or mark (adopt) an existing zvol; with nothing to set, the zvol as it is."""
    path: str
    machine: str
    set_volsize: int | None = None
    set_mark: bool = False

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {"volsize": size_text(self.set_volsize)} if self.set_volsize else {}


@dataclass(frozen=True)
class ZvolRename(_Update):
    """``renamed_from``: snapshot ``old_path``, clone to ``path`` (unless ``clone`` is false: finishing an
    interrupted rename), promote, re-point ``extents`` at ``disk``, remove the old name."""
    path: str
    machine: str
    old_path: str
    snapshot: str
    clone: bool
    keep_snapshot: bool
    disk: str
    extents: tuple[ExtentRef, ...]
    set_volsize: int | None = None

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {"volsize": size_text(self.set_volsize)} if self.set_volsize else {}


@dataclass(frozen=True)
class ZvolReplace(Payload):
    """Delete ``pre_delete`` (in order), keep the net, delete the zvol, create it again as ``create``."""
    create: ZvolCreate
    pre_delete: tuple[MappingRef | ExtentRef, ...]
    net: Net | None


@dataclass(frozen=True)
class ZvolDelete(Payload):
    path: str
    net: Net | None


@dataclass(frozen=True)
class ExtentCreate(_Create):
    name: str
    disk: str
    serial: str
    comment: str
    blocksize: int = EXTENT_BLOCKSIZE

    def shown(self) -> dict[str, Any]:
        return {"name": self.name, "disk": self.disk, "serial": self.serial, "blocksize": self.blocksize,
                "ro": False, "enabled": True}


@dataclass(frozen=True)
class ExtentUpdate(_Update):
    """Set the fields that are not None on extent ``id`` (still named ``verify_name``)."""
    id: int
    verify_name: str
    name: str | None = None
    disk: str | None = None
    serial: str | None = None
    blocksize: int | None = None
    ro: bool | None = None
    enabled: bool | None = None
    comment: str | None = None

    def fields_to_set(self) -> dict[str, Any]:
        keys = ("name", "disk", "serial", "blocksize", "ro", "enabled", "comment")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in self.fields_to_set().items() if k != "comment"}


@dataclass(frozen=True)
class ExtentDelete(Payload):
    id: int
    name: str


@dataclass(frozen=True)
class InitiatorCreate(_Create):
    initiators: tuple[str, ...]
    comment: str

    def shown(self) -> dict[str, Any]:
        return {"initiators": list(self.initiators), "comment": self.comment}


@dataclass(frozen=True)
class InitiatorUpdate(_Update):
    id: int
    verify_comment: str | None
    initiators: tuple[str, ...]
    comment: str | None = None       # the mark, when it follows a renamed zvol

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {"initiators": list(self.initiators)}


@dataclass(frozen=True)
class InitiatorDelete(Payload):
    id: int
    verify_comment: str | None


@dataclass(frozen=True)
class AuthCreate(_Create):
    """A fresh auth group for ``machine``; its secret is read at apply time (``needs_secret``: not here)."""
    machine: str
    user: str
    needs_secret: bool = False

    def shown(self) -> dict[str, Any]:
        return {"user": self.user, "secret": MASK, "peeruser": ""}


@dataclass(frozen=True)
class AuthUpdate(_Update):
    """Row ``id`` on ``tag`` (still with user ``verify_user``; on ``verify_tag`` and unused, for a leftover
    being reused): set ``user``, clear the peer user/secret, and/or set ``machine``'s secret."""
    id: int
    tag: int
    machine: str
    verify_user: str | None
    verify_tag: int | None = None
    user: str | None = None
    clear_peer: bool = False
    set_secret: bool = False

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {"user": self.user} if self.user is not None else {}


@dataclass(frozen=True)
class AuthDelete(Payload):
    """Rows ``ids`` of ``tag``; ``unused``: only if no target uses the tag; ``not_used_by``: only if none of
    these targets does."""
    ids: tuple[int, ...]
    tag: int
    verify_user: str | None
    unused: bool = False
    not_used_by: tuple[int, ...] = ()


@dataclass(frozen=True)
class AuthKept(Payload):
    """A no-op auth group: later changes refer to its tag."""
    id: int
    tag: int


@dataclass(frozen=True)
class TargetCreate(_Create):
    name: str
    groups: tuple[TargetGroup, ...]

    def shown(self) -> dict[str, Any]:
        return {"name": self.name, "mode": "ISCSI", "groups": [g.display() for g in self.groups]}


@dataclass(frozen=True)
class TargetUpdate(_Update):
    """Target ``id`` (still named ``verify_name``): rename to ``name``, set ``groups``, set ``mode``."""
    id: int
    verify_name: str
    name: str | None = None
    groups: tuple[TargetGroup, ...] | None = None
    mode: str | None = None

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        want: dict[str, Any] = {k: v for k, v in (("name", self.name), ("mode", self.mode)) if v is not None}
        if self.groups is not None and "groups" in (after or {}):
            want["groups"] = [g.display() for g in self.groups]
        return want


@dataclass(frozen=True)
class TargetDelete(Payload):
    id: int
    name: str


@dataclass(frozen=True)
class MappingCreate(_Create):
    target: Address
    extent: Address
    lunid: int

    def shown(self) -> dict[str, Any]:
        return {"target": self.target.name, "extent": self.extent.name, "lunid": self.lunid}


@dataclass(frozen=True)
class MappingUpdate(_Update):
    ref: MappingRef
    lunid: int

    def sets(self, after: dict[str, Any] | None) -> dict[str, Any]:
        return {"lunid": self.lunid}


@dataclass(frozen=True)
class MappingDelete(Payload):
    ref: MappingRef


@dataclass(frozen=True)
class PortalCreate(_Create):
    ip: str
    port: int
    comment: str

    def shown(self) -> dict[str, Any]:
        return {"listen": [f"{self.ip}:{self.port}"], "comment": self.comment}


@dataclass(frozen=True)
class IscsiGlobal(Payload):
    """The NAS-wide iSCSI basename: checked, never changed (a mismatch is a refused change)."""
    basename: str


@dataclass(frozen=True)
class Service(Payload):
    """The iSCSI service: enable it at boot, start it (only when it is not running)."""
    enable: bool = False
    start: bool = False


# -- what a plan shows, from the payload ---------------------------------------------------------------

def after_of(p: Payload) -> dict[str, Any]:
    """The ``after`` a plan shows for a create, derived from its payload (``shown``)."""
    if not isinstance(p, _Create):
        raise TypeError(f"no create display for {type(p).__name__}")
    return p.shown()


def check_agrees(p: Payload, after: dict[str, Any] | None) -> None:
    """An update's shown ``after`` and what its payload sets are one value: raise if they differ."""
    want = p.sets(after) if isinstance(p, _Update) else {}
    got = {k: (after or {}).get(k) for k in want}
    if got != want:
        raise AssertionError(f"{type(p).__name__}: the plan shows {got}, the payload sets {want}")
