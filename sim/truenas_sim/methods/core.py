"""``core.*``: ping, connection options, jobs (get_jobs, bulk, job_abort)."""

from __future__ import annotations

import errno

from ..errors import CallError, ValidationError
from ..filters import check_options
from ..state import JobRequest, NasState


def _jobs_visible(nas: NasState, ctx) -> list[dict]:
    return [
        j
        for j in nas.jobs.values()
        if ctx.session.full_admin
        or (j["credentials"] or {}).get("data", {}).get("username") == ctx.session.username
    ]


def register(nas: NasState) -> None:
    p, pyd, m = nas.p, nas.p.pydantic, nas.method

    @m("core.ping", no_auth=True, max_args=0)
    def core_ping(ctx):
        return "pong"

    @m("core.set_options", no_auth=True, max_args=1)
    def core_set_options(ctx, options=None):
        options = options or {}
        if not isinstance(options, dict):
            # mw: api/v25_04_0/core.py:39 @ TS-26.0.0-BETA.3 | class CoreSetOptionsArgs(BaseModel)
            raise ValidationError("core_set_options.options", "Input should be a valid dictionary")
        if p.legacy_jobs_option:
            conn_opts = ctx.conn.options if ctx.conn is not None else {}
            for k in ("legacy_jobs", "private_methods", "py_exceptions"):
                if k in options:
                    conn_opts[k] = bool(options[k])
            return {
                "legacy_jobs": conn_opts.get("legacy_jobs", True),
                "private_methods": conn_opts.get("private_methods", False),
                "py_exceptions": conn_opts.get("py_exceptions", False),
            }
        for k in options:
            if k != "py_exceptions":
                raise ValidationError(f"options.{k}", "Extra inputs are not permitted")
        return None

    @m("core.get_jobs", max_args=2)
    def core_get_jobs(ctx, filters=None, options=None):
        options = dict(check_options(options, "core_get_jobs", pyd))
        options.pop("extra", None) if not pyd else None
        return nas.query(_jobs_visible(nas, ctx), filters, options, "core_get_jobs")

    @m("core.bulk", job=True, max_args=3, min_args=2)
    def core_bulk(ctx, method, params, description=None):
        if not isinstance(method, str):
            raise ValidationError(
                "core_bulk.method", "Input should be a valid string" if pyd else "Not a string"
            )
        if not isinstance(params, list) or not all(isinstance(x, list) for x in params):
            # mw: api/v25_10_0/core.py:246 @ TS-26.0.0-BETA.3 | class CoreBulkArgs(BaseModel)
            raise ValidationError("core_bulk.params", "Input should be a valid list" if pyd else "Not a list")
        nas.authorize(ctx, method)  # authorisation is checked once, for `method`
        return JobRequest(
            "core.bulk",
            [method, params, description],
            run=lambda: None,
            description=description,
            bulk=(method, params),
        )

    @m("core.job_abort", max_args=1, min_args=1)
    def core_job_abort(ctx, job_id):
        if not isinstance(job_id, int):
            # mw: api/v25_10_0/core.py:165 @ TS-26.0.0-BETA.3 | class CoreJobAbortArgs(BaseModel)
            raise ValidationError("core_job_abort.id", "Input should be a valid integer")
        if job_id not in nas.jobs:
            raise CallError(f"Job {job_id} not found", errno.ENOENT)
