"""What one ``pool.dataset.query`` reads on each release (the work, for the cost model), and what it returns
under its ``extra`` options; pool_dataset.py's query handler runs it."""

from __future__ import annotations

from dataclasses import dataclass

# What a real ``pool.dataset.query`` reads is decided before any filter runs (filters and ``select`` trim
# the answer, not the work; each point checked in the middleware source at the tag named):
#
# * FreeNAS 11.3 (middleware TN-11.3-U5 src/middlewared/middlewared/plugins/pool.py:2545 ``query``):
#   every id/name/pool/type term goes to ``zfs.dataset.query``
#   with ``extra`` passed through whole; that pushes down only a lone ``["id", "=", X]`` (then
#   ``__getstate__()``: X and its children, every property), otherwise it reads every dataset with
#   ``extra.properties``. ``retrieve_children`` does not exist: children always come.
# * CORE 12/13 (middleware TN-13.0-U6.1 src/middlewared/middlewared/plugins/pool.py:2805):
#   the first ``id``/``name`` ``=`` term is pushed down (X and its
#   children nested, ``flat`` not applied), else every dataset; only ``extra.flat`` is passed on, so
#   ``properties`` and ``retrieve_children`` are ignored: every property, always children.
# * SCALE 24.10 (middleware TS-24.10.2.2 src/middlewared/middlewared/plugins/pool_/dataset.py:178):
#   a lone ``["id", "=", X]`` is pushed down; otherwise the
#   read starts at the pool roots. ``retrieve_children=false`` then means the roots alone, so a
#   ``["id", "^", "tank/x"]`` filter finds nothing. ``properties`` limits the ZFS properties; user
#   properties (``comments`` included) always come (no ``retrieve_user_props`` yet).
# * 25.04 (middleware TS-25.04.2.4 src/middlewared/middlewared/plugins/pool_/dataset.py:182):
#   the same, pushdown for a lone ``id``/``name`` ``=``/``in`` term; ``retrieve_user_props``.
# * 25.10 and later (middleware TS-25.10.1 src/middlewared/middlewared/plugins/pool_/dataset_query_utils.py:1020
#   ``generic_query``): nothing is pushed down, every dataset is read (a filter makes it recurse even
#   with ``retrieve_children=false``).
#
# The cost model (``Knobs.dataset_cost``, ``Knobs.property_cost``) charges each dataset read, and each
# property read from it: the ZFS properties the simulator models (all of them unless the release honours
# ``extra.properties``) plus one per user property (``comments`` and ``managedby`` are user properties).

#: Entry key -> ZFS property name, for every ZFS property the simulator models (``extra.properties`` takes
#: ZFS names). The volume-only ones are marked.
ZFS_PROPS = {"compression": "compression", "sync": "sync", "deduplication": "dedup", "readonly": "readonly",
             "checksum": "checksum", "copies": "copies", "refreservation": "refreservation",
             "reservation": "reservation", "used": "used", "available": "available", "origin": "origin",
             "creation": "creation", "key_format": "keyformat", "encryption_algorithm": "encryption"}
ZFS_VOLUME_PROPS = {"volsize": "volsize", "volblocksize": "volblocksize", "snapdev": "snapdev"}
#: Entry keys that are user properties surfaced at the top level.
USER_PROP_KEYS = {"comments", "managedby"}
_CRYPTO = {"encryption", "encryptionroot", "keyformat", "keylocation", "keystatus"}


def _release(p) -> tuple:
    try:
        return tuple(int(x) for x in p.name.split(".")[:2])
    except ValueError:
        return (99,)


@dataclass
class DatasetRead:
    """Which datasets one ``pool.dataset.query`` reads, and how (see the notes above)."""

    starts: list          # datasets the read starts at (with their children when ``children``)
    children: bool
    flat: bool
    props: list | None    # ZFS property names honoured; None = all
    user_props: bool
    everything: bool = False

    def _read_names(self, datasets) -> list:
        if self.everything:
            return list(datasets)
        if not self.children:
            return list(self.starts)
        out = []
        for s in self.starts:
            out.append(s)
            out += [n for n in datasets if n.startswith(s + "/")]
        return out

    def read_count(self, datasets) -> int:
        return len(self._read_names(datasets))

    def props_read(self, datasets) -> int:
        total = 0
        for n in self._read_names(datasets):
            d = datasets[n]
            keys = dict(ZFS_PROPS, **(ZFS_VOLUME_PROPS if d["type"] == "VOLUME" else {}))
            total += len(keys) if self.props is None else sum(1 for z in keys.values() if z in self.props)
            if self.user_props:
                total += len(d.get("user_properties") or {}) + sum(
                    1 for k in USER_PROP_KEYS if d.get(k) is not None)
        return total


