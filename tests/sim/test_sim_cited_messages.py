"""Messages corrected when each simulator message was checked against the middleware at the profiles' tags
(docs/truenas-sources.md, "Validation messages"); each test names the line it pins."""

from __future__ import annotations

import pytest
from simhelpers import RpcFailure


def _fails(api, method, *params) -> RpcFailure:
    with pytest.raises(RpcFailure) as ei:
        api.call(method, *params)
    return ei.value


@pytest.mark.parametrize("profile", ["25.04", "25.10", "26"])
def test_target_name_is_the_models_assertion(sim_factory, connect_factory, profile):
    # api/v25_04_0/iscsi_target.py:42 + api/base/validators.py:11 @ TS-25.04.2.4: match_validator asserts
    api = connect_factory(sim_factory(profile))
    e = _fails(api, "iscsi.target.create", {"name": "UPPER", "groups": []})
    assert e.messages() == ["Assertion failed, Name can only contain lowercase alphanumeric charactersplus dot (.), "
                            "dash (-), and colon (:)"]


@pytest.mark.parametrize("profile,msg", [
    ("24.10", "'not-a-net' does not appear to be an IPv4 or IPv6 network"),   # IPAddr(network=True): str(e)
    ("25.04", 'Auth network "not-a-net" is not a valid IPv4 or IPv6 network'),  # plugins/iscsi_/targets.py:278
])
def test_target_auth_network_message(sim_factory, connect_factory, profile, msg):
    api = connect_factory(sim_factory(profile))
    e = _fails(api, "iscsi.target.create", {"name": "t1", "groups": [], "auth_networks": ["not-a-net"]})
    assert e.messages() == [msg]
    assert e.attrs() == ["iscsi_target_create.auth_networks.0"]


def test_core_initiator_auth_network_message(sim_factory, connect_factory):
    # TN-13.0-U6.1 plugins/iscsi.py:1016 IPAddr('ip', network=True); schema.py:333 raise Error(self.name, str(e))
    api = connect_factory(sim_factory("13"))
    e = _fails(api, "iscsi.initiator.create", {"auth_network": ["not-a-net"]})
    assert e.messages() == ["'not-a-net' does not appear to be an IPv4 or IPv6 network"]


@pytest.mark.parametrize("profile,word", [("13", "volume"), ("24.10", "pool"), ("25.10", "pool")])
def test_file_extent_outside_the_pools(sim_factory, connect_factory, profile, word):
    # CORE async_validators.py:16 @ TN-13.0-U6.1 "volume mount point"; SCALE validators.py "pool mount point"
    api = connect_factory(sim_factory(profile))
    e = _fails(api, "iscsi.extent.create", {"name": "f", "type": "FILE", "path": "/tmp/f.img", "filesize": 1024})
    assert f"The path must reside within a {word} mount point" in e.messages()


@pytest.mark.parametrize("profile,choices", [
    ("25.04", ["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN"]),       # utils/auth.py:71 AA_LEVEL1
    ("26", ["API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN", "SCRAM"]),  # TS-26.0.0-BETA.3 adds SCRAM
])
def test_mechanism_choices_are_the_aal1_mechanisms(sim_factory, connect_factory, profile, choices):
    c = connect_factory(sim_factory(profile), login=False)
    assert c.call("auth.mechanism_choices") == choices


def test_login_ex_unknown_mechanism_is_pydantics_union_tag_error(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.10"), login=False)
    e = _fails(c, "auth.login_ex", {"mechanism": "NOPE"})
    assert e.messages() == [
        "Input tag 'NOPE' found using 'mechanism' does not match any of the expected tags: "
        "<AuthMech.API_KEY_PLAIN: 'API_KEY_PLAIN'>, <AuthMech.PASSWORD_PLAIN: 'PASSWORD_PLAIN'>, "
        "<AuthMech.TOKEN_PLAIN: 'TOKEN_PLAIN'>, <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>"
    ]


def test_login_ex_continue_messages(sim_factory, connect_factory):
    c = connect_factory(sim_factory("25.10"), login=False)
    e = _fails(c, "auth.login_ex_continue", {"mechanism": "PASSWORD_PLAIN"})
    assert e.messages() == ["Input should be <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>"]
    # plugins/auth.py:620 @ TS-25.10.1: f'{mechanism}: no authentication in progress'
    e = _fails(c, "auth.login_ex_continue", {"mechanism": "OTP_TOKEN", "otp_token": "1"})
    assert "OTP_TOKEN: no authentication in progress" in e.reason
