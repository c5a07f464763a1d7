"""TrueNASClient against a stub server that replays the middleware's envelopes verbatim.

These pin the wire shapes of the JSON-RPC errors (middleware TS-25.04.2.4
src/middlewared/middlewared/api/base/server/ws_handler/rpc.py:115-119, :339) and the legacy errors
(middleware TS-24.10.2.2 src/middlewared/middlewared/main.py:402),
TLS handling, the in-flight cap and failure modes. Behaviour against the full simulator is in
test_rpc_sim.py.
"""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from netprov.adapters.truenas.rpc import MAX_MESSAGE_BYTES, Credentials, TrueNASClient
from netprov.errors import (
    ApiError,
    ApiValidationError,
    AuthError,
    CallTimeout,
    ConnectError,
    MethodNotFound,
    TLSVerifyError,
)

API_KEY = "1-" + "k" * 64  # the stub's key (conftest.StubNAS.API_KEY)
USERS = {"root": "pw-root-secret"}
KEY = Credentials(api_key=API_KEY)
CHAP = "chap-secret-1234567"


@pytest.fixture(params=["jsonrpc", "legacy"])
def proto(request):
    return request.param


def url_for(nas, proto):
    return nas.base + ("/api/current" if proto == "jsonrpc" else "/websocket")


# ------------------------------------------------------------------ credentials / URL rules


def test_credentials_repr_masks_secrets():
    c = Credentials(api_key=API_KEY)
    p = Credentials(username="root", password="hunter2")
    assert API_KEY not in repr(c) and API_KEY not in str(c)
    assert "hunter2" not in repr(p) and "root" in repr(p)
    assert c.api_key.get_secret_value() == API_KEY
    with pytest.raises(ValueError):
        Credentials(username="root")


@pytest.mark.parametrize(
    "url", ["ws://nas.example/api/current", "ws://192.0.2.7/websocket", "http://nas.example"]
)
def test_api_key_refused_over_plain_ws_to_remote_without_connecting(url, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ConnectError) as ei:
        TrueNASClient.connect(url, KEY)
    msg = str(ei.value)
    assert "wss://" in msg and "ws://" in msg and API_KEY not in msg


def test_api_key_allowed_over_ws_to_loopback(stub_nas):
    nas = stub_nas()
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:
        assert c.protocol == "jsonrpc" and c.version == "TrueNAS-25.04.1"


def test_password_over_ws_to_remote_is_not_refused_up_front():
    # only API keys are revoked on plain ws; a password login to an unreachable host fails normally
    with pytest.raises(ConnectError) as ei:
        TrueNASClient.connect(
            "ws://127.0.0.1:9/api/current", Credentials(username="root", password="x"), timeout=2
        )
    assert "127.0.0.1" in str(ei.value)


# ------------------------------------------------------------------ protocols, probe, auth


def test_both_protocols_basic_call(stub_nas, proto):
    nas = stub_nas(version="TrueNAS-13.0-U6.1" if proto == "legacy" else "TrueNAS-25.04.1")
    nas.methods["iscsi.global.config"] = lambda: {"id": 1, "basename": "iqn.2005-10.org.freenas.ctl"}
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        assert c.protocol == proto
        assert c.call("iscsi.global.config")["basename"] == "iqn.2005-10.org.freenas.ctl"
        assert c.ping() is True
        assert c.round_trips["auth.login_with_api_key"] == 1
        assert c.round_trips["system.version"] == 1


def test_probe_falls_back_to_legacy_on_404(stub_nas):
    nas = stub_nas(jsonrpc_route=False, version="TrueNAS-SCALE-24.10.2")
    with TrueNASClient.connect(nas.base, KEY) as c:
        assert c.protocol == "legacy" and c.version == "TrueNAS-SCALE-24.10.2"
    assert nas.paths[:2] == ["/api/current", "/websocket"]


