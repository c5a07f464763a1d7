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
    return {"target": raw.get("target") or "", "initiator": raw.get("initiator") or ""}


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
