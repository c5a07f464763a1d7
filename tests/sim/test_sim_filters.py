"""filter_list semantics (middleware TS-25.04.2.4 src/middlewared/middlewared/utils/__init__.py:584), unit
level and over the wire."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simhelpers import RpcFailure

from truenas_sim.errors import MatchNotFound, ValidationErrors
from truenas_sim.filters import filter_list

ROWS = [
    {
        "id": 1,
        "name": "alpha",
        "tags": ["a", "b"],
        "props": {"size": {"parsed": 10}},
        "n": None,
        "dot.key": "x",
    },
    {"id": 2, "name": "Beta", "tags": ["c"], "props": {"size": {"parsed": 30}}, "n": 5},
    {"id": 3, "name": "gamma", "tags": [], "props": {"size": {"parsed": 20}}, "n": 1},
]


def ids(r):
    return [x["id"] for x in r]


@pytest.mark.parametrize(
    "flt,expected",
    [
        ([["id", "=", 2]], [2]),
        ([["id", "!=", 2]], [1, 3]),
        ([["id", ">", 1], ["id", "<=", 3]], [2, 3]),
        ([["name", "~", "^[ab]"]], [1]),
        ([["name", "C^", "b"]], [2]),
        ([["name", "C=", "BETA"]], [2]),
        ([["name", "$", "ma"]], [3]),
        ([["name", "!$", "ma"]], [1, 2]),
        ([["name", "!^", "a"]], [2, 3]),
        ([["id", "in", [1, 3]]], [1, 3]),
        ([["id", "nin", [1, 3]]], [2]),
        ([["tags", "rin", "b"]], [1]),
        ([["tags", "rnin", "b"]], [2, 3]),
        ([["name", "rin", "amm"]], [3]),
        ([["props.size.parsed", ">=", 20]], [2, 3]),
        ([["tags.*", "=", "c"]], [2]),
        ([["tags.0", "=", "a"]], [1]),
        ([["dot\\.key", "=", "x"]], [1]),
        ([["missing", "=", None]], []),
        ([["OR", [["id", "=", 1], ["name", "=", "gamma"]]]], [1, 3]),
        ([["OR", [[["id", ">", 1], ["n", "=", 1]], ["id", "=", 1]]]], [1, 3]),
        ([["n", "~", "^$"]], [1]),  # null counts as "" for regex
    ],
)
def test_filter_ops(flt, expected):
    assert ids(filter_list(ROWS, flt, {})) == expected


def test_options():
    assert filter_list(ROWS, [], {"count": True}) == 3
    assert ids(filter_list(ROWS, [], {"order_by": ["-props.size.parsed"]})) == [2, 3, 1]
    assert ids(filter_list(ROWS, [], {"order_by": ["nulls_last:n"]})) == [3, 2, 1]
    assert ids(filter_list(ROWS, [], {"order_by": ["nulls_first:n"]})) == [1, 3, 2]
    assert ids(filter_list(ROWS, [], {"offset": 1, "limit": 1})) == [2]
    assert filter_list(ROWS, [["id", "=", 3]], {"get": True})["name"] == "gamma"
    assert filter_list(ROWS, [], {"select": ["id", ["name", "label"], "props.size.parsed"], "limit": 1}) == [
        {"id": 1, "label": "alpha", "props": {"size": {"parsed": 10}}}
    ]
    with pytest.raises(MatchNotFound):
        filter_list(ROWS, [["id", "=", 9]], {"get": True})
    with pytest.raises(ValidationErrors):
        filter_list(ROWS, [], {"get": True, "limit": 2})
    with pytest.raises(ValidationErrors):
        filter_list(ROWS, [], {"get": True, "offset": 1})
    with pytest.raises(ValidationErrors):
        filter_list(ROWS, [], {"bogus": 1}, strict=True)
    filter_list(ROWS, [], {"bogus": 1}, strict=False)
    with pytest.raises(ValidationErrors):
        filter_list(ROWS, [["id", "===", 1]], {})


@given(
    st.lists(st.integers(-50, 50), max_size=20), st.integers(-50, 50), st.integers(0, 5), st.integers(0, 5)
)
def test_filter_matches_python_semantics(values, pivot, offset, limit):
    rows = [{"id": i, "v": v} for i, v in enumerate(values)]
    got = filter_list(rows, [["v", ">=", pivot]], {"order_by": ["v", "id"], "offset": offset, "limit": limit})
    exp = sorted((r for r in rows if r["v"] >= pivot), key=lambda r: (r["v"], r["id"]))[offset:]
    exp = exp[:limit] if limit else exp
    assert got == exp
    assert filter_list(rows, [["v", ">=", pivot]], {"count": True}) == len(
        [r for r in rows if r["v"] >= pivot]
    )


def test_query_options_over_the_wire(api):
    for ip in ("0.0.0.0", "::", "192.0.2.10"):
        api.call("iscsi.portal.create", {"listen": [{"ip": ip}], "comment": f"c-{ip}"})
    assert api.call("iscsi.portal.query", [], {"count": True}) == 3
    assert api.call("iscsi.portal.query", [["listen.*.ip", "=", "::"]], {"get": True})["id"] == 2
    assert api.call("iscsi.portal.query", [], {"order_by": ["-id"], "limit": 2, "select": ["id"]}) == [
        {"id": 3},
        {"id": 2},
    ]
    assert api.call("iscsi.portal.query", [["comment", "C^", "C-1"]], {"select": ["id"]}) == [{"id": 3}]
    with pytest.raises(RpcFailure) as ei:
        api.call("iscsi.portal.query", [], {"bogus": True})  # 25.04+: extra="forbid"
    assert ei.value.messages() == ["Extra inputs are not permitted"]


def test_date_suffix_compares_as_timestamp():
    rows = [{"id": 1, "t": {"$date": 1577836800000}}, {"id": 2, "t": {"$date": 1735689600000}}]  # 2020, 2025
    assert ids(filter_list(rows, [["t.$date", ">", "2021-01-01T00:00:00"]], {})) == [2]
    assert ids(filter_list(rows, [["t.$date", "<=", "2020-01-01T00:00:00Z"]], {})) == [1]