def test_probe_prefers_jsonrpc(stub_nas):
    nas = stub_nas()
    with TrueNASClient.connect(nas.base + "/", KEY) as c:
        assert c.protocol == "jsonrpc"
    with TrueNASClient.connect(nas.base + "/websocket", KEY, probe=True) as c:
        assert c.protocol == "jsonrpc"


def test_explicit_path_404_is_connect_error(stub_nas):
    nas = stub_nas(jsonrpc_route=False)
    with pytest.raises(ConnectError) as ei:
        TrueNASClient.connect(nas.base + "/api/current", KEY)
    assert "404" in str(ei.value) and "/websocket" in str(ei.value)


def test_bad_api_key_is_auth_error(stub_nas, proto):
    nas = stub_nas()
    bad = "1-" + "z" * 64
    with pytest.raises(AuthError) as ei:
        TrueNASClient.connect(url_for(nas, proto), Credentials(api_key=bad))
    assert bad not in str(ei.value) and "API key" in str(ei.value)


def test_password_login_both_protocols(stub_nas, proto):
    nas = stub_nas()
    with TrueNASClient.connect(
        url_for(nas, proto), Credentials(username="root", password=USERS["root"])
    ) as c:
        assert c.version
        assert c.round_trips["auth.login"] == 1
    with pytest.raises(AuthError) as ei:
        TrueNASClient.connect(url_for(nas, proto), Credentials(username="root", password="wrong-pass"))
    assert "wrong-pass" not in str(ei.value) and "root" in str(ei.value)


def test_login_ex_used_when_offered(stub_nas):
    nas = stub_nas()
    seen = []

    def login_ex(data):
        seen.append(data["mechanism"])
        ok = data["mechanism"] == "PASSWORD_PLAIN" and USERS.get(data["username"]) == data["password"]
        return {"response_type": "SUCCESS" if ok else "AUTH_ERR"}

    # the stub gates unauthenticated calls, so route login_ex through the authed flag ourselves
    orig = nas._call

    def call(state, method, params):
        if method == "auth.login_ex":
            r = login_ex(params[0])
            state["authed"] = r["response_type"] == "SUCCESS"
            return r
        return orig(state, method, params)

    nas._call = call
    with TrueNASClient.connect(
        nas.base + "/api/current", Credentials(username="root", password=USERS["root"])
    ) as c:
        assert c.round_trips["auth.login_ex"] == 1 and c.round_trips["auth.login"] == 0
    with pytest.raises(AuthError) as ei:
        TrueNASClient.connect(nas.base + "/api/current", Credentials(username="root", password="nope-nope"))
    assert "AUTH_ERR" in str(ei.value)


def test_api_key_login_ex_fallback_when_login_with_api_key_is_gone(stub_nas):
    # TrueNAS 27+: auth.login_with_api_key removed from the current API; login_ex needs the username
    nas = stub_nas()
    orig = nas._call

    def call(state, method, params):
        if method == "auth.login_with_api_key":
            raise KeyError(method)
        if method == "auth.login_ex":
            d = params[0]
            state["authed"] = d == {"mechanism": "API_KEY_PLAIN", "username": "svc", "api_key": API_KEY}
            return {"response_type": "SUCCESS" if state["authed"] else "AUTH_ERR"}
        return orig(state, method, params)

    nas._call = call
    with TrueNASClient.connect(nas.base + "/api/current", Credentials(api_key=API_KEY, username="svc")) as c:
        assert c.round_trips["auth.login_ex"] == 1
    with pytest.raises(AuthError) as ei:
        TrueNASClient.connect(nas.base + "/api/current", KEY)
    assert "username" in str(ei.value) and API_KEY not in str(ei.value)


def test_login_ex_otp_required_is_auth_error(stub_nas):
    nas = stub_nas()
    orig = nas._call
    nas._call = lambda state, m, p: (
        {"response_type": "OTP_REQUIRED"} if m == "auth.login_ex" else orig(state, m, p)
    )
    with pytest.raises(AuthError) as ei:
        TrueNASClient.connect(nas.base + "/api/current", Credentials(username="root", password="pw-x-y"))
    assert "one-time password" in str(ei.value)


