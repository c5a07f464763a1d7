"""Older API versions served by a newer profile (middleware TS-25.04.2.4 src/middlewared/middlewared/
api/base/server/legacy_api_method.py:15 ``LegacyAPIMethod``; the versions are the api/v24_10, api/v25_04_*
packages).

On 25.04+ the legacy ``/websocket`` endpoint speaks ``v24.10`` semantics and ``/api/vX`` pins a version; the
middleware validates arguments against the old models and converts results back to them. The simulator
models the differences that matter for netprov's methods:

* ``v24.10``: ``iscsi.target.delete(id, force)`` (no ``delete_extents``); portals still carry
  ``discovery_authmethod``/``discovery_authgroup`` (accepted and ignored on input, ``NONE``/``null`` on
  output); ``iscsi.auth`` has no ``discovery_auth``; targets have no ``iscsi_parameters``; the global
  config has no ``iser``; extents have no ``product_id``.
* ``v25.04.x`` on a 25.10 profile: extents have no ``product_id``.
"""

from __future__ import annotations

from .errors import ValidationErrors


def api_version_for(profile, kind: str, path: str) -> str | None:
    """None = the profile's current API."""
    if not profile.jsonrpc:
        return None
    if kind == "legacy" or path == "/api/v24.10":
        return "v24.10"
    if path.startswith("/api/v25.04") and profile.name != "25.04":
        return "v25.04"
    return None


def _extra(attr):
    return ValidationErrors([(attr, "Extra inputs are not permitted", 22)])


def adapt_args(version: str | None, method: str, params: list) -> list:
    if version is None:
        return params
    params = list(params)
    if version == "v24.10":
        if method == "iscsi.target.delete" and len(params) > 2:
            raise ValidationErrors([(None, f"Too many arguments (expected 2, found {len(params)})", 22)])
        if method in ("iscsi.portal.create", "iscsi.portal.update"):
            i = 0 if method.endswith("create") else 1
            if len(params) > i and isinstance(params[i], dict):
                params[i] = {
                    k: v
                    for k, v in params[i].items()
                    if k not in ("discovery_authmethod", "discovery_authgroup")
                }
        if method in ("iscsi.auth.create", "iscsi.auth.update"):
            i = 0 if method.endswith("create") else 1
            if len(params) > i and isinstance(params[i], dict) and "discovery_auth" in params[i]:
                raise _extra("data.discovery_auth")
        if method in ("iscsi.target.create", "iscsi.target.update"):
            i = 0 if method.endswith("create") else 1
            if len(params) > i and isinstance(params[i], dict) and "iscsi_parameters" in params[i]:
                raise _extra(f"iscsi_target_{method.rsplit('.', 1)[1]}.iscsi_parameters")
        if method == "iscsi.global.update" and params and isinstance(params[0], dict) and "iser" in params[0]:
            raise _extra("iscsi_global_update.iser")
    if method in ("iscsi.extent.create", "iscsi.extent.update"):
        i = 0 if method.endswith("create") else 1
        if len(params) > i and isinstance(params[i], dict) and "product_id" in params[i]:
            raise _extra(f"iscsi_extent_{method.rsplit('.', 1)[1]}.product_id")
    return params


def _drop(result, *keys):
    def one(r):
        if isinstance(r, dict):
            return {k: v for k, v in r.items() if k not in keys}
        return r

    return [one(r) for r in result] if isinstance(result, list) else one(result)


def adapt_result(version: str | None, method: str, result):
    if version is None:
        return result
    ns = method.rsplit(".", 1)[0]
    if ns == "iscsi.extent":
        result = _drop(result, "product_id")
    if version != "v24.10":
        return result
    if ns == "iscsi.auth":
        return _drop(result, "discovery_auth")
    if ns == "iscsi.target":
        return _drop(result, "iscsi_parameters")
    if ns == "iscsi.global" and method != "iscsi.global.sessions":
        return _drop(result, "iser")
    if ns == "iscsi.portal" and method != "iscsi.portal.listen_ip_choices":

        def add(r):
            if isinstance(r, dict) and "listen" in r:
                return {**r, "discovery_authmethod": "NONE", "discovery_authgroup": None}
            return r

        return [add(r) for r in result] if isinstance(result, list) else add(result)
    return result
