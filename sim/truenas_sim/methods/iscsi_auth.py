"""``iscsi.auth.*`` (CHAP credentials): query, get_instance, create, update, delete."""

from __future__ import annotations

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationErrors
from ..state import NasState, Tables
from .common import ISCSI_R, ISCSI_W

req, opt = S.req, S.opt


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method

    auth_spec = {
        "tag": req("int"),
        "user": req("str"),
        "secret": req("str"),
        "peeruser": opt("str", ""),
        "peersecret": opt("str", ""),
    }
    if p.auth_discovery_auth:
        auth_spec["discovery_auth"] = opt("str", "NONE", enum=("NONE", "CHAP", "CHAP_MUTUAL"))
    AUTH_SECRETS = ("secret", "peersecret")

    def _auth_entry(r):
        e = {k: r[k] for k in ("id", "tag", "user", "secret", "peeruser", "peersecret")}
        if p.auth_discovery_auth:
            e["discovery_auth"] = r.get("discovery_auth", "NONE")
        return e

    # CHAP rules as middleware TS-25.04.2.4 plugins/iscsi_/auth.py:172 validate(), :154 _validate_secret have them:
    # up to 24.10 only the length is checked; from 25.04 _validate_secret also refuses leading/trailing space
    # and '#' (INVALID_CHARACTERS), every error is reported, and the peer secret is titled "Peer Secret".
    def _validate_secret(verrors, sch, attr, title, secret):
        if len(secret) < 12 or len(secret) > 16:
            verrors.add(f"{sch}.{attr}", f"{title} must be between 12 and 16 characters.")
        if p.auth_secret_no_hash:
            if secret != secret.strip():
                verrors.add(f"{sch}.{attr}", f"{title} contains leading or trailing space.")
            if "#" in secret:
                # mw: plugins/iscsi_/auth.py:186 @ TS-26.0.0-BETA.3 | contains invalid characters: {
                verrors.add(f"{sch}.{attr}", f"{title} contains invalid characters: #")

    def _auth_validate(sch, data, old=None):
        verrors = ValidationErrors()
        secret, peer_secret, peer_user = data["secret"], data["peersecret"], data["peeruser"]
        if not peer_user and peer_secret:
            verrors.add(f"{sch}.peersecret", "The peer user is required if you set a peer secret.")
        _validate_secret(verrors, sch, "secret", "Secret", secret)
        da = data.get("discovery_auth", "NONE") if p.auth_discovery_auth else "NONE"
        if peer_user:
            if not peer_secret:
                verrors.add(f"{sch}.peersecret", "The peer secret is required if you set a peer user.")
            elif peer_secret == secret:
                verrors.add(f"{sch}.peersecret", "The peer secret cannot be the same as user secret.")
            else:
                _validate_secret(verrors, sch, "peersecret", "Peer Secret", peer_secret)
            # da_mutual_chap_peerusers() counts every CHAP_MUTUAL entry with a peer user, the one being
            # updated included (as the middleware does)
            mutual = [a for a in T["auth"].values() if a.get("discovery_auth") == "CHAP_MUTUAL" and a["peeruser"]]
            if da == "CHAP_MUTUAL" and mutual:
                # mw: plugins/iscsi_/auth.py:220 @ TS-26.0.0-BETA.3 | as only one such entry is permitted
                verrors.add(f"{sch}.discovery_auth",
                            "Cannot specify CHAP_MUTUAL as only one such entry is permitted.")
        elif da == "CHAP_MUTUAL":
            # mw: plugins/iscsi_/auth.py:226 @ TS-26.0.0-BETA.3 | if peer_user has not been defined
            verrors.add(f"{sch}.discovery_auth", "Cannot specify CHAP_MUTUAL if peer_user has not been defined.")
        if (old is not None and p.auth_delete_in_use_check and old["tag"] != data["tag"]
                and _tag_in_use(old["tag"], exclude=old["id"])):
            verrors.add(f"{sch}.tag", _in_use_msg(old["id"], old["tag"]))
        verrors.check()

    def _in_use_msg(auth_id, tag):
        # is_in_use(): "Authorized access of <auth id> is being used by following target(s): <target ids>"
        return (f"Authorized access of {auth_id} is being used by following target(s): "
                + ", ".join(str(t) for t in _tag_user_ids(tag)))

    def _tag_user_ids(tag):
        return sorted(t["id"] for t in T["target"].values() if any(g["auth"] == tag for g in t["groups"]))

    def _tag_users(tag):
        return sorted(t["name"] for t in T["target"].values() if any(g["auth"] == tag for g in t["groups"]))

    def _tag_in_use(tag, exclude):
        if not _tag_users(tag):
            return False
        # in use only matters when this is the last entry of the tag
        return not any(a["tag"] == tag and a["id"] != exclude for a in T["auth"].values())

    @m("iscsi.auth.query", max_args=2, roles=ISCSI_R, secret_fields=AUTH_SECRETS)
    def iscsi_auth_query(ctx, filters=None, options=None):
        return nas.query(
            [_auth_entry(r) for _, r in sorted(T["auth"].items())], filters, options, "iscsi_auth_query"
        )

    @m("iscsi.auth.get_instance", max_args=2, min_args=1, roles=ISCSI_R, secret_fields=AUTH_SECRETS)
    def iscsi_auth_get_instance(ctx, id_, options=None):
        if id_ not in T["auth"]:
            raise InstanceNotFound("iSCSITargetAuthCredential", id_)
        return _auth_entry(T["auth"][id_])

    @m("iscsi.auth.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True, secret_fields=AUTH_SECRETS)
    def iscsi_auth_create(ctx, data):
        data = S.check_dict(pyd, "data" if pyd else "iscsi_auth_create", auth_spec, data)
        _auth_validate("iscsi_auth_create", data)
        aid = nas._next_id("auth")
        T["auth"][aid] = {"id": aid, **data}
        nas.service_reload()
        return _auth_entry(T["auth"][aid])

    @m("iscsi.auth.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True, secret_fields=AUTH_SECRETS)
    def iscsi_auth_update(ctx, id_, data):
        if id_ not in T["auth"]:
            raise InstanceNotFound("iSCSITargetAuthCredential", id_)
        data = S.check_dict(pyd, "data" if pyd else "iscsi_auth_update", auth_spec, data, update=True)
        old = T["auth"][id_]
        new = {**old, **data}
        _auth_validate("iscsi_auth_update", new, old)
        T["auth"][id_] = new
        nas.service_reload()
        return _auth_entry(new)

    @m("iscsi.auth.delete", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_auth_delete(ctx, id_):
        if id_ not in T["auth"]:
            raise InstanceNotFound("iSCSITargetAuthCredential", id_)
        tag = T["auth"][id_]["tag"]
        # 11.3's do_delete has no in-use check (added in 12: is_in_use_by_portals_targets)
        if p.auth_delete_in_use_check and _tag_in_use(tag, exclude=id_):
            raise CallError(_in_use_msg(id_, tag))
        del T["auth"][id_]
        nas.service_reload()
        return True
