"""``auth.*``: me, login (password, API key, login_ex with OTP), logout."""

from __future__ import annotations

import errno

from ..errors import CallError, ValidationError
from ..state import NasState


def _user_info(username):
    return {
        "pw_name": username,
        "pw_gecos": username,
        "pw_dir": f"/home/{username}",
        "pw_shell": "/usr/bin/zsh",
        "pw_uid": 0 if username == "root" else 3000,
        "pw_gid": 0,
        "grouplist": [0],
        "sid": None,
        "source": "LOCAL",
        "local": True,
        "attributes": {},
        "two_factor_config": {},
        "privilege": {"roles": {"$set": ["FULL_ADMIN"]}},
    }


def _grant(ctx, username):
    ctx.session.authenticated = True
    ctx.session.username = username
    ctx.session.roles = None
    ctx.session.api_key_id = None
    ctx.session.pending_otp_user = None


def _login_password(nas, ctx, username, password, otp_token=None, two_step=False) -> str:
    if (
        not isinstance(username, str)
        or nas.users.get(username) is None
        or nas.users[username] != password
    ):
        return "AUTH_ERR"
    otp = nas.otp.get(username)
    if otp is not None:
        if two_step:
            ctx.session.pending_otp_user = username
            return "OTP_REQUIRED"
        if otp_token != otp:
            return "AUTH_ERR"
    _grant(ctx, username)
    return "SUCCESS"


def _find_key(nas, key: str):
    for k in nas.api_keys.values():
        if k["key"] == key:
            return k
    return None


def _login_key(nas, ctx, key, username=None) -> str:
    k = _find_key(nas, key) if isinstance(key, str) else None
    if k is None or (username is not None and k["username"] != username):
        return "AUTH_ERR"
    if k.get("revoked"):
        return "EXPIRED"
    if nas.p.revoke_insecure_api_key and not ctx.secure_transport:
        k["revoked"] = True
        k["revoked_reason"] = "Attempt to use over an insecure transport"
        nas.on_event("api_key.query", "changed", k["id"], None)
        return "EXPIRED"
    ctx.session.authenticated = True
    ctx.session.username = k["username"]
    ctx.session.roles = None if k.get("roles") is None else frozenset(k["roles"])
    ctx.session.api_key_id = k["id"]
    return "SUCCESS"


