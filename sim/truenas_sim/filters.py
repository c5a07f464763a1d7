"""`filter_list` semantics of the middleware: middleware TS-25.04.2.4
src/middlewared/middlewared/utils/__init__.py:584 (``filters.filter_list``; operators ``filterop`` :381,
``select`` :505, ``order_by`` :565, ``get`` :578)."""

from __future__ import annotations

import copy
import re
from datetime import datetime

from .errors import MatchNotFound, ValidationErrors

_MISSING = object()

QUERY_OPTION_KEYS = {
    "relationships",
    "extend",
    "extend_context",
    "prefix",
    "extra",
    "order_by",
    "select",
    "count",
    "get",
    "offset",
    "limit",
    "force_sql_filters",
}

_OPS = {"=", "!=", ">", ">=", "<", "<=", "~", "in", "nin", "rin", "rnin", "^", "!^", "$", "!$"}


def _split_path(path: str) -> list[str]:
    parts, cur, i = [], "", 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path) and path[i + 1] == ".":
            cur += "."
            i += 2
            continue
        if c == ".":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def get_values(obj, path: str) -> list:
    """All values at a dotted path (``*`` fans out over lists); empty list if missing."""
    values = [obj]
    for part in _split_path(path):
        nxt = []
        for v in values:
            if part == "*" and isinstance(v, list):
                nxt.extend(v)
            elif isinstance(v, dict):
                if part in v:
                    nxt.append(v[part])
            elif isinstance(v, list) and part.lstrip("-").isdigit():
                idx = int(part)
                if -len(v) <= idx < len(v):
                    nxt.append(v[idx])
        values = nxt
    return values


def _to_date(v):
    from datetime import timezone

    if isinstance(v, dict) and "$date" in v:
        v = v["$date"]
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v / 1000, tz=timezone.utc).replace(tzinfo=None)
    if isinstance(v, str):
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
        if d.tzinfo is not None:
            d = d.astimezone(timezone.utc).replace(tzinfo=None)
        return d
    return v


def _cmp(op: str, x, value) -> bool:
    ci = op.startswith("C") and op != "C"
    if ci:
        op = op[1:]

        def low(a):
            if isinstance(a, str):
                return a.lower()
            if isinstance(a, list):
                return [low(i) for i in a]
            return a

        x, value = low(x), low(value)
    try:
        if op == "=":
            return x == value
        if op == "!=":
            return x != value
        if op == ">":
            return x is not None and x > value
        if op == ">=":
            return x is not None and x >= value
        if op == "<":
            return x is not None and x < value
        if op == "<=":
            return x is not None and x <= value
        if op == "~":
            return re.match(value, "" if x is None else str(x)) is not None
        if op == "in":
            return x in value
        if op == "nin":
            return x not in value
        if op == "rin":
            return x is not None and value in x
        if op == "rnin":
            return x is not None and value not in x
        if op == "^":
            return isinstance(x, str) and x.startswith(value)
        if op == "!^":
            return isinstance(x, str) and not x.startswith(value)
        if op == "$":
            return isinstance(x, str) and x.endswith(value)
        if op == "!$":
            return isinstance(x, str) and not x.endswith(value)
    except TypeError:
        return False
    raise ValueError(f"Invalid operation: {op}")


def _validate_filters(filters, schema: str, depth: int = 0):
    if not isinstance(filters, list):
        raise ValidationErrors([(f"{schema}.filters", "Input should be a valid list", 22)])
    if depth > 3:
        raise ValidationErrors([(f"{schema}.filters", "Maximum filter depth exceeded", 22)])
    for f in filters:
        if isinstance(f, list) and len(f) == 2 and f[0] == "OR":
            if not isinstance(f[1], list):
                raise ValidationErrors([(f"{schema}.filters", "OR filter must contain a list", 22)])
            for sub in f[1]:
                if isinstance(sub, list) and sub and isinstance(sub[0], list):
                    _validate_filters(sub, schema, depth + 1)
                else:
                    _validate_filters([sub], schema, depth + 1)
            continue
        if not (isinstance(f, (list, tuple)) and len(f) == 3 and isinstance(f[0], str)):
            raise ValidationErrors([(f"{schema}.filters", f"Invalid filter {f!r}", 22)])
        op = f[1]
        base = op[1:] if isinstance(op, str) and op.startswith("C") and op != "C" else op
        if base not in _OPS or (op.startswith("C") and base == "~"):
            raise ValidationErrors([(f"{schema}.filters", f"Invalid operation: {op}", 22)])