# ------------------------------------------------------------------ error envelopes (JSON-RPC and legacy)


def test_validation_error_jsonrpc_envelope_verbatim(stub_nas):
    nas = stub_nas()
    nas.methods["iscsi.extent.create"] = lambda data: (_ for _ in ()).throw(
        nas.Raw(
            {
                "code": -32602,
                "message": "Invalid params",
                "data": {
                    "error": 22,
                    "errname": "EINVAL",
                    "reason": "[EINVAL] iscsi_extent_create.name: Extent name must be unique\n",
                    "trace": {
                        "class": "ValidationErrors",
                        "frames": [],
                        "formatted": "Traceback ...",
                        "repr": "ValidationErrors(...)",
                    },
                    "extra": [["iscsi_extent_create.name", "Extent name must be unique", 22]],
                },
            }
        )
    )
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:
        with pytest.raises(ApiValidationError) as ei:
            c.call("iscsi.extent.create", {"name": "m1"}, resource="extent[m1]")
    e = ei.value
    assert e.method == "iscsi.extent.create" and e.resource == "extent[m1]"
    assert e.errors == [("iscsi_extent_create.name", "Extent name must be unique", 22)]
    assert str(e) == "iscsi.extent.create (extent[m1]): iscsi_extent_create.name: Extent name must be unique"


def test_validation_error_legacy_envelope_verbatim(stub_nas):
    nas = stub_nas()
    nas.methods["iscsi.extent.create"] = lambda data: (_ for _ in ()).throw(
        nas.Raw(
            {
                "error": 11,
                "errname": "EAGAIN",
                "type": "VALIDATION",
                "reason": "[EINVAL] iscsi_extent_create.name: Extent name must be unique\n",
                "trace": {},
                "extra": [["iscsi_extent_create.name", "Extent name must be unique", 22]],
            }
        )
    )
    with TrueNASClient.connect(nas.base + "/websocket", KEY) as c:
        with pytest.raises(ApiValidationError) as ei:
            c.call("iscsi.extent.create", {"name": "m1"})
    assert ei.value.errors == [("iscsi_extent_create.name", "Extent name must be unique", 22)]
    assert str(ei.value) == "iscsi.extent.create: iscsi_extent_create.name: Extent name must be unique"


def test_instance_not_found_validation_without_attribute(stub_nas, proto):
    nas = stub_nas()
    nas.methods["iscsi.target.delete"] = lambda i, force=False: (_ for _ in ()).throw(
        nas.Validation([[None, f"iSCSITarget {i} does not exist", 2]])
    )
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        with pytest.raises(ApiValidationError) as ei:
            c.call("iscsi.target.delete", 3, True)
    assert ei.value.errors == [("", "iSCSITarget 3 does not exist", 2)]
    assert str(ei.value) == "iscsi.target.delete: iSCSITarget 3 does not exist"


def test_call_error_both_protocols(stub_nas, proto):
    nas = stub_nas()
    nas.methods["iscsi.target.delete"] = lambda i, f=False: (_ for _ in ()).throw(
        nas.CallError(14, "EFAULT", "Target foo is in use.")
    )
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        with pytest.raises(ApiError) as ei:
            c.call("iscsi.target.delete", 1)
    assert type(ei.value) is ApiError
    assert ei.value.errno == 14 and ei.value.method == "iscsi.target.delete"
    assert str(ei.value) == "iscsi.target.delete: Target foo is in use."


def test_match_not_found_message(stub_nas):
    nas = stub_nas()
    nas.methods["pool.dataset.query"] = lambda f, o: (_ for _ in ()).throw(
        nas.Raw(
            {
                "code": -32001,
                "message": "Method call error",
                "data": {
                    "error": 22,
                    "errname": "EINVAL",
                    "reason": "MatchNotFound()",
                    "trace": None,
                    "extra": None,
                },
            }
        )
    )
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:
        with pytest.raises(ApiError) as ei:
            c.query("pool.dataset", [["id", "=", "tank/x"]], get=True)
    assert "pool.dataset.query" in str(ei.value) and "matched nothing" in str(ei.value)


