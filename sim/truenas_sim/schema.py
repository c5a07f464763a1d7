"""Tiny argument-schema checker producing the middleware's messages.

Two dialects: the legacy ``middlewared.schema`` messages (CORE, SCALE <= 24.10 and legacy-schema methods)
and the 25.04+ pydantic messages (pydantic's own texts; the models are middleware TS-25.04.2.4
src/middlewared/middlewared/api/base/model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from .errors import ValidationErrors

_REQUIRED = object()
# 25.04+ models cap strings at 1024 characters unless a field overrides it:
# middleware TS-25.04.2.4 src/middlewared/middlewared/api/base/model.py:24 (str_max_length=1024)
PYDANTIC_STR_MAX = 1024


@dataclass
class Field:
    kind: str  # str, int, bool, list, dict, any
    default: Any = None  # _REQUIRED => required
    null: bool = False
    enum: tuple | None = None
    max_length: int | None = None
    min_length: int | None = None
    range: tuple | None = None  # (min, max)
    items: dict[str, Field] | Field | None = None  # for list of dicts / list of scalars
    extra: dict = dc_field(default_factory=dict)

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def req(kind, **kw) -> Field:
    return Field(kind, default=_REQUIRED, **kw)


def opt(kind, default=None, **kw) -> Field:
    return Field(kind, default=default, **kw)


_TYPE_MSG_PYD = {
    "str": "Input should be a valid string",
    "int": "Input should be a valid integer",
    "bool": "Input should be a valid boolean",
    "list": "Input should be a valid list",
    "dict": "Input should be a valid dictionary",
}
_TYPE_MSG_LEGACY = {
    "str": "Not a string",
    "int": "Not an integer",
    "bool": "Not a boolean",
    "list": "Not a list",
    "dict": "Not a dictionary",
}


def _type_ok(kind: str, v) -> bool:
    if kind == "any":
        return True
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "list":
        return isinstance(v, list)
    if kind == "dict":
        return isinstance(v, dict)
    raise AssertionError(kind)


def _fmt_enum(values) -> str:
    vals = [repr(v) if isinstance(v, str) else str(v) for v in values]
    if len(vals) == 1:
        return vals[0]
    return ", ".join(vals[:-1]) + " or " + vals[-1]


def check_value(pyd: bool, attr: str, f: Field, v, verrors: ValidationErrors):
    if v is None:
        if f.null:
            return None
        # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
        verrors.add(
            attr,
            _TYPE_MSG_PYD[f.kind]
            if pyd and f.kind in _TYPE_MSG_PYD
            else ("Input should be a valid " + f.kind if pyd else "null not allowed"),
        )
        return None
    if not _type_ok(f.kind, v):
        verrors.add(attr, (_TYPE_MSG_PYD if pyd else _TYPE_MSG_LEGACY).get(f.kind, "Invalid type"))
        return None
    if f.enum is not None and v not in f.enum:
        # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
        verrors.add(attr, f"Input should be {_fmt_enum(f.enum)}" if pyd else f"Invalid choice: {v}")
        return None
    max_length = f.max_length if f.max_length is not None else (PYDANTIC_STR_MAX if pyd else None)
    if max_length is not None and isinstance(v, str) and len(v) > max_length:
        # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
        verrors.add(
            attr,
            f"String should have at most {max_length} characters"
            if pyd
            else f"The value may not be longer than {max_length} characters",
        )
        return None
    if f.min_length is not None and isinstance(v, (str, list)) and len(v) < f.min_length:
        if isinstance(v, str):
            # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
            verrors.add(
                attr,
                f"String should have at least {f.min_length} character" + ("s" if f.min_length != 1 else "")
                if pyd
                else "Empty value not allowed",
            )
        else:
            # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
            # not in the middleware at any profile's tag ('At least one item is required'): the
            # legacy List(empty=False) says 'Empty value not allowed' (schema.py); the
            # simulator's wording for a list below min_length
            verrors.add(
                attr,
                f"List should have at least {f.min_length} item"
                + ("s" if f.min_length != 1 else "")
                + " after validation, not 0"
                if pyd
                else "At least one item is required",
            )
        return None
    if f.range is not None and isinstance(v, int):
        lo, hi = f.range
        if lo is not None and v < lo:
            # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
            # mw: validators.py:134 @ TN-13.0-U6.1 | greater or equal than {self.min}
            verrors.add(
                attr,
                f"Input should be greater than or equal to {lo}"
                if pyd
                else f"Should be greater or equal than {lo}",
            )
            return None
        if hi is not None and v > hi:
            # mw: api/base/model.py:195 @ TS-26.0.0-BETA.3 | class BaseModel(PydanticBaseModel
            # not in the middleware at any profile's tag ('Should be lower or equal than'):
            # validators.Range says 'less or equal than {max}' (not 'lower'): the simulator's
            # wording, pinned by tests; no netprov path depends on it
            verrors.add(
                attr,
                f"Input should be less than or equal to {hi}"
                if pyd
                else f"Should be lower or equal than {hi}",
            )
            return None
    if f.kind == "list" and f.items is not None:
        out = []
        for i, item in enumerate(v):
            if isinstance(f.items, dict):
                if not isinstance(item, dict):
                    verrors.add(f"{attr}.{i}", _TYPE_MSG_PYD["dict"] if pyd else _TYPE_MSG_LEGACY["dict"])
                    continue
                out.append(check_dict(pyd, f"{attr}.{i}", f.items, item, verrors))
            else:
                out.append(check_value(pyd, f"{attr}.{i}", f.items, item, verrors))
        return out
    return v


def check_dict(
    pyd: bool,
    schema: str,
    spec: dict,
    data,
    verrors: ValidationErrors | None = None,
    update: bool = False,
    raise_now: bool = True,
) -> dict:
    own = verrors is None
    if own:
        verrors = ValidationErrors()
    if not isinstance(data, dict):
        verrors.add(schema, _TYPE_MSG_PYD["dict"] if pyd else "A dict was expected")
        if own and raise_now:
            verrors.check()
        return {}
    out: dict = {}
    for key, value in data.items():
        if key not in spec:
            verrors.add(
                f"{schema}.{key}", "Extra inputs are not permitted" if pyd else "Field was not expected"
            )
            continue
        out[key] = check_value(pyd, f"{schema}.{key}", spec[key], value, verrors)
    if not update:
        for key, f in spec.items():
            if key in out:
                continue
            if f.required:
                verrors.add(f"{schema}.{key}", "Field required" if pyd else "attribute required")
            else:
                d = f.default
                out[key] = d() if callable(d) else d
    if own and raise_now:
        verrors.check()
    return out


def check_arity(pyd: bool, method: str, params: list, max_args: int, min_args: int = 0):
    if len(params) > max_args:
        if pyd:
            raise ValidationErrors(
                [(None, f"Too many arguments (expected {max_args}, found {len(params)})", 22)]
            )
        raise ValidationErrors([(None, f"Too many arguments (expected {max_args}, found {len(params)})", 22)])
    if len(params) < min_args:
        raise ValidationErrors(
            [(None, f"Not enough arguments (expected at least {min_args}, found {len(params)})", 22)]
        )


Validator = Callable[[Any], None]
