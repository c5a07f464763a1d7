"""``iscsi.global.*``: config, update, sessions."""

from __future__ import annotations

import copy

from .. import schema as S
from ..errors import ValidationError
from ..state import NasState
from .common import ISCSI_R, ISCSI_W

opt = S.opt


def register(nas: NasState) -> None:
    p, pyd, m = nas.p, nas.p.pydantic, nas.method

    def _global_entry():
        g = nas.global_cfg
        e = {"id": 1, "basename": g["basename"], "isns_servers": list(g["isns_servers"])}
        if p.global_listen_port:
            e["listen_port"] = g["listen_port"]
        e["pool_avail_threshold"] = g["pool_avail_threshold"]
        e["alua"] = g["alua"]
        if p.global_iser:
            e["iser"] = g["iser"]
        if p.global_mode_fields:  # middleware TS-26.0.0-BETA.3 api/v26_0_0/iscsi_global.py:21
            e["direct_config"] = None
            e["mode"] = 0
        return e

    @m("iscsi.global.config", max_args=0, roles=ISCSI_R)
    def iscsi_global_config(ctx):
        return _global_entry()

    g_spec = {
        "basename": opt("str"),
        "isns_servers": opt("list", items=S.Field("str")),
        "pool_avail_threshold": opt("int", null=True, range=(1, 99)),
        "alua": opt("bool"),
    }
    if p.global_listen_port:
        g_spec["listen_port"] = opt("int", range=(1025, 65535))
    if p.global_iser:
        g_spec["iser"] = opt("bool")

    @m("iscsi.global.update", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_global_update(ctx, data):
        data = S.check_dict(pyd, "iscsiglobal_update", g_spec, data, update=True)
        if "basename" in data and not data["basename"]:
            raise ValidationError("iscsiglobal_update.basename", "This field is required")
        nas.global_cfg.update(data)
        nas.service_reload()
        return _global_entry()

    @m("iscsi.global.sessions", max_args=2, roles=ISCSI_R)
    def iscsi_global_sessions(ctx, filters=None, options=None):
        return nas.query(copy.deepcopy(nas.sessions), filters, options, "iscsi_global_sessions")