@pytest.mark.parametrize("proto,version", [("jsonrpc", "TrueNAS-25.04.1"), ("legacy", "TrueNAS-13.0-U6.1")])
def test_method_not_found_names_method_and_version(stub_nas, proto, version):
    nas = stub_nas(version=version)
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        with pytest.raises(MethodNotFound) as ei:
            c.call("service.control", "START", "iscsitarget", {})
    assert "service.control" in str(ei.value) and version in str(ei.value)


def test_not_authenticated_is_auth_error(stub_nas):
    nas = stub_nas()
    nas.methods["x.y"] = lambda: (_ for _ in ()).throw(
        nas.Raw(
            {
                "error": 13,
                "errname": "EACCES",
                "type": None,
                "reason": "[EACCES] Not authenticated",
                "trace": None,
                "extra": None,
            }
        )
    )
    with TrueNASClient.connect(nas.base + "/websocket", KEY) as c:
        with pytest.raises(AuthError):
            c.call("x.y")


def test_secrets_never_in_errors_or_logs(stub_nas, proto, caplog):
    nas = stub_nas()
    # a server that (badly) echoes the secret back in its message
    nas.methods["iscsi.auth.create"] = lambda d: (_ for _ in ()).throw(
        nas.Validation([["iscsi_auth_create.secret", f"Secret {d['secret']} must be 12-16 chars", 22]])
    )
    caplog.set_level(logging.DEBUG)  # everything, websockets' own loggers included
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        with pytest.raises(ApiValidationError) as ei:
            c.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": CHAP})
    assert CHAP not in str(ei.value) and CHAP not in repr(ei.value.errors)
    assert "iscsi_auth_create.secret" in str(ei.value)
    assert CHAP not in caplog.text and API_KEY not in caplog.text
    assert "iscsi.auth.create" in caplog.text
    assert all(not r.name.startswith("websockets") for r in caplog.records)


def test_notifications_and_pings_are_ignored_safely(stub_nas, proto, caplog):
    nas = stub_nas(chatter=True, jitter=0.005)
    nas.methods["echo"] = lambda i: i
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        assert c.call_many([("echo", (i,)) for i in range(30)]) == list(range(30))
        assert c.call("echo", "still fine") == "still fine"
    if proto == "legacy":  # the client answered the NAS's legacy pings
        assert any(p and p.startswith("srv-") for p in nas.pongs)


# ------------------------------------------------------------------ pipelining


def test_call_many_out_of_order_matched_and_capped(stub_nas, proto):
    nas = stub_nas(jitter=0.01)
    nas.methods["echo"] = lambda i: {"i": i}
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        out = c.call_many([("echo", (i,)) for i in range(120)])
        assert out == [{"i": i} for i in range(120)]
        assert c.peak_inflight <= 20
        assert c.round_trips["echo"] == 120
    assert 1 < nas.peak_inflight <= 20


def test_call_many_respects_smaller_cap(stub_nas):
    nas = stub_nas(jitter=0.005)
    nas.methods["echo"] = lambda i: i
    with TrueNASClient.connect(nas.base + "/api/current", KEY, max_inflight=5) as c:
        assert c.call_many([("echo", (i,)) for i in range(40)]) == list(range(40))
    assert nas.peak_inflight <= 5
    with TrueNASClient.connect(nas.base + "/api/current", KEY, max_inflight=500) as c:
        assert c.max_inflight == 20


