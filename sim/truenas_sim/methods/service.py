"""``service.*``: query, get_instance, update, start/stop/restart/reload, control (a job, 25.04+)."""

from __future__ import annotations

import copy
import errno

from .. import schema as S
from ..errors import CallError, InstanceNotFound, ValidationError
from ..state import JobRequest, NasState

opt = S.opt


def register(nas: NasState) -> None:
    p, pyd, m = nas.p, nas.p.pydantic, nas.method

    SVC_R = ("SERVICE_READ",)
    SVC_W = ("SERVICE_WRITE", "SHARING_ISCSI_WRITE")

    def _svc(name_or_id):
        for s in nas.services.values():
            if s["service"] == name_or_id or s["id"] == name_or_id:
                return s
        return None

    @m("service.query", max_args=2, roles=SVC_R)
    def service_query(ctx, filters=None, options=None):
        return nas.query(
            [copy.deepcopy(s) for s in sorted(nas.services.values(), key=lambda s: s["id"])],
            filters,
            options,
            "service_query",
        )

    @m("service.get_instance", max_args=2, min_args=1, roles=SVC_R)
    def service_get_instance(ctx, id_, options=None):
        s = _svc(id_)
        if s is None:
            raise InstanceNotFound("Service", id_)
        return copy.deepcopy(s)

    @m("service.update", max_args=2, min_args=2, roles=SVC_W, mutating=True)
    def service_update(ctx, id_or_name, data):
        s = _svc(id_or_name)
        if s is None:
            raise InstanceNotFound("Service", id_or_name)
        data = S.check_dict(pyd, "service_update", {"enable": opt("bool", False)}, data, update=True)
        if "enable" in data:
            s["enable"] = data["enable"]
        return s["id"]

    svc_opts = {"ha_propagate": opt("bool", True), "silent": opt("bool", True)}
    if p.service_control:
        svc_opts["timeout"] = opt("int", 120, null=True)

    def _check_svc(name):
        s = _svc(name)
        if s is None or not isinstance(name, str):
            raise CallError(f"Service {name!r} not found", errno.ENOENT)
        return s

    def _start_failure(opts):
        if opts.get("silent", True):
            return False
        # mw: service/service_mixin.py:33 @ TS-26.0.0-BETA.3 | service failed to start
        raise CallError("The iscsitarget service failed to start", 202)

    def do_start(name, opts):
        s = _check_svc(name)
        if s["state"] == "RUNNING":
            if p.core_start_restarts and name == "iscsitarget":
                # CORE: _start_freebsd runs the rc `restart` verb => ctld restarts and drops every session
                nas.restart_count += 1
                nas.drop_sessions()
            return True
        if name == "iscsitarget" and nas.scst_config_error():
            return _start_failure(opts)
        s["state"] = "RUNNING"
        s["pids"] = [4242 + s["id"]]
        return True

    def do_stop(name, opts):
        s = _check_svc(name)
        s["state"] = "STOPPED"
        s["pids"] = []
        if name == "iscsitarget":
            nas.drop_sessions()
        return False if p.core else True

    def do_restart(name, opts):
        s = _check_svc(name)
        if name == "iscsitarget":
            nas.restart_count += 1
            nas.drop_sessions()
            if nas.scst_config_error():
                s["state"], s["pids"] = "STOPPED", []
                return _start_failure(opts)
        s["state"] = "RUNNING"
        s["pids"] = [4242 + s["id"]]
        return True

    def do_reload(name, opts):
        s = _check_svc(name)
        if name == "iscsitarget" and s["state"] == "RUNNING":
            nas.reload_count += 1
            if nas.scst_config_error():
                return _start_failure(opts)
        return True

    verbs = {"start": do_start, "stop": do_stop, "restart": do_restart, "reload": do_reload}
    for verb, fn in verbs.items():

        def make(fn=fn, verb=verb):
            def svc_verb(ctx, name, options=None):
                opts = S.check_dict(pyd, f"service_{verb}.options", svc_opts, options or {})
                return fn(name, opts)

            return svc_verb

        m(f"service.{verb}", max_args=2, min_args=1, roles=SVC_W, mutating=True)(make())

    if p.service_control:

        @m("service.control", job=True, max_args=3, min_args=2, roles=SVC_W, mutating=True)
        def service_control(ctx, verb, name, options=None):
            if verb not in ("START", "STOP", "RESTART", "RELOAD"):
                # mw: api/v25_10_0/service.py:41 @ TS-26.0.0-BETA.3 | verb: Literal["START", "STOP", "RESTART", "RELOAD"]
                raise ValidationError(
                    "service_control.verb", "Input should be 'START', 'STOP', 'RESTART' or 'RELOAD'"
                )
            opts = S.check_dict(pyd, "service_control.options", svc_opts, options or {})
            _check_svc(name)
            return JobRequest(
                "service.control", [verb, name, options or {}], run=lambda: verbs[verb.lower()](name, opts)
            )