def dataset_read_plan(p, filters: list, extra: dict, datasets) -> DatasetRead:
    """What a ``pool.dataset.query(filters, {"extra": extra})`` reads on profile ``p``'s release."""
    v = _release(p)
    props = extra.get("properties") if isinstance(extra.get("properties"), list) else None
    flat = extra.get("flat", True) is not False
    children = extra.get("retrieve_children", True) is not False
    user_props = True
    terms = [f for f in filters if isinstance(f, list) and len(f) == 3]
    roots = sorted(n for n in datasets if "/" not in n)

    def lone(ops, fields=("id",)):
        if len(filters) == 1 and len(terms) == 1 and terms[0][0] in fields and terms[0][1] in ops:
            val = terms[0][2]
            return [val] if isinstance(val, str) else [x for x in val if isinstance(x, str)]
        return None

    if v < (12,):  # FreeNAS 11.3
        zf = [f for f in terms if f[0] in ("id", "name", "pool", "type")]
        lone_id = len(zf) == 1 and zf[0][:2] == ["id", "="] and isinstance(zf[0][2], str)
        pushed = [zf[0][2]] if lone_id else None
        if pushed is not None:
            return DatasetRead([n for n in pushed if n in datasets], True, False, None, True)
        return DatasetRead(roots, True, flat, props, True)
    if v < (20,):  # CORE 12/13: only extra.flat reaches ZFS
        eq = [f for f in terms if f[0] in ("id", "name") and f[1] == "=" and isinstance(f[2], str)]
        if eq:
            return DatasetRead([n for n in [eq[0][2]] if n in datasets], True, False, None, True)
        return DatasetRead(roots, True, flat, None, True)
    if v >= (25, 10):
        if props and not any(z in props for z in {**ZFS_PROPS, **ZFS_VOLUME_PROPS}.values()):
            props = None  # only unknown names: the default set ([] is none at all)
        user_props = extra.get("retrieve_user_props", True) is not False
        return DatasetRead([], children, flat, props, user_props, everything=True)
    if v < (25, 4):  # 24.10
        pushed = lone(("=",))
    else:  # 25.04
        pushed = lone(("=", "in"), ("id", "name"))
        user_props = extra.get("retrieve_user_props", True) is not False
    starts = roots if pushed is None else [n for n in pushed if n in datasets]
    return DatasetRead(starts, children, flat, props, user_props)


def flatten(rows: list) -> list:
    out = []
    for r in rows:
        out.append(r)
        out += flatten(r.get("children") or [])
    return out


def limit_props(entry: dict, plan: DatasetRead) -> dict:
    """``entry`` (and its nested children) as the release returns it under ``plan``'s options."""
    if plan.props is None and plan.user_props:
        return entry
    keep_zfs = None if plan.props is None else set(plan.props)
    out = {}
    for k, v in entry.items():
        z = ZFS_PROPS.get(k) or ZFS_VOLUME_PROPS.get(k)
        if z is not None and keep_zfs is not None and z not in keep_zfs:
            continue
        if (k in USER_PROP_KEYS or k == "user_properties") and not plan.user_props:
            continue
        if k in ("encrypted", "encryption_root", "key_loaded", "locked") and keep_zfs is not None \
                and not (keep_zfs & _CRYPTO):
            continue  # encryption fields come only with an encryption property
        if k == "children" and isinstance(v, list):
            v = [limit_props(c, plan) for c in v]
        out[k] = v
    return out


def wanted_keys(filters, options) -> set | None:
    """Top-level entry keys a query needs (None = all): lets pool.dataset.query skip unselected properties."""
    select = options.get("select")
    if not select:
        return None
    keys = set()

    def head(path):
        if isinstance(path, str):
            keys.add(path.split(".", 1)[0].lstrip("-").replace("nulls_first:", "").replace("nulls_last:", ""))

    for s in select:
        head(s[0] if isinstance(s, list) and s else s)

    def walk(fs):
        for f in fs if isinstance(fs, list) else []:
            if isinstance(f, list) and len(f) == 2 and f[0] == "OR":
                for sub in f[1] if isinstance(f[1], list) else []:
                    walk(sub if isinstance(sub, list) and sub and isinstance(sub[0], list) else [sub])
            elif isinstance(f, list) and f:
                head(f[0])

    walk(filters)
    for o in options.get("order_by") or []:
        if isinstance(o, str):
            head(o.replace("nulls_first:", "").replace("nulls_last:", "").lstrip("-"))
    return keys