def test_call_many_returns_api_errors_in_place(stub_nas, proto):
    nas = stub_nas()

    def create(d):
        if d["name"] == "dup":
            raise nas.Validation([["iscsi_extent_create.name", "Extent name must be unique", 22]])
        return {"id": 1, **d}

    nas.methods["iscsi.extent.create"] = create
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        out = c.call_many(
            [
                ("iscsi.extent.create", ({"name": "a"},)),
                ("iscsi.extent.create", ({"name": "dup"},), "extent[dup]"),
                ("iscsi.extent.create", ({"name": "b"},)),
            ]
        )
    assert out[0]["name"] == "a" and out[2]["name"] == "b"
    assert isinstance(out[1], ApiValidationError) and "extent[dup]" in str(out[1])


def test_too_many_calls_refusal_is_retried(stub_nas, proto):
    # a NAS that admits fewer calls than our window: refused calls did not run, so they are re-sent
    nas = stub_nas(admit=3, jitter=0.01)
    ran = []
    nas.methods["echo"] = lambda i: ran.append(i) or i
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        assert c.call_many([("echo", (i,)) for i in range(30)]) == list(range(30))
        assert c.round_trips["echo"] > 30
    assert sorted(ran) == list(range(30))


def test_concurrent_threads_share_one_connection(stub_nas):
    nas = stub_nas(jitter=0.005)
    nas.methods["echo"] = lambda i: i
    results, errors = {}, []
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:

        def worker(k):
            try:
                results[k] = [c.call("echo", k * 100 + j) for j in range(10)]
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert all(results[k] == [k * 100 + j for j in range(10)] for k in range(8))
    assert nas.connections == 1


# ------------------------------------------------------------------ timeouts, drops, size limit


def test_timeout_names_method_and_connection_stays_usable(stub_nas, proto):
    nas = stub_nas()
    gate = threading.Event()
    nas.methods["slow"] = lambda: gate.wait(5) and "late"
    nas.methods["fast"] = lambda: "ok"
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        with pytest.raises(CallTimeout) as ei:
            c.call("slow", timeout=0.2)
        assert "slow" in str(ei.value)
        gate.set()
        assert c.call("fast") == "ok"
        assert c.call("slow") == "late"


def test_drop_mid_call_is_connect_error_for_every_pending(stub_nas, proto):
    nas = stub_nas(delay=0.3, drop_after=6)  # login + system.version + 3 calls, 4th drops
    nas.methods["echo"] = lambda i: i
    c = TrueNASClient.connect(url_for(nas, proto), KEY, timeout=10)
    with pytest.raises(ConnectError) as ei:
        c.call_many([("echo", (i,)) for i in range(5)])
    assert "dropped" in str(ei.value) and "echo" in str(ei.value)
    with pytest.raises(ConnectError):
        c.call("echo", 1)
    c.close()


def test_oversized_message_refused_client_side(stub_nas):
    nas = stub_nas()
    nas.methods["echo"] = lambda x: len(x)
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:
        with pytest.raises(ApiError) as ei:
            c.call("echo", "x" * MAX_MESSAGE_BYTES)
        assert "64 KiB" in str(ei.value) and "echo" in str(ei.value)
        assert c.call("echo", "x" * 1000) == 1000  # connection still fine
    assert "echo" not in nas.calls[:-1]


# ------------------------------------------------------------------ jobs and bulk


def test_call_job_and_wait_job(stub_nas, proto):
    nas = stub_nas()
    nas.methods["pool.dataset.delete_job"] = lambda name: nas.add_job(
        "pool.dataset.delete_job", "SUCCESS", result=True
    )
    fail = nas.add_job(
        "pool.dataset.delete",
        "FAILED",
        error="[EFAULT] cannot destroy 'tank/x': busy",
        exc_info={"type": "CallError", "errno": 14, "extra": None},
    )
    bad = nas.add_job(
        "iscsi.x",
        "FAILED",
        error="ValidationErrors",
        exc_info={"type": "VALIDATION", "errno": 22, "extra": [["x.name", "bad name", 22]]},
    )
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        assert c.call_job("pool.dataset.delete_job", "tank/x") is True
        with pytest.raises(ApiError) as ei:
            c.wait_job(fail, 5)
        assert "pool.dataset.delete" in str(ei.value) and "busy" in str(ei.value) and ei.value.errno == 14
        with pytest.raises(ApiValidationError) as ei:
            c.wait_job(bad, 5)
        assert ei.value.errors == [("x.name", "bad name", 22)]


