"""The storage half's values: what the inventory wants (``DesiredStorage``), what the NAS holds
(``ActualStorage``, normalised and JSON round-trippable), the policy a plan is made under, and the
fingerprint a saved plan pins. PURE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netprov.core import names
from netprov.core.inventory import LoadedInventory
from netprov.core.plan import Action, Change, fingerprint
from netprov.core.secrets import MASK

SERVICE = "iscsitarget"
EXTENT_BLOCKSIZE = 512
KINDS = ("zvol", "extent", "initiator", "auth", "target", "targetextent")


@dataclass(frozen=True)
class DesiredMachine:
    name: str
    zvol: str                 # dataset path
    device: str               # extent "disk": zvol/<path> (spaces as +)
    volsize: int              # bytes; 0 = as the golden snapshot (clone without size)
    volblocksize: str         # "16K"
    sparse: bool
    clone_from: str | None
    target: str               # target name == extent name
    serial: str
    initiator_iqn: str
    chap_user: str | None     # None: CHAP off
    lun: int
    renamed_from: str | None = None   # the machine's old name: its disk and objects are kept and renamed


@dataclass(frozen=True)
class DesiredStorage:
    storage_name: str
    parent: str
    basename: str
    portal_ip: str            # what the portal listens on (storage.portal_listen)
    portal_port: int
    lun: int
    target_prefix: str
    machines: dict[str, DesiredMachine]
    secrets: Mapping[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def system(self) -> str:
        return f"storage:{self.storage_name}"

    @property
    def clone_sources(self) -> list[str]:
        return sorted({m.clone_from for m in self.machines.values() if m.clone_from})

    def secret(self, machine: str) -> str | None:
        return self.secrets.get(machine)


def desired_storage(loaded: LoadedInventory, storage_name: str,
                    secrets: Mapping[str, str | None] | None = None) -> DesiredStorage:
    """The disks the inventory wants on storage ``storage_name``. ``secrets``: machine -> CHAP secret/None."""
    st = loaded.inventory.storage[storage_name]
    secrets = dict(secrets or {})
    machines: dict[str, DesiredMachine] = {}
    for m in loaded.machines:
        if m.storage != storage_name:
            continue
        path = names.zvol_path(st.parent, m.name)
        machines[m.name] = DesiredMachine(
            name=m.name, zvol=path, device=names.zvol_device(st.parent, m.name), volsize=int(m.size or 0),
            volblocksize=m.volblocksize, sparse=bool(m.sparse), clone_from=m.clone_from,
            target=names.target_name(m.name, st.target_prefix), serial=names.extent_serial(st.parent, m.name),
            initiator_iqn=m.initiator_iqn, chap_user=m.chap.username if m.chap else None, lun=st.lun,
            renamed_from=m.renamed_from)
    return DesiredStorage(
        storage_name=storage_name, parent=st.parent, basename=st.basename, portal_ip=st.portal_listen,
        portal_port=st.portal_port, lun=st.lun, target_prefix=st.target_prefix, machines=machines,
        secrets={k: v for k, v in secrets.items() if k in machines})


# --------------------------------------------------------------------------------------------
# Actual (normalised; produced by adapters/truenas/normalise.py or loaded from JSON)
# --------------------------------------------------------------------------------------------

_LISTS = ("zvols", "extents", "targets", "targetextents", "initiators", "auths", "portals", "sessions")


@dataclass
class ActualStorage:
    """What the NAS holds, normalised. Every record is a plain JSON dict (see parse.py for the keys).

    zvols: {name, volsize:int, volblocksize:"16K", sparse:bool, origin:str|None, comments:str|None,
            props:{netprov:* user properties}};
    extents: {id, name, type, disk, serial, blocksize:int, ro, enabled, comment};
    targets: {id, name, alias, mode, groups:[{portal:int, initiator:int|None, authmethod, auth:int|None}]};
    targetextents: {id, target, extent, lunid}; initiators: {id, initiators:[sorted], comment};
    auths: {id, tag, user, peeruser, secret: "redacted" | "sha256:..." | None};
    portals: {id, tag, listen:[{ip, port}], comment}; sessions: {target: iqn, initiator: iqn};
    global_: {basename, listen_port}; service: {enable, state} | None;
    snapshots: {snapshot id: {volsize, volblocksize}} (only the inventory's clone sources).
    """

    parent: str
    parent_exists: bool = True
    parent_type: str | None = "FILESYSTEM"
    global_: dict[str, Any] = field(default_factory=lambda: {"basename": "iqn.2005-10.org.freenas.ctl",
                                                               "listen_port": 3260})
    service: dict[str, Any] | None = field(default_factory=lambda: {"enable": True, "state": "RUNNING"})
    zvols: list[dict] = field(default_factory=list)
    extents: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)
    targetextents: list[dict] = field(default_factory=list)
    initiators: list[dict] = field(default_factory=list)
    auths: list[dict] = field(default_factory=list)
    portals: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    snapshots: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def by(key: str, rows: list[dict]) -> list[dict]:
            return sorted(rows, key=lambda r: (r.get(key) is None, r.get(key)))
        return {
            "parent": self.parent, "parent_exists": self.parent_exists, "parent_type": self.parent_type,
            "global": dict(self.global_), "service": dict(self.service) if self.service is not None else None,
            "zvols": by("name", self.zvols), "extents": by("id", self.extents), "targets": by("id", self.targets),
            "targetextents": by("id", self.targetextents), "initiators": by("id", self.initiators),
            "auths": by("id", self.auths), "portals": by("id", self.portals),
            "sessions": sorted(self.sessions, key=lambda s: (s.get("target", ""), s.get("initiator", ""))),
            "snapshots": {k: self.snapshots[k] for k in sorted(self.snapshots)},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActualStorage:
        kw: dict[str, Any] = {k: [dict(r) for r in d.get(k) or []] for k in _LISTS}
        return cls(parent=d["parent"], parent_exists=bool(d.get("parent_exists", True)),
                   parent_type=d.get("parent_type", "FILESYSTEM"),
                   global_=dict(d.get("global") or {"basename": "iqn.2005-10.org.freenas.ctl", "listen_port": 3260}),
                   service=(dict(d["service"]) if d.get("service") is not None else None) if "service" in d
                   else {"enable": True, "state": "RUNNING"},
                   snapshots={k: dict(v) for k, v in (d.get("snapshots") or {}).items()}, **kw)


def state_fingerprint(actual: ActualStorage) -> str:
    """What a saved plan pins: the NAS's objects, not who is logged in right now.

    Sessions come and go as machines boot; a plan made a minute ago is not stale because
    a machine logged in. Destructive changes stay safe regardless: TrueNAS refuses to
    delete an in-use target/extent without ``force``, which netprov never sends.

    A CHAP secret's digest is left out too (masked): plans are shown and published, and a digest of
    a short secret, however salted, lets anyone test guesses. A secret changed on the NAS between plan
    and apply is still seen: apply's verify plans again, and a saved plan is checked change by change.
    """
    data = actual.to_json()
    data.pop("sessions", None)
    data["auths"] = [{**a, "secret": MASK} if a.get("secret") else a for a in data.get("auths") or []]
    return fingerprint(data)


@dataclass(frozen=True)
class StoragePolicy:
    allow_destroy: bool = False
    adopt: bool = False
    machines: frozenset[str] | set[str] | None = None   # --target filter: plan only these machines
    # The net under a destroyed zvol (docs/recovery.md): before a zvol is deleted or replaced it is
    # snapshotted as ``<zvol>@netprov-<stamp>`` and kept, with that snapshot, as
    # ``<zvol>.netprov-retired-<stamp>``. ``snapshot=False`` (--no-snapshot) destroys it outright.
    # ``stamp`` is the plan's UTC time (``20261207T180512Z``), given by the engine: the core reads no clock.
    snapshot: bool = True
    stamp: str = ""


def net_names(zvol: str, stamp: str) -> tuple[str, str]:
    """``(snapshot, retired zvol)`` names for the net under ``zvol`` (machine names have no '.': no clash)."""
    suffix = f"netprov-{stamp}" if stamp else "netprov"
    return f"{zvol}@{suffix}", f"{zvol}.{suffix.replace('netprov', 'netprov-retired', 1)}"


def retired_comment(zvol: str, stamp: str) -> str:
    """The comment on a retired zvol: says what it was, and is not netprov's ownership mark."""
    return f"netprov:retired zvol={zvol}" + (f" at={stamp}" if stamp else "")



def pick_portal(portals: Iterable[dict], global_port: int | None, ip: str, port: int) -> dict | None:
    """The portal netprov uses for ``ip:port``: one listening on exactly that address, else one on the
    wildcard address (lowest id first). A listen entry without a port uses the global port (else 3260)."""
    best = None
    for p in sorted(portals, key=lambda r: r.get("id") or 0):
        for li in p.get("listen") or []:
            if (li.get("port") or global_port or 3260) != port:
                continue
            if li.get("ip") == ip:
                return p
            if li.get("ip") in ("0.0.0.0", "::") and best is None:
                best = p
    return best



def summarize(changes: Iterable[Change]) -> dict[str, int]:
    """{create, update, replace, delete, no-op, refused} counts (handy for tests and the CLI)."""
    out = {a.value: 0 for a in Action}
    out["refused"] = 0
    for c in changes:
        out[c.action.value] += 1
        if c.refused:
            out["refused"] += 1
    return out
