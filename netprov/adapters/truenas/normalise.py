"""PURE: raw middleware query results -> the normalised records of ``netprov.core.storage.ActualStorage``.

Normalisation is what makes a second plan after apply empty on every version:

* ZFS properties come as ``{"parsed", "rawvalue", "value", ...}`` dicts (or, after a ``select`` on
  ``prop.parsed``, ``{"parsed": ...}``); sizes become ints from ``parsed``/``rawvalue``, never the
  humanised ``value``; ``volblocksize`` becomes the canonical ``"16K"`` spelling;
* ``sparse`` is not a ZFS property: a zvol is thin when its ``refreservation`` is 0/none;
* ``origin`` "" -> None, ``comments`` absent -> None, ``alias`` "" -> None (CORE stores "");
* legacy ``authmethod`` spellings (``None``, ``CHAP Mutual``) -> ``NONE``/``CHAP_MUTUAL``;
* initiator lists are split on whitespace (the DB stores them newline-joined), ``ALL`` -> [];
* ``filesize`` strings, ``blocksize`` strings -> ints;
* a CHAP secret is never kept: it becomes ``"redacted"`` (the NAS sent ``********``) or a salted
  digest (``secret_digest``) so drift can be seen without the secret reaching a state file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netprov.core.storage import ActualStorage, secret_digest
from netprov.core.units import VOLBLOCKSIZES

REDACTED = "********"
_VBS_BY_BYTES = {v: k for k, v in VOLBLOCKSIZES.items()}
_AUTHMETHOD = {"NONE": "NONE", "NONE ": "NONE", "CHAP": "CHAP", "CHAP MUTUAL": "CHAP_MUTUAL",
               "CHAP_MUTUAL": "CHAP_MUTUAL"}


def prop(raw: Any) -> Any:
    """The parsed value of a ZFS property dict (or the value itself when already plain)."""
    if isinstance(raw, Mapping):
        if raw.get("parsed") is not None:
            return raw["parsed"]
        if raw.get("rawvalue") is not None:
            return raw["rawvalue"]
        return raw.get("value")
    return raw


def to_int(v: Any, default: int | None = None) -> int | None:
    if v is None or v == "" or isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    s = str(v).strip().lower()
    if s in ("none", "-", "off"):
        return 0
    try:
        return int(s)
    except ValueError:
        from netprov.core.units import parse_size
        try:
            return parse_size(s)
        except ValueError:
            return default


def volblocksize(raw: Any) -> str | None:
    v = prop(raw)
    if v is None:
        return None
    n = to_int(v)
    if n is not None and n in _VBS_BY_BYTES:
        return _VBS_BY_BYTES[n]
    s = str(v).strip().upper().removesuffix("B")
    return s if s in VOLBLOCKSIZES else str(v)


def zvol(raw: Mapping[str, Any]) -> dict | None:
    """A ``pool.dataset.query`` row -> ``{name, volsize, volblocksize, sparse, origin, comments, props}``."""
    if raw.get("type") != "VOLUME":
        return None
    name = raw.get("id") or raw.get("name")
    refres = to_int(prop(raw.get("refreservation")), 0)
    origin = prop(raw.get("origin")) or None
    comments = prop(raw.get("comments"))
    props: dict[str, str] = {}
    for k, v in (raw.get("user_properties") or {}).items():
        if k.startswith("netprov:"):
            val = prop(v)
            props[k] = "" if val is None else str(val)
    return {"name": name, "volsize": to_int(prop(raw.get("volsize")), 0),
            "volblocksize": volblocksize(raw.get("volblocksize")), "sparse": not refres,
            "origin": origin, "comments": comments if comments not in ("", None) else None, "props": props}


def extent(raw: Mapping[str, Any]) -> dict:
    disk = raw.get("disk") or (raw.get("path") if raw.get("type", "DISK") == "DISK" else None)
    return {"id": int(raw["id"]), "name": raw.get("name"), "type": raw.get("type") or "DISK", "disk": disk,
            "serial": raw.get("serial"), "blocksize": to_int(raw.get("blocksize"), 512),
            "ro": bool(raw.get("ro", False)), "enabled": bool(raw.get("enabled", True)),
            "comment": raw.get("comment") or ""}


def authmethod(v: Any) -> str:
    if v is None:
        return "NONE"
    return _AUTHMETHOD.get(str(v).upper(), str(v).upper())


def target(raw: Mapping[str, Any]) -> dict:
    groups = []
    for g in raw.get("groups") or []:
        groups.append({"portal": to_int(g.get("portal")), "initiator": to_int(g.get("initiator")),
                       "authmethod": authmethod(g.get("authmethod")), "auth": to_int(g.get("auth"))})
    return {"id": int(raw["id"]), "name": raw.get("name"), "alias": raw.get("alias") or None,
            "mode": raw.get("mode") or "ISCSI", "groups": groups}


def targetextent(raw: Mapping[str, Any]) -> dict:
    return {"id": int(raw["id"]), "target": to_int(raw.get("target")), "extent": to_int(raw.get("extent")),
            "lunid": to_int(raw.get("lunid"))}


def initiator(raw: Mapping[str, Any]) -> dict:
    inits: list[str] = []
    val = raw.get("initiators") or []
    if isinstance(val, str):
        val = [val]
    for item in val:
        for word in str(item).split():
            if word.upper() != "ALL":
                inits.append(word.lower())
    return {"id": int(raw["id"]), "initiators": sorted(set(inits)), "comment": raw.get("comment") or ""}


def auth(raw: Mapping[str, Any]) -> dict:
    secret = raw.get("secret")
    if secret == REDACTED:
        state: str | None = "redacted"
    elif not secret:
        state = None
    else:
        state = secret_digest(str(secret))
    return {"id": int(raw["id"]), "tag": to_int(raw.get("tag")), "user": raw.get("user") or "",
            "peeruser": raw.get("peeruser") or "", "secret": state}


def portal(raw: Mapping[str, Any], listen_port: int | None = None) -> dict:
    listen = []
    for li in raw.get("listen") or []:
        listen.append({"ip": li.get("ip"), "port": to_int(li.get("port"), listen_port or 3260)})
    return {"id": int(raw["id"]), "tag": to_int(raw.get("tag"), int(raw["id"])), "listen": listen,
            "comment": raw.get("comment") or ""}


def global_config(raw: Mapping[str, Any]) -> dict:
    return {"basename": raw.get("basename"), "listen_port": to_int(raw.get("listen_port"))}


def service(raw: Any) -> dict | None:
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if not raw:
        return None
    return {"enable": bool(raw.get("enable")), "state": str(raw.get("state") or "UNKNOWN").upper()}


def session(raw: Mapping[str, Any]) -> dict:
    out = {"target": raw.get("target") or "", "initiator": raw.get("initiator") or ""}
    if raw.get("initiator_addr"):   # where the initiator logged in from (netprov status shows it)
        out["initiator_addr"] = str(raw["initiator_addr"])
    return out


def snapshot(raw: Mapping[str, Any]) -> tuple[str, dict]:
    props = raw.get("properties") or {}
    vs = to_int(prop(props.get("volsize")) if props.get("volsize") is not None else prop(raw.get("volsize")))
    vbs = props.get("volblocksize") or raw.get("volblocksize")
    return raw.get("id") or raw.get("name"), {"volsize": vs, "volblocksize": volblocksize(vbs) if vbs else None}


def build_actual(parent: str, *, datasets: Iterable[Mapping], extents: Iterable[Mapping],
                 targets: Iterable[Mapping], targetextents: Iterable[Mapping], initiators: Iterable[Mapping],
                 auths: Iterable[Mapping], portals: Iterable[Mapping], global_: Mapping | None,
                 service_rows: Any, sessions: Iterable[Mapping] = (),
                 snapshots: Iterable[Mapping] = ()) -> ActualStorage:
    """Assemble an ``ActualStorage`` from the raw results of one read."""
    g = global_config(global_ or {})
    parent_row = None
    zvols = []
    for d in datasets:
        name = d.get("id") or d.get("name")
        if name == parent:
            parent_row = d
            continue
        if not str(name).startswith(parent + "/"):
            continue            # a sibling such as tank/netboot2 (the query is a prefix match)
        z = zvol(d)
        if z is not None:
            zvols.append(z)
    snaps = dict(snapshot(s) for s in snapshots)
    return ActualStorage(
        parent=parent, parent_exists=parent_row is not None,
        parent_type=(parent_row.get("type") if parent_row else None),
        global_=g, service=service(service_rows),
        zvols=zvols, extents=[extent(e) for e in extents], targets=[target(t) for t in targets],
        targetextents=[targetextent(te) for te in targetextents], initiators=[initiator(i) for i in initiators],
        auths=[auth(a) for a in auths], portals=[portal(p, g.get("listen_port")) for p in portals],
        sessions=[session(s) for s in sessions], snapshots=snaps)


# --------------------------------------------------------------------------------------------------
# The shape of every answer netprov reads (checked before any of the functions above sees it)
# --------------------------------------------------------------------------------------------------
#
# A NAS that is broken (or hostile) can answer with anything JSON can hold. Every field the functions
# above use is checked for its type here, so a wrong answer becomes one line naming the method, where
# in the answer and what was expected, instead of an AttributeError deep in the normalisation. Values
# are never quoted (an answer can hold CHAP secrets). Only what netprov reads is checked: the walk
# follows the spec, never the answer, so unknown fields (however deep) cost nothing. Every field may
# be absent or null unless marked required: versions differ in what they send.


Path = tuple  # ("row", 3) / field names / list indexes


def _where(path: Path) -> str:
    """``("row", 3, "groups", 0, "auth")`` -> ``"row 3: field 'groups[0].auth': "``."""
    head, rest = "", list(path)
    if rest[:1] == ["row"]:
        head, rest = f"row {rest[1]}: ", rest[2:]
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return head + (f"field '{text}': " if text else "")


class _Leaf:
    def __init__(self, types: tuple[type, ...], what: str) -> None:
        self.types, self.what = types, what

    def problem(self, value: Any, path: Path) -> str | None:
        if isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool)):
            return None
        return f"{_where(path)}expected {self.what}, got {_describe(value)}"


class _List:
    def __init__(self, item: Any, what: str, row: bool = False) -> None:
        self.item, self.what, self.row = item, what, row

    def problem(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, list):
            return f"{_where(path)}expected {self.what}, got {_describe(value)}"
        for i, v in enumerate(value):
            sub = ("row", i) if self.row and not path else (*path, i)
            if v is None:  # the normalisation reads every item: a null one is as wrong as a string
                return f"{_where(sub)}expected {self.item.what}, got null"
            p = self.item.problem(v, sub)
            if p:
                return p
        return None


class _Obj:
    what = "an object"

    def __init__(self, fields: dict[str, Any], required: tuple[str, ...] = ()) -> None:
        self.fields, self.required = fields, required

    def problem(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, Mapping):
            return f"{_where(path)}expected an object, got {_describe(value)}"
        for name in self.required:
            if value.get(name) is None:
                return f"{_where((*path, name))}missing"
        for name, spec in self.fields.items():
            p = _check(spec, value.get(name), (*path, name))
            if p:
                return p
        return None


class _Map:
    """An object whose keys are free (user properties): every value under a key starting with ``prefix``
    must match ``item`` (the others are not read)."""

    what = "an object"

    def __init__(self, item: Any, prefix: str = "") -> None:
        self.item, self.prefix = item, prefix

    def problem(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, Mapping):
            return f"{_where(path)}expected an object, got {_describe(value)}"
        for k, v in value.items():
            if not str(k).startswith(self.prefix):
                continue
            p = _check(self.item, v, (*path, str(k)))
            if p:
                return p
        return None


class _Either:
    def __init__(self, *specs: Any, what: str) -> None:
        self.specs, self.what = specs, what

    def problem(self, value: Any, path: Path) -> str | None:
        for spec in self.specs:
            if spec.problem(value, path) is None:
                return None
        # A container of the kind one choice expects reports that choice's inner problem.
        for spec in self.specs:
            if (isinstance(value, list) and isinstance(spec, _List)) or (
                    isinstance(value, Mapping) and isinstance(spec, (_Obj, _Map))):
                return spec.problem(value, path)
        return f"{_where(path)}expected {self.what}, got {_describe(value)}"


def _check(spec: Any, value: Any, path: Path) -> str | None:
    if value is None:
        return None
    return spec.problem(value, path)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


_STR = _Leaf((str,), "a string")
_BOOL = _Leaf((bool,), "true/false")
_INT = _Leaf((int,), "an integer")
_NUM = _Leaf((int, float), "a number")
_INTISH = _Leaf((int, str), "an integer or a string")
_SCALAR = _Leaf((str, int, float, bool), "a string or a number")
#: A ZFS property: the plain value, or ``{"parsed", "rawvalue", "value", ...}``.
_PROP = _Either(_SCALAR, _Obj({"parsed": _SCALAR, "rawvalue": _SCALAR, "value": _SCALAR}),
                what="a ZFS property (a value or an object)")


def _rows(fields: dict[str, Any], required: tuple[str, ...] = ()) -> _List:
    return _List(_Obj(fields, required), "a list of objects", row=True)


_DATASET = {"id": _STR, "name": _STR, "type": _STR, "volsize": _PROP, "volblocksize": _PROP,
            "refreservation": _PROP, "origin": _PROP, "comments": _PROP,
            "user_properties": _Map(_PROP, "netprov:")}
_DATASET["children"] = _List(_Obj(_DATASET), "a list of objects")  # nested datasets, checked alike
_EXTENT = {"id": _INT, "name": _STR, "type": _STR, "disk": _STR, "path": _STR, "serial": _STR,
           "blocksize": _INTISH, "ro": _BOOL, "enabled": _BOOL, "comment": _STR}
_TARGET = {"id": _INT, "name": _STR, "alias": _STR, "mode": _STR,
           "groups": _List(_Obj({"portal": _INTISH, "initiator": _INTISH, "authmethod": _STR,
                                 "auth": _INTISH}), "a list of objects")}
_TARGETEXTENT = {"id": _INT, "target": _INTISH, "extent": _INTISH, "lunid": _INTISH}
_INITIATOR = {"id": _INT, "initiators": _Either(_List(_SCALAR, "a list of strings"), _STR,
                                                 what="a list of strings"), "comment": _STR}
_AUTH = {"id": _INT, "tag": _INTISH, "user": _STR, "peeruser": _STR, "secret": _STR}
_PORTAL = {"id": _INT, "tag": _INTISH, "comment": _STR,
           "listen": _List(_Obj({"ip": _STR, "port": _INTISH}), "a list of objects")}
_SERVICE = {"service": _STR, "enable": _BOOL, "state": _STR}
_SESSION = {"target": _STR, "initiator": _STR, "initiator_addr": _STR}
_SNAPSHOT = {"id": _STR, "name": _STR, "properties": _Obj({"volsize": _PROP, "volblocksize": _PROP}),
             "volsize": _PROP, "volblocksize": _PROP}
_JOB = {"id": _INT, "method": _STR, "state": _STR, "error": _STR,
        "progress": _Obj({"percent": _NUM, "description": _STR}),
        "exc_info": _Obj({"type": _STR, "extra": _Leaf((list, str), "a list")})}

#: Query namespaces: the fields of one row, and which of them must be present.
_QUERY_ROWS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "pool.dataset.query": (_DATASET, ()),
    "iscsi.extent.query": (_EXTENT, ("id",)),
    "iscsi.target.query": (_TARGET, ("id",)),
    "iscsi.targetextent.query": (_TARGETEXTENT, ("id",)),
    "iscsi.initiator.query": (_INITIATOR, ("id",)),
    "iscsi.auth.query": (_AUTH, ("id",)),
    "iscsi.portal.query": (_PORTAL, ("id",)),
    "service.query": (_SERVICE, ()),
    "iscsi.global.sessions": (_SESSION, ()),
    "pool.snapshot.query": (_SNAPSHOT, ()),
    "zfs.snapshot.query": (_SNAPSHOT, ()),
    "core.get_jobs": (_JOB, ("id",)),
}
#: Other calls whose answers netprov reads.
_ANSWERS: dict[str, Any] = {
    "iscsi.global.config": _Obj({"basename": _STR, "listen_port": _INTISH}),
    "system.version": _STR,
    "iscsi.extent.create": _Obj({"id": _INT}, ("id",)),
    "iscsi.initiator.create": _Obj({"id": _INT}, ("id",)),
    "iscsi.target.create": _Obj({"id": _INT}, ("id",)),
    "iscsi.targetextent.create": _Obj({"id": _INT}, ("id",)),
    "iscsi.portal.create": _Obj({"id": _INT}, ("id",)),
    "iscsi.auth.create": _Obj({"id": _INT}),
    "pool.dataset.create": _Obj({"id": _STR}),
}


def answer_problem(method: str, params: Any, answer: Any) -> str | None:
    """What is wrong with ``answer`` to ``method(*params)``, as a phrase, or None when netprov can use it.

    Queries are checked by their options: ``count`` answers a number, ``get`` one row, otherwise a list
    of rows. Methods netprov does not read are not checked."""
    rows = _QUERY_ROWS.get(method)
    if rows is not None:
        options = params[1] if isinstance(params, (list, tuple)) and len(params) > 1 else None
        options = options if isinstance(options, Mapping) else {}
        select = options.get("select")
        if isinstance(select, (list, tuple)):
            # a field left out of ``select`` is not in the answer, so it cannot be required there
            rows = (rows[0], tuple(f for f in rows[1] if f in select))
        if options.get("count"):
            spec: Any = _INT
        elif options.get("get"):
            spec = _Obj(*rows)
        else:
            spec = _rows(*rows)
        if answer is None:
            what = "a number" if options.get("count") else "an object" if options.get("get") else "a list of objects"
            return f"expected {what}, got null"
        return _check(spec, answer, ())
    spec = _ANSWERS.get(method)
    if spec is None:
        return None
    if answer is None:
        return f"expected {'a string' if spec is _STR else 'an object'}, got null"
    return _check(spec, answer, ())