def test_bulk_splits_under_64k_and_keeps_order(stub_nas, proto):
    nas = stub_nas()

    def create(d):
        if d["name"] == "n7":
            raise nas.Validation([["iscsi_extent_create.name", "Extent name must be unique", 22]])
        return {"id": int(d["name"][1:]) + 1, "name": d["name"]}  # a create answers the new row

    nas.methods["iscsi.extent.create"] = create
    items = [({"name": f"n{i}", "comment": "c" * 3000},) for i in range(60)]  # ~180 KB in total
    with TrueNASClient.connect(url_for(nas, proto), KEY) as c:
        out = c.bulk("iscsi.extent.create", items)
        assert c.round_trips["core.bulk"] >= 3
    assert len(nas.sizes["core.bulk"]) >= 3
    assert max(nas.sizes["core.bulk"]) < MAX_MESSAGE_BYTES
    assert [o["name"] for i, o in enumerate(out) if i != 7] == [f"n{i}" for i in range(60) if i != 7]
    assert isinstance(out[7], ApiValidationError)
    assert out[7].errors == [("iscsi_extent_create.name", "Extent name must be unique", 22)]


def test_bulk_item_too_large_is_reported_in_place(stub_nas):
    nas = stub_nas()
    nas.methods["echo"] = lambda d: "ok"
    with TrueNASClient.connect(nas.base + "/api/current", KEY) as c:
        out = c.bulk("echo", [({"x": 1},), ({"x": "y" * 70000},), ({"x": 2},)])
    assert out[0] == "ok" and out[2] == "ok" and isinstance(out[1], ApiError)


# ------------------------------------------------------------------ TLS


def test_tls_self_signed_refused_without_ca(stub_nas, tls_files, proto):
    nas = stub_nas(tls=tls_files.server_context())
    with pytest.raises(TLSVerifyError) as ei:
        TrueNASClient.connect(url_for(nas, proto), KEY)
    text = str(ei.value)
    assert "127.0.0.1" in text and "--ca-file" in text and "--insecure" in text and "netprov trust" in text


def test_tls_accepted_with_ca_file(stub_nas, tls_files, proto, recwarn):
    nas = stub_nas(tls=tls_files.server_context())
    with TrueNASClient.connect(url_for(nas, proto), KEY, ca_file=tls_files.ca_pem) as c:
        assert c.call("core.ping") == "pong"
    TrueNASClient.connect(nas.base, KEY, ca_file=tls_files.ca_pem).close()
    assert not [w for w in recwarn if "verification" in str(w.message)]  # verified TLS does not warn


def test_tls_insecure_accepted_with_warning(stub_nas, tls_files, caplog):
    nas = stub_nas(tls=tls_files.server_context())
    with pytest.warns(UserWarning, match="verification is disabled"):
        with TrueNASClient.connect(nas.base, KEY, insecure=True) as c:
            assert c.protocol == "jsonrpc"
    assert "insecure" in caplog.text


def test_tls_missing_ca_file_is_clear(stub_nas, tls_files, tmp_path):
    with pytest.raises(TLSVerifyError) as ei:
        TrueNASClient.connect("wss://127.0.0.1:1/api/current", KEY, ca_file=str(tmp_path / "nope.pem"))
    assert "nope.pem" in str(ei.value)


def test_unreachable_is_connect_error():
    with pytest.raises(ConnectError) as ei:
        TrueNASClient.connect("wss://127.0.0.1:9/api/current", KEY, timeout=2)
    assert "127.0.0.1" in str(ei.value)