def register(nas: NasState) -> None:
    p, m = nas.p, nas.method
    # AuthMech in declaration order (the union's tags) and the AAL1 mechanisms auth.mechanism_choices lists;
    # 26 adds SCRAM to both. mw: utils/auth.py:14 @ TS-25.10.1 | class AuthMech(enum.StrEnum):
    # mw: utils/auth.py:20 @ TS-26.0.0-BETA.3 | SCRAM = 'SCRAM'
    scram = ("SCRAM",) if p.auth_scram else ()
    _AUTH_MECH = ("API_KEY_PLAIN", "PASSWORD_PLAIN", "TOKEN_PLAIN", "OTP_TOKEN") + scram
    _AAL1_MECHANISMS = ("API_KEY_PLAIN", "TOKEN_PLAIN", "PASSWORD_PLAIN") + scram

    @m("auth.me", max_args=0)
    def auth_me(ctx):
        return _user_info(ctx.session.username)

    @m("auth.login", no_auth=True, max_args=3, min_args=2)
    def auth_login(ctx, username, password, otp_token=None):
        if not isinstance(username, str) or not isinstance(password, str):
            # mw: api/v25_04_0/auth.py:19 @ TS-26.0.0-BETA.3 | class AuthLegacyUsernamePassword(BaseModel)
            raise ValidationError("auth_login.username", "Input should be a valid string")
        return _login_password(nas, ctx, username, password, otp_token) == "SUCCESS"

    if not (p.name == "11.3"):

        @m("auth.login_with_api_key", no_auth=True, max_args=1, min_args=1, mutating=True)
        def auth_login_with_api_key(ctx, key):
            return _login_key(nas, ctx, key) == "SUCCESS"

    @m("auth.logout", max_args=0)
    def auth_logout(ctx):
        ctx.session.authenticated = False
        ctx.session.username = None
        return True

    if p.login_ex:

        @m("auth.mechanism_choices", no_auth=True, max_args=0)
        def auth_mechanism_choices(ctx):
            # mw: utils/auth.py:71 @ TS-25.10.1 | AA_LEVEL1 = AuthenticatorAssuranceLevel(
            # (the AAL1 mechanisms in order; plugins/auth.py:643 @ TS-25.10.1 lists their names; 26 adds SCRAM)
            return list(_AAL1_MECHANISMS)

        @m("auth.login_ex", no_auth=True, max_args=1, min_args=1, mutating=True)
        def auth_login_ex(ctx, data):
            if not isinstance(data, dict) or "mechanism" not in data:
                # pydantic's union_tag_not_found, which the middleware rewords:
                # mw: api/base/handler/accept.py:80 @ TS-25.10.1 | msg = "Field required"
                raise ValidationError("auth_login_ex.mechanism", "Field required")
            mech = data["mechanism"]
            opts = data.get("login_options") or {}
            if mech == "PASSWORD_PLAIN":
                resp = _login_password(nas, ctx, data.get("username"), data.get("password"), two_step=True)
                if resp == "OTP_REQUIRED":
                    return {"response_type": "OTP_REQUIRED", "username": data.get("username")}
            elif mech == "API_KEY_PLAIN":
                if "username" not in data:
                    raise ValidationError("auth_login_ex.username", "Field required")
                resp = _login_key(nas, ctx, data.get("api_key"), data.get("username"))
            else:
                # pydantic's union_tag_invalid for the discriminated union (wording: pydantic 2):
                # mw: api/v25_10_1/auth.py:240 @ TS-25.10.1 | login_data: AuthApiKeyPlain | AuthPasswordPlain
                # mw: api/v25_04_0/auth.py:100 @ TS-26.0.0-BETA.3 | login_data: AuthApiKeyPlain | AuthPasswordPlain
                raise ValidationError(
                    "auth_login_ex.login_data",
                    f"Input tag {mech!r} found using 'mechanism' does not match any of the expected tags: "
                    + ", ".join(f"<AuthMech.{x}: {x!r}>" for x in _AUTH_MECH),
                )
            if resp != "SUCCESS":
                return {"response_type": resp}
            return {
                "response_type": "SUCCESS",
                "user_info": _user_info(ctx.session.username) if opts.get("user_info", True) else None,
                "authenticator": "LEVEL_1",
            }

        @m("auth.login_ex_continue", no_auth=True, max_args=1, min_args=1)
        def auth_login_ex_continue(ctx, data):
            if not isinstance(data, dict) or data.get("mechanism") != "OTP_TOKEN":
                # pydantic's literal_error on Literal[AuthMech.OTP_TOKEN] (wording: pydantic 2):
                # mw: api/v25_10_1/auth.py:116 @ TS-25.10.1 | mechanism: Literal[AuthMech.OTP_TOKEN]
                # mw: api/v25_04_0/auth.py:71 @ TS-25.10.1 | mechanism: Literal[AuthMech.OTP_TOKEN]
                raise ValidationError(
                    "auth_login_ex_continue.login_data.mechanism", "Input should be <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>"
                )
            user = ctx.session.pending_otp_user
            if user is None:
                # mw: plugins/auth.py:620 @ TS-25.10.1 | : no authentication in progress
                # mw: plugins/auth.py:696 @ TS-26.0.0-BETA.3 | : no authentication in progress
                raise CallError(f"{data['mechanism']}: no authentication in progress", errno.EINVAL)
            if data.get("otp_token") != nas.otp.get(user):
                ctx.session.pending_otp_user = None
                return {"response_type": "AUTH_ERR"}
            _grant(ctx, user)
            return {"response_type": "SUCCESS", "user_info": _user_info(user), "authenticator": "LEVEL_2"}
