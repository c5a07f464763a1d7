"""YAML text -> plain Python values that remember where each key and value was written.

Built on PyYAML's libyaml (C) composer for speed (8-11x faster than ruamel's round-trip
loader on a 10,000-machine inventory, measured: see docs/adr/0004), with two deliberate departures from PyYAML's YAML 1.1 defaults:

- YAML 1.2 scalars: ``52:54:00:12:34:56`` is a string (YAML 1.1 reads it as a
  base-60 integer), ``yes/no/on/off`` are strings, only ``true/false`` are booleans;
- a duplicate key is an error (PyYAML silently keeps the last one), so two machines
  with the same name can't hide each other.

``load(text)`` returns ``MarkedDict``/``MarkedList``/scalars; ``MarkedDict.key_mark(k)``
and ``.value_mark(k)`` give 1-based ``(line, col)``. Pure.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

try:
    _Base = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml: correct, just slower
    _Base = yaml.SafeLoader  # type: ignore[misc]


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None, col: int | None) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


class _Loader(_Base):  # type: ignore[misc,valid-type]
    pass


# YAML 1.2 core schema for the implicit types that matter here.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int",
                              re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                         r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
                              list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                              ["~", "n", "N", ""])


_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOLS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_STR, _INT, _FLOAT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
_generic_resolve = _Loader.resolve


def _resolve(self: Any, kind: Any, value: Any, implicit: Any) -> str:
    """The same YAML 1.2 resolution as the resolvers above, without PyYAML's per-scalar loop:
    the libyaml composer calls this for every scalar, so it dominates large inventories."""
    if kind is yaml.ScalarNode and implicit[0]:
        if value in _NULLS:
            return _NULL
        first = value[0]
        if first in "-+0123456789.":
            if _INT_RE.match(value):
                return _INT
            if _FLOAT_RE.match(value):
                return _FLOAT
            return _STR
        if value in _BOOLS:
            return _BOOL
        if value == "<<":
            return "tag:yaml.org,2002:merge"
        return _STR
    return _generic_resolve(self, kind, value, implicit)


_Loader.resolve = _resolve


def _int12(loader: Any, node: yaml.ScalarNode) -> int:
    text = node.value
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # YAML 1.2: a leading zero is decimal, not octal


_Loader.add_constructor("tag:yaml.org,2002:int", _int12)


class MarkedDict(dict):
    """A dict that knows the 1-based (line, col) of each key and value."""

    __slots__ = ("mark", "_keys", "_values")

    def key_mark(self, key: Any) -> tuple[int, int]:
        return self._keys[key]

    def value_mark(self, key: Any) -> tuple[int, int]:
        return self._values[key]


class MarkedList(list):
    __slots__ = ("mark", "_items")

    def item_mark(self, index: int) -> tuple[int, int]:
        return self._items[index]


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load(text: str) -> Any:
    """Parse one YAML document. Raises ``YamlError`` with a location on bad input."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _build(loader, node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        raise YamlError(what, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), None, None) from None
    finally:
        loader.dispose()


def _build(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out = MarkedDict()
        out.mark = _pos(node)
        out._keys, out._values = {}, {}
        for knode, vnode in node.value:
            key = _build(loader, knode)
            if isinstance(key, (dict, list)):
                raise YamlError("a mapping key must be a plain value", *_pos(knode))
            if key in out:
                line, _ = out._keys[key]
                raise YamlError(f"duplicate key {key!r} (first written at line {line}; "
                                "each name may appear only once)", *_pos(knode))
            out[key] = _build(loader, vnode)
            out._keys[key] = _pos(knode)
            out._values[key] = _pos(vnode)
        return out
    if isinstance(node, yaml.SequenceNode):
        out_l = MarkedList(_build(loader, n) for n in node.value)
        out_l.mark = _pos(node)
        out_l._items = [_pos(n) for n in node.value]
        return out_l
    if isinstance(node, yaml.ScalarNode):  # the common tags without PyYAML's constructor machinery
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _INT:
            return _int12(loader, node)
        if tag == _BOOL:
            return node.value in ("true", "True", "TRUE")
        if tag == _NULL:
            return None
    value = loader.construct_object(node, deep=True)
    if isinstance(value, (bytes, bytearray)) or type(value).__name__ in ("date", "datetime"):
        return node.value  # keep timestamps/binary as the text the user wrote
    return value