def _match_term(obj, term) -> bool:
    if isinstance(term, (list, tuple)) and len(term) == 2 and term[0] == "OR":
        for sub in term[1]:
            if isinstance(sub, list) and sub and isinstance(sub[0], list):
                if all(_match_term(obj, t) for t in sub):
                    return True
            elif _match_term(obj, sub):
                return True
        return False
    name, op, value = term
    if name.endswith(".$date"):
        vals = [_to_date(v) for v in get_values(obj, name[: -len(".$date")])]
        value = _to_date(value)
    else:
        vals = get_values(obj, name)
    if not vals:
        return False  # a missing key never matches
    return any(_cmp(op, v, value) for v in vals)


def _set_nested(out: dict, path: list[str], value):
    cur = out
    for p in path[:-1]:
        cur = cur.setdefault(p, {})
    cur[path[-1]] = value


def _select(entry: dict, select: list) -> dict:
    out: dict = {}
    for s in select:
        if isinstance(s, list):
            field, alias = s[0], s[1]
            vals = get_values(entry, field)
            if vals:
                out[alias] = copy.deepcopy(vals[0])
        else:
            parts = _split_path(s)
            vals = get_values(entry, s)
            if vals:
                _set_nested(out, parts, copy.deepcopy(vals[0]))
    return out


def _order(rows: list, order_by: list) -> list:
    for key in reversed(order_by):
        nulls = None
        if key.startswith("nulls_first:"):
            nulls, key = "first", key[len("nulls_first:") :]
        elif key.startswith("nulls_last:"):
            nulls, key = "last", key[len("nulls_last:") :]
        reverse = key.startswith("-")
        if reverse:
            key = key[1:]

        def k(r, key=key):
            v = get_values(r, key)
            return v[0] if v else None

        present = [r for r in rows if k(r) is not None]
        absent = [r for r in rows if k(r) is None]
        try:
            present.sort(key=k, reverse=reverse)
        except TypeError:
            present.sort(key=lambda r: str(k(r)), reverse=reverse)
        if nulls == "first":
            rows = absent + present
        elif nulls == "last":
            rows = present + absent
        else:
            rows = present + absent if reverse else absent + present
    return rows


def check_options(options, schema: str, strict: bool) -> dict:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValidationErrors([(f"{schema}.options", "Input should be a valid dictionary", 22)])
    if strict:
        verrors = ValidationErrors()
        for k in options:
            if k not in QUERY_OPTION_KEYS:
                verrors.add(f"{schema}.options.{k}", "Extra inputs are not permitted")
        verrors.check()
    if options.get("get") and (options.get("limit", 0) or 0) > 1:
        raise ValidationErrors(
            [(f"{schema}.options.get", "Invalid options combination: get with limit > 1", 22)]
        )
    if options.get("get") and options.get("offset"):
        raise ValidationErrors(
            [(f"{schema}.options.get", "Invalid options combination: get with offset", 22)]
        )
    return options


def filter_list(rows: list, filters=None, options=None, *, schema: str = "query", strict: bool = True):
    filters = filters or []
    _validate_filters(filters, schema)
    options = check_options(options, schema, strict)
    out = [r for r in rows if all(_match_term(r, t) for t in filters)]
    if options.get("count"):
        return len(out)
    if options.get("order_by"):
        out = _order(out, list(options["order_by"]))
    offset = options.get("offset") or 0
    limit = options.get("limit") or 0
    if offset:
        out = out[offset:]
    if limit:
        out = out[:limit]
    if options.get("select"):
        out = [_select(r, options["select"]) for r in out]
    if options.get("get"):
        if not out:
            raise MatchNotFound()
        return out[0]
    return out
