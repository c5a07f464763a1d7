"""Property tests for the core.bulk splitter (pure function, no sockets)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from netprov.adapters.truenas.rpc import plan_bulk_chunks


def _size(protocol, method, params_lists, call_id):
    if protocol == "legacy":
        env = {"msg": "method", "id": call_id, "method": "core.bulk", "params": [method, params_lists]}
    else:
        env = {"jsonrpc": "2.0", "id": call_id, "method": "core.bulk", "params": [method, params_lists]}
    return len(json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode())


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=1500), max_size=60),
       text=st.sampled_from(["x", "é", "\u2603", "\""]),
       protocol=st.sampled_from(["jsonrpc", "legacy"]),
       limit=st.integers(min_value=300, max_value=4000))
def test_chunks_fit_cover_everything_in_order(sizes, text, protocol, limit):
    method = "iscsi.extent.create"
    items = [[{"name": f"n{i}", "comment": text * n}] for i, n in enumerate(sizes)]
    chunks, too_large = plan_bulk_chunks(method, items, protocol=protocol, limit=limit)
    flat = [i for c in chunks for i in c]
    assert sorted(flat + too_large) == list(range(len(items)))
    assert flat == sorted(flat)                        # input order is kept
    assert all(chunks)                                 # no empty core.bulk calls
    worst_id = 10**12 if protocol == "jsonrpc" else "n99999999999"
    for c in chunks:
        assert _size(protocol, method, [items[i] for i in c], worst_id) < limit
    for i in too_large:
        assert _size(protocol, method, [items[i]], worst_id) >= limit - 1


def test_greedy_packing_uses_few_messages():
    items = [[{"comment": "c" * 1000}] for _ in range(200)]   # ~200 KB
    chunks, too_large = plan_bulk_chunks("m", items)
    assert not too_large and len(chunks) == 4
