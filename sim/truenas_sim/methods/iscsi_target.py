"""``iscsi.target.*``: query, get_instance, validate_name (SCALE), create, update, delete."""

from __future__ import annotations

import copy
import errno
import ipaddress

from .. import schema as S
from ..errors import InstanceNotFound, ValidationErrors
from ..state import RE_TARGET_NAME, NasState, Tables
from .common import ISCSI_R, ISCSI_W, target_delete

req, opt = S.req, S.opt


def _spec(p) -> dict:
    group_spec = {
        "portal": req("int"),
        "initiator": opt("int", None, null=True),
        "authmethod": opt("str", "NONE", enum=("NONE", "CHAP", "CHAP_MUTUAL")),
        "auth": opt("int", None, null=True),
    }
    tgt_spec = {
        "name": req("str", max_length=p.target_name_max),
        "alias": opt("str", None, null=True),
        "mode": opt("str", "ISCSI", enum=("ISCSI", "FC", "BOTH")),
        "groups": opt("list", list, items=group_spec),
    }
    if p.target_auth_networks:
        tgt_spec["auth_networks"] = opt("list", list, items=S.Field("str"))
    if p.target_iscsi_parameters:
        tgt_spec["iscsi_parameters"] = opt("dict", None, null=True)
    return tgt_spec


def _entry(nas: NasState, r: dict) -> dict:
    p = nas.p
    e = {
        "id": r["id"],
        "name": r["name"],
        "alias": r["alias"],
        "mode": r["mode"],
        "groups": [dict(g) for g in r["groups"]],
    }
    if p.target_auth_networks:
        e["auth_networks"] = list(r.get("auth_networks", []))
    if p.target_rel_tgt_id:
        e["rel_tgt_id"] = r["rel_tgt_id"]
    if p.target_iscsi_parameters:
        e["iscsi_parameters"] = r.get("iscsi_parameters")
    return e


def _validate(nas: NasState, sch: str, data: dict, old: dict | None = None) -> None:
    p, pyd, T = nas.p, nas.p.pydantic, nas.tables
    verrors = ValidationErrors()
    name = data["name"]
    if not RE_TARGET_NAME.search(name):
        if pyd:
            # the model's match_validator asserts, so pydantic reports "Assertion failed, <explanation>":
            # mw: api/v25_04_0/iscsi_target.py:42 @ TS-25.04.2.4 | Name can only contain lowercase alphanumeric
            # mw: api/base/validators.py:11 @ TS-25.04.2.4 | assert (value is None or pattern.match(value))
            # mw: api/v25_04_0/iscsi_target.py:42 @ TS-26.0.0-BETA.3 | Name can only contain lowercase alphanumeric characters
            verrors.add(
                f"{sch}.name",
                "Assertion failed, Name can only contain lowercase alphanumeric charactersplus dot (.), "
                "dash (-), and colon (:)",
            )
        elif p.core:  # middleware TN-13.0-U6.1 src/middlewared/middlewared/plugins/iscsi.py:1263
            verrors.add(
                f"{sch}.name",
                "Lowercase alphanumeric characters plus dot (.), dash (-), and colon (:) are allowed.",
            )
        else:
            verrors.add(
                f"{sch}.name",
                "Only lowercase alphanumeric characters plus dot (.), dash (-), and "
                "colon (:) are allowed.",
            )
    elif any(t["name"] == name and (old is None or t["id"] != old["id"]) for t in T["target"].values()):
        verrors.add(f"{sch}.name", p.target_name_exists_msg)
    alias = data.get("alias")
    if alias is not None:
        if '"' in alias:
            verrors.add(f"{sch}.alias", "Double quotes are not allowed")
        elif alias == "target":
            verrors.add(f"{sch}.alias", "target is a reserved word")
        elif any(
            t["alias"] == alias and (old is None or t["id"] != old["id"]) for t in T["target"].values()
        ):
            verrors.add(f"{sch}.alias", "Alias already exists")
    if data["mode"] != "ISCSI":
        verrors.add(f"{sch}.mode", "Fibre Channel not enabled")
    portals = []
    for i, g in enumerate(data["groups"]):
        if g["portal"] in portals:
            verrors.add(
                f"{sch}.groups.{i}.portal", f"Portal {g['portal']} cannot be duplicated on a target"
            )
        elif g["portal"] not in T["portal"]:
            verrors.add(f"{sch}.groups.{i}.portal", f"{g['portal']} Portal not found in database")
        else:
            portals.append(g["portal"])
        if g["initiator"] and g["initiator"] not in T["initiator"]:
            verrors.add(
                f"{sch}.groups.{i}.initiator", f"{g['initiator']} Initiator not found in database"
            )
        if not g["auth"] and g["authmethod"] in ("CHAP", "CHAP_MUTUAL") and not p.core:  # SCALE targets.py
            verrors.add(
                f"{sch}.groups.{i}.auth", "Authentication group is required for CHAP and CHAP Mutual"
            )
        elif g["auth"] and g["authmethod"] == "CHAP_MUTUAL":
            auths = [a for a in T["auth"].values() if a["tag"] == g["auth"]]  # auth is a TAG, not an id
            if not auths:
                verrors.add(f"{sch}.groups.{i}.auth", "Authentication group not found", errno.ENOENT)
            elif not auths[0]["peeruser"]:
                verrors.add(
                    f"{sch}.groups.{i}.auth",
                    f"Authentication group {g['auth']} does not support CHAP Mutual",
                )
    for i, net in enumerate(data.get("auth_networks") or []):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as e:
            if pyd:  # mw: plugins/iscsi_/targets.py:279 @ TS-25.04.2.4 | is not a valid IPv4 or IPv6 network
                # mw: plugins/iscsi_/targets.py:284 @ TS-26.0.0-BETA.3 | f'Auth network
                # mw: plugins/iscsi_/targets.py:284 @ TS-26.0.0-BETA.3 | is not a valid IPv4 or IPv6 network
                verrors.add(f"{sch}.auth_networks.{i}", f'Auth network "{net}" is not a valid IPv4 or IPv6 network')
            else:  # 24.10: IPAddr(network=True) reports Python's ipaddress error
                # mw: plugins/iscsi_/targets.py:97 @ TS-24.10.2.2 | IPAddr('ip', network=True)
                # mw: schema/string_schema.py:336 @ TS-24.10.2.2 | raise Error(self.name, str(e))
                verrors.add(f"{sch}.auth_networks.{i}", str(e))
    ip = data.get("iscsi_parameters")
    if ip:
        for k, v in ip.items():
            if k != "QueuedCommands":
                verrors.add(f"{sch}.iscsi_parameters.{k}", "Extra inputs are not permitted")
            elif v not in (None, 32, 128):
                # mw: api/v25_04_0/iscsi_target.py:33 @ TS-26.0.0-BETA.3 | QueuedCommands: Literal[32, 128]
                verrors.add(f"{sch}.iscsi_parameters.QueuedCommands", "Input should be 32 or 128")
    verrors.check()


