"""Authentication, API-key revocation, roles, secret redaction, rate limiting (truenas_sim/server.py, methods/auth.py; cited there)."""

import pytest
from simhelpers import RpcFailure

import truenas_sim.server as server_mod


def test_login_with_api_key_and_wrong_key(sim, connect_factory):
    c = connect_factory(sim, login=False)
    assert c.call("auth.login_with_api_key", "1-wrong") is False
    with pytest.raises(RpcFailure):
        c.call("system.info")
    assert c.call("auth.login_with_api_key", sim.api_key) is True
    assert c.call("system.info")["version"] == sim.profile.version_string


def test_generated_key_format(sim_factory):
    import re

    s = sim_factory("25.04")
    assert re.fullmatch(r"\d+-[A-Za-z0-9]{64}", s.api_key)
    s2 = sim_factory("25.04", api_key="1-abc")
    assert s2.api_key == "1-abc"


@pytest.mark.parametrize("profile", ["13", "24.10", "25.04", "25.10"])
def test_password_login(sim_factory, connect_factory, profile):
    s = sim_factory(profile, users={"root": "password"})
    c = connect_factory(s, kind="legacy", login=False)
    assert c.call("auth.login", "root", "bad") is False
    assert c.call("auth.login", "root", "password") is True
    assert c.call("core.ping") == "pong"


def test_login_ex_api_key_and_password(sim_factory, connect_factory):
    s = sim_factory("25.04", users={"admin": "pw"})
    c = connect_factory(s, login=False)
    r = c.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": "root", "api_key": s.api_key})
    assert r["response_type"] == "SUCCESS" and r["authenticator"] == "LEVEL_1" and r["user_info"]
    c2 = connect_factory(s, login=False)
    r = c2.call("auth.login_ex", {"mechanism": "PASSWORD_PLAIN", "username": "admin", "password": "nope"})
    assert r == {"response_type": "AUTH_ERR"}
    r = c2.call(
        "auth.login_ex",
        {
            "mechanism": "PASSWORD_PLAIN",
            "username": "admin",
            "password": "pw",
            "login_options": {"user_info": False},
        },
    )
    assert r["response_type"] == "SUCCESS" and r["user_info"] is None


def test_login_ex_absent_before_25_04(sim_factory, connect_factory):
    s = sim_factory("24.10")
    c = connect_factory(s, login=False)
    err = c.request("auth.login_ex", {"mechanism": "API_KEY_PLAIN"})["error"]
    assert err["error"] == 201


def test_api_key_revoked_over_insecure_transport_knob(sim, connect_factory):
    sim.knobs.insecure_transport = True
    c = connect_factory(sim, login=False)
    assert c.call("auth.login_with_api_key", sim.api_key) is False
    assert sim.api_key_revoked()
    sim.knobs.insecure_transport = False
    c2 = connect_factory(sim, login=False)
    assert c2.call("auth.login_with_api_key", sim.api_key) is False  # stays revoked
    r = c2.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": "root", "api_key": sim.api_key})
    assert r["response_type"] == "EXPIRED"


def test_api_key_revoked_for_non_loopback_peer(sim, connect_factory, monkeypatch):
    monkeypatch.setattr(server_mod, "is_loopback", lambda ip: False)
    c = connect_factory(sim, kind="legacy", login=False)  # legacy endpoint delegates to login_ex too
    assert c.call("auth.login_with_api_key", sim.api_key) is False
    assert sim.api_key_revoked()


def test_loopback_peer_is_secure(sim, connect_factory):
    c = connect_factory(sim, login=False)
    assert c.call("auth.login_with_api_key", sim.api_key) is True
    assert not sim.api_key_revoked()


@pytest.mark.parametrize("profile", ["13", "24.10"])
def test_no_revocation_before_25_04(sim_factory, connect_factory, profile):
    s = sim_factory(profile)
    s.knobs.insecure_transport = True
    c = connect_factory(s, login=False)
    assert c.call("auth.login_with_api_key", s.api_key) is True
    assert not s.api_key_revoked()


