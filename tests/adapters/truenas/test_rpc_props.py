"""Property tests without sockets: the core.bulk splitter and error-message hygiene."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient, plan_bulk_chunks
from netprov.errors import ApiError, ApiValidationError, RemoteError


def _size(protocol, method, params_lists, call_id):
    if protocol == "legacy":
        env = {"msg": "method", "id": call_id, "method": "core.bulk", "params": [method, params_lists]}
    else:
        env = {"jsonrpc": "2.0", "id": call_id, "method": "core.bulk", "params": [method, params_lists]}
    return len(json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode())


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=1500), max_size=60),
    text=st.sampled_from(["x", "é", "\u2603", '"']),
    protocol=st.sampled_from(["jsonrpc", "legacy"]),
    limit=st.integers(min_value=300, max_value=4000),
)
def test_chunks_fit_cover_everything_in_order(sizes, text, protocol, limit):
    method = "iscsi.extent.create"
    items = [[{"name": f"n{i}", "comment": text * n}] for i, n in enumerate(sizes)]
    chunks, too_large = plan_bulk_chunks(method, items, protocol=protocol, limit=limit)
    flat = [i for c in chunks for i in c]
    assert sorted(flat + too_large) == list(range(len(items)))
    assert flat == sorted(flat)  # input order is kept
    assert all(chunks)  # no empty core.bulk calls
    worst_id = 10**12 if protocol == "jsonrpc" else "n99999999999"
    for c in chunks:
        assert _size(protocol, method, [items[i] for i in c], worst_id) < limit
    for i in too_large:
        assert _size(protocol, method, [items[i]], worst_id) >= limit - 1


def test_greedy_packing_uses_few_messages():
    items = [[{"comment": "c" * 1000}] for _ in range(200)]  # ~200 KB
    chunks, too_large = plan_bulk_chunks("m", items)
    assert not too_large and len(chunks) == 4


API_KEY = "1-" + "s" * 64
secrets_st = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=12, max_size=24
)  # CHAP secrets: 12-16


def _client(protocol):
    c = TrueNASClient(creds=Credentials(api_key=API_KEY), timeout=1, max_inflight=1)
    c.protocol, c.host, c.version = protocol, "nas.example", "TrueNAS-25.04.1"
    return c


@settings(max_examples=150, deadline=None)
@given(
    secret=secrets_st,
    key=st.sampled_from(["secret", "peersecret", "password", "api_key", "chap_secret"]),
    template=st.sampled_from(["{s}", "bad value {s}\nsecond line", "[EINVAL] x.y: {s} is wrong\n"]),
    shape=st.sampled_from(["rpc-validation", "rpc-call", "legacy-validation", "legacy-call"]),
    leak_key=st.booleans(),
)
def test_error_messages_never_echo_secrets_and_are_one_line(secret, key, template, shape, leak_key):
    assume("*" not in secret)  # "********" is the mask itself
    # A "secret" that is a piece of the fixed text (e.g. "iscsi.auth.c") would be found in any message.
    assume(secret not in f"iscsi.auth.create (auth[1]): iscsi_auth_create.{key}: Invalid params Method call error")
    text = template.format(s=secret) + (f" {API_KEY}" if leak_key else "")
    triples = [["iscsi_auth_create." + key, text, 22]]
    if shape == "rpc-validation":
        err = {
            "code": -32602,
            "message": "Invalid params",
            "data": {"error": 22, "errname": "EINVAL", "reason": text, "trace": None, "extra": triples},
        }
    elif shape == "rpc-call":
        err = {
            "code": -32001,
            "message": "Method call error",
            "data": {"error": 14, "errname": "EFAULT", "reason": text, "trace": None, "extra": None},
        }
    elif shape == "legacy-validation":
        err = {"error": 11, "errname": "EAGAIN", "type": "VALIDATION", "reason": text, "extra": triples}
    else:
        err = {"error": 14, "errname": "EFAULT", "type": None, "reason": text, "extra": None}
    c = _client("jsonrpc" if shape.startswith("rpc") else "legacy")
    params = ({"tag": 1, "user": "u", key: secret},)
    e = c._map_error("iscsi.auth.create", err, "auth[1]", params)
    assert isinstance(e, RemoteError)
    msg = str(e)
    assert secret not in msg and API_KEY not in msg
    assert "\n" not in msg and msg.startswith("iscsi.auth.create (auth[1]): ")
    if shape.endswith("validation"):
        assert isinstance(e, ApiValidationError) and e.errors[0][0] == "iscsi_auth_create." + key
        assert all(secret not in m for _, m, _ in e.errors)
    else:
        assert type(e) is ApiError and e.errno == 14