def _norm_alias(nas: NasState, data: dict) -> None:
    if data.get("alias") == "" and not nas.p.alias_empty_is_value:
        data["alias"] = None  # SCALE stores "" as NULL


def register(nas: NasState) -> None:
    p, pyd, T, m = nas.p, nas.p.pydantic, Tables(nas), nas.method
    spec = _spec(p)

    @m("iscsi.target.query", max_args=2, roles=ISCSI_R)
    def iscsi_target_query(ctx, filters=None, options=None):
        return nas.query(
            [_entry(nas, r) for _, r in sorted(T["target"].items())], filters, options, "iscsi_target_query"
        )

    @m("iscsi.target.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_target_get_instance(ctx, id_, options=None):
        if id_ not in T["target"]:
            raise InstanceNotFound("iSCSITarget", id_)
        return _entry(nas, T["target"][id_])

    if not p.core:

        @m("iscsi.target.validate_name", max_args=2, min_args=1, roles=ISCSI_R)
        def iscsi_target_validate_name(ctx, name, existing_id=None):
            if not RE_TARGET_NAME.search(name):
                return (
                    "Only lowercase alphanumeric characters plus dot (.), dash (-), and colon (:) are "
                    "allowed."
                )
            if any(t["name"] == name and t["id"] != existing_id for t in T["target"].values()):
                return "Target with this name already exists"
            return None

    @m("iscsi.target.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_target_create(ctx, data):
        data = S.check_dict(pyd, "iscsi_target_create", spec, data)
        _norm_alias(nas, data)
        _validate(nas, "iscsi_target_create", data)
        tid = nas._next_id("target")
        r = {"id": tid, **copy.deepcopy(data)}
        if p.target_rel_tgt_id:
            used = {t["rel_tgt_id"] for t in T["target"].values()}
            r["rel_tgt_id"] = min(i for i in range(1, len(used) + 2) if i not in used)
        T["target"][tid] = r
        nas.service_reload()
        return _entry(nas, r)

    @m("iscsi.target.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_target_update(ctx, id_, data):
        if id_ not in T["target"]:
            raise InstanceNotFound("iSCSITarget", id_)
        data = S.check_dict(pyd, "iscsi_target_update", spec, data, update=True)
        old = T["target"][id_]
        new = {**copy.deepcopy(old), **copy.deepcopy(data)}
        _norm_alias(nas, new)
        _validate(nas, "iscsi_target_create", new, old)  # update reports iscsi_target_create.*
        T["target"][id_] = new
        nas.service_reload()
        return _entry(nas, new)

    if p.target_delete_extents:

        @m("iscsi.target.delete", max_args=3, min_args=1, roles=ISCSI_W, mutating=True)
        def iscsi_target_delete(ctx, id_, force=False, delete_extents=False):
            if id_ not in T["target"]:
                raise InstanceNotFound("iSCSITarget", id_)
            target_delete(nas, id_, force, delete_extents)
            nas.service_reload()
            return True
    else:

        @m("iscsi.target.delete", max_args=2, min_args=1, roles=ISCSI_W, mutating=True)
        def iscsi_target_delete_legacy(ctx, id_, force=False):
            if id_ not in T["target"]:
                raise InstanceNotFound("iSCSITarget", id_)
            target_delete(nas, id_, force, False)
            nas.service_reload()
            return True