def test_rate_limit_unauthenticated(sim, connect_factory):
    sim.knobs.rate_limit_sleep = (0, 0)
    c2 = connect_factory(sim)  # logged in before the window fills up
    c = connect_factory(sim, login=False)
    for _ in range(19):
        assert c.call("auth.login_with_api_key", "1-bad") is False
    err = c.request("auth.login_with_api_key", "1-bad")["error"]
    assert err["code"] == -32001 and err["data"]["error"] == 16
    assert err["data"]["reason"] == "[EBUSY] Rate Limit Exceeded"
    # authenticated sessions are never rate limited
    for _ in range(25):
        c2.call("core.ping")


def test_no_rate_limit_on_core(sim_factory, connect_factory):
    s = sim_factory("13")
    s.knobs.rate_limit_sleep = (0, 0)
    c = connect_factory(s, login=False)
    for _ in range(25):
        assert c.call("auth.login_with_api_key", "1-bad") is False


def test_role_checks_eaccess(sim, connect_factory):
    key = sim.add_api_key("svc", roles=["SHARING_ISCSI_READ"])
    c = connect_factory(sim, login=False)
    assert c.call("auth.login_with_api_key", key) is True
    assert c.call("iscsi.extent.query") == []
    err = c.request("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}]})["error"]
    assert err["code"] == -32001 and err["data"]["error"] == 13
    assert err["data"]["reason"] == "[EACCES] Not authorized"


def test_sharing_admin_lacks_dataset_delete(sim, connect_factory):
    key = sim.add_api_key("svc", roles=["SHARING_ADMIN"])
    c = connect_factory(sim, login=False)
    c.login(key)
    c.call("pool.dataset.create", {"name": "tank/x"})
    err = c.request("pool.dataset.delete", "tank/x")["error"]
    assert err["data"]["error"] == 13


def test_secret_redaction_by_role(sim, connect_factory):
    admin = connect_factory(sim)
    admin.call("iscsi.auth.create", {"tag": 1, "user": "m1", "secret": "abcdefghijkl"})
    assert admin.call("iscsi.auth.query")[0]["secret"] == "abcdefghijkl"
    ro = connect_factory(sim, login=False)
    ro.login(sim.add_api_key("reader", roles=["SHARING_ISCSI_READ"]))
    e = ro.call("iscsi.auth.query")[0]
    assert e["secret"] == "********" and e["peersecret"] == "********"
    rw = connect_factory(sim, login=False)
    rw.login(sim.add_api_key("writer", roles=["SHARING_ISCSI_WRITE"]))
    assert rw.call("iscsi.auth.query")[0]["secret"] == "abcdefghijkl"


def test_unauthenticated_allowed_methods(sim, connect_factory):
    c = connect_factory(sim, login=False)
    assert c.call("core.ping") == "pong"
    assert c.call("core.set_options", {"py_exceptions": False}) is None
    assert "API_KEY_PLAIN" in c.call("auth.mechanism_choices")


def test_rate_limit_knob_off(sim, connect_factory):
    sim.knobs.rate_limit = False
    for _ in range(25):
        connect_factory(sim)


def test_rate_limit_cache_full_blocks_everyone(sim, connect_factory):
    import truenas_sim.server as srv

    sim.knobs.rate_limit_sleep = (0, 0)
    c = connect_factory(sim, login=False)
    for i in range(srv.RATE_LIMIT_CACHE):
        sim._rate[(f"m{i}", "10.0.0.1")] = [0 + 1e12, 1]  # 100 live (method, IP) entries
    err = c.request("auth.login_with_api_key", sim.api_key)["error"]
    assert err["data"]["error"] == 16


def test_otp_two_step_login(sim, connect_factory):
    sim.add_user("admin", "pw", otp_token="123456")
    c = connect_factory(sim, login=False)
    r = c.call("auth.login_ex", {"mechanism": "PASSWORD_PLAIN", "username": "admin", "password": "pw"})
    assert r == {"response_type": "OTP_REQUIRED", "username": "admin"}
    assert c.request("iscsi.extent.query")["error"]["data"]["error"] == 207
    r = c.call("auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "123456"})
    assert r["response_type"] == "SUCCESS"
    assert c.call("iscsi.extent.query") == []
    c2 = connect_factory(sim, login=False)
    assert c2.call("auth.login", "admin", "pw") is False
    assert c2.call("auth.login", "admin", "pw", "123456") is True
