"""YAML text -> plain Python values that remember where each key and value was written.

Built on PyYAML's libyaml (C) composer for speed (8-11x faster than ruamel's round-trip
loader on a 10,000-machine inventory, measured: see docs/adr/0004), with two deliberate departures from PyYAML's YAML 1.1 defaults:

- YAML 1.2 scalars: ``52:54:00:12:34:56`` is a string (YAML 1.1 reads it as a
  base-60 integer), ``yes/no/on/off`` are strings, only ``true/false`` are booleans;
- a duplicate key is an error (PyYAML silently keeps the last one), so two machines
  with the same name can't hide each other.

``load(text)`` returns ``MarkedDict``/``MarkedList``/scalars; ``MarkedDict.key_mark(k)``
and ``.value_mark(k)`` give 1-based ``(line, col)``. Pure.

Bounded on any input (issue 10): YAML aliases share one node, so a few hundred bytes of nested aliases
("billion laughs") expand to billions of values. ``load`` refuses, with a line, a document whose expansion
exceeds ``MAX_VALUES`` values or ``MAX_DEPTH`` levels, and, before composing anything, a document with
more than ``MAX_VALUES`` structure characters (each value needs one: composing costs ~300 bytes per value).
A 10,000-machine inventory (benchmarks/bench_render.py: 0.7 MiB) has 80,051 values nested 3 levels deep.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

try:
    _Base = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml: correct, just slower
    _Base = yaml.SafeLoader  # type: ignore[misc]


#: Values (scalars, mappings, lists; an alias counts as often as it is expanded) one document may produce.
MAX_VALUES = 1_000_000
#: Nesting levels (an inventory has 5 or 6).
MAX_DEPTH = 64
#: Characters that can start a new value; their count bounds the number of values a document composes to.
_STRUCTURE = (",", ":", "-", "[", "{", "?", "\n", "*", "&", "!")


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


def plain(node: Any) -> Any:
    """Marked containers (``load``'s located dicts/lists) -> plain dicts/lists (what pydantic validates)."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def load(text: str) -> Any:
    """Parse one YAML document. Raises ``YamlError`` with a location on bad input."""
    structure = sum(text.count(c) for c in _STRUCTURE)
    if structure > MAX_VALUES:
        raise YamlError(f"the document has {structure:,} structure characters (, : - [ {{ and line breaks); "
                        f"netprov reads at most {MAX_VALUES:,} (no real inventory comes near)", None, None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader.netprov_budget, loader.netprov_built, loader.netprov_height = MAX_VALUES, {}, 0
        return _build(loader, node, 0, _pos(node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        raise YamlError(what, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), None, None) from None
    finally:
        loader.dispose()


def _build(loader: Any, node: yaml.Node, depth: int, ref: tuple[int, int]) -> Any:
    """The value of ``node`` at nesting ``depth``; ``ref`` is where it is used (its key, or its list).

    An alias's target is built once and shared (the tree is read-only): every further use charges the
    target's size to the document's budget, so a bomb is refused after building its few distinct nodes.
    """
    done = loader.netprov_built.get(id(node))
    if done is not None:  # an alias (or a merged value) used again
        value, size, height = done
        loader.netprov_budget -= size
        if loader.netprov_budget < 0:
            raise YamlError(f"the document expands to more than {MAX_VALUES:,} values: aliases (*name) "
                            "nested inside aliases multiply (an alias bomb?)", *ref)
        if depth + height > MAX_DEPTH:
            raise YamlError(f"values nested more than {MAX_DEPTH} levels deep (through aliases)", *ref)
        loader.netprov_height = max(loader.netprov_height, depth + height)
        return value
    if depth > MAX_DEPTH:
        raise YamlError(f"values nested more than {MAX_DEPTH} levels deep", *_pos(node))
    budget_before = loader.netprov_budget
    loader.netprov_budget -= 1
    loader.netprov_height = max(loader.netprov_height, depth)
    outer_height, loader.netprov_height = loader.netprov_height, depth
    value = _build_new(loader, node, depth)
    if loader.netprov_budget < 0:
        raise YamlError(f"the document expands to more than {MAX_VALUES:,} values", *_pos(node))
    loader.netprov_built[id(node)] = (value, budget_before - loader.netprov_budget,
                                      loader.netprov_height - depth)
    loader.netprov_height = max(outer_height, loader.netprov_height)
    return value


def _build_new(loader: Any, node: yaml.Node, depth: int) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        loader.netprov_budget -= len(node.value)  # merged (<<) pairs are copied into each mapping using them
        if loader.netprov_budget < 0:
            raise YamlError(f"the document expands to more than {MAX_VALUES:,} values: merge keys (<<) "
                            "nested inside merge keys multiply", *_pos(node))
        out = MarkedDict()
        out.mark = _pos(node)
        out._keys, out._values = {}, {}
        for knode, vnode in node.value:
            kpos = _pos(knode)
            key = _build(loader, knode, depth + 1, kpos)
            if isinstance(key, (dict, list)):
                raise YamlError("a mapping key must be a plain value", *kpos)
            if key in out:
                line, _ = out._keys[key]
                raise YamlError(f"duplicate key {key!r} (first written at line {line}; "
                                "each name may appear only once)", *kpos)
            out[key] = _build(loader, vnode, depth + 1, kpos)
            out._keys[key] = kpos
            out._values[key] = _pos(vnode)
        return out
    if isinstance(node, yaml.SequenceNode):
        mark = _pos(node)
        out_l = MarkedList(_build(loader, n, depth + 1, mark) for n in node.value)
        out_l.mark = mark
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
