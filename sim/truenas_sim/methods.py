"""Every simulated API method (doc §8). Registered on a :class:`~.nas.Nas` by :func:`register`."""

from __future__ import annotations

import copy
import errno
import hashlib
import ipaddress
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema as S
from .errors import CallError, InstanceNotFound, ValidationError, ValidationErrors
from .filters import check_options
from .nas import (
    FS_ONLY_FIELDS,
    RE_DS_COMPONENT,
    RE_TARGET_NAME,
    VOLBLOCKSIZES,
    dataset_record,
    Nas,
    zfs_human,
    zvol_name,
    zvol_path,
)

req, opt = S.req, S.opt


@dataclass
class JobRequest:
    """Returned by job methods; the server creates the job, answers with its id and runs ``run``."""

    method: str
    arguments: list
    run: Callable[[], Any]
    description: str | None = None
    bulk: tuple | None = None  # (method, params_list) for core.bulk: the server runs the inner calls


def _sys_info(nas: Nas) -> dict:
    p = nas.p
    return {
        "version": p.version_string,
        "buildtime": {"$date": 1735689600000},
        "hostname": "truenas-sim",
        "physmem": 34359738368,
        "model": "Simulated CPU",
        "cores": 8,
        "physical_cores": 4,
        "loadavg": [0.0, 0.0, 0.0],
        "uptime": "1:00:00",
        "uptime_seconds": 3600.0,
        "system_serial": "SIM0001",
        "system_product": "TrueNAS Simulator",
        "system_product_version": "1.0",
        "license": None,
        "boottime": {"$date": int(time.time() * 1000) - 3600000},
        "datetime": {"$date": int(time.time() * 1000)},
        "timezone": "UTC",
        "system_manufacturer": "netprov",
        "ecc_memory": False,
    }


def _wanted_keys(filters, options) -> set | None:
    """Top-level entry keys a query needs (None = all): lets pool.dataset.query skip unselected properties."""
    select = options.get("select")
    if not select:
        return None
    keys = set()

    def head(path):
        if isinstance(path, str):
            keys.add(path.split(".", 1)[0].lstrip("-").replace("nulls_first:", "").replace("nulls_last:", ""))

    for s in select:
        head(s[0] if isinstance(s, list) and s else s)

    def walk(fs):
        for f in fs if isinstance(fs, list) else []:
            if isinstance(f, list) and len(f) == 2 and f[0] == "OR":
                for sub in f[1] if isinstance(f[1], list) else []:
                    walk(sub if isinstance(sub, list) and sub and isinstance(sub[0], list) else [sub])
            elif isinstance(f, list) and f:
                head(f[0])

    walk(filters)
    for o in options.get("order_by") or []:
        if isinstance(o, str):
            head(o.replace("nulls_first:", "").replace("nulls_last:", "").lstrip("-"))
    return keys


# ------------------------------------------------------------ pool.dataset.query, as each release runs it
#
# What a real ``pool.dataset.query`` reads is decided before any filter runs (filters and ``select`` trim
# the answer, not the work; doc §8.2, checked against the middleware source):
#
# * FreeNAS 11.3 (``plugins/pool.py`` ``query``): every id/name/pool/type term goes to ``zfs.dataset.query``
#   with ``extra`` passed through whole; that pushes down only a lone ``["id", "=", X]`` (then
#   ``__getstate__()``: X and its children, every property), otherwise it reads every dataset with
#   ``extra.properties``. ``retrieve_children`` does not exist: children always come.
# * CORE 12/13 (``plugins/pool.py``): the first ``id``/``name`` ``=`` term is pushed down (X and its
#   children nested, ``flat`` not applied), else every dataset; only ``extra.flat`` is passed on, so
#   ``properties`` and ``retrieve_children`` are ignored: every property, always children.
# * SCALE 24.10 (``plugins/pool_/dataset.py``): a lone ``["id", "=", X]`` is pushed down; otherwise the
#   read starts at the pool roots. ``retrieve_children=false`` then means the roots alone, so a
#   ``["id", "^", "tank/x"]`` filter finds nothing. ``properties`` limits the ZFS properties; user
#   properties (``comments`` included) always come (no ``retrieve_user_props`` yet).
# * 25.04: the same, pushdown for a lone ``id``/``name`` ``=``/``in`` term; ``retrieve_user_props``.
# * 25.10 and later (``plugins/pool_/dataset_query_utils.py`` ``generic_query``): nothing is pushed
#   down, every dataset is read (a filter makes it recurse even with ``retrieve_children=false``).
#
# The cost model (``Knobs.dataset_cost``, ``Knobs.property_cost``) charges each dataset read, and each
# property read from it: the ZFS properties the simulator models (all of them unless the release honours
# ``extra.properties``) plus one per user property (``comments`` and ``managedby`` are user properties).

#: Entry key -> ZFS property name, for every ZFS property the simulator models (``extra.properties`` takes
#: ZFS names). The volume-only ones are marked.
ZFS_PROPS = {"compression": "compression", "sync": "sync", "deduplication": "dedup", "readonly": "readonly",
             "checksum": "checksum", "copies": "copies", "refreservation": "refreservation",
             "reservation": "reservation", "used": "used", "available": "available", "origin": "origin",
             "creation": "creation", "key_format": "keyformat", "encryption_algorithm": "encryption"}
ZFS_VOLUME_PROPS = {"volsize": "volsize", "volblocksize": "volblocksize", "snapdev": "snapdev"}
#: Entry keys that are user properties surfaced at the top level.
USER_PROP_KEYS = {"comments", "managedby"}
_CRYPTO = {"encryption", "encryptionroot", "keyformat", "keylocation", "keystatus"}


def _release(p) -> tuple:
    try:
        return tuple(int(x) for x in p.name.split(".")[:2])
    except ValueError:
        return (99,)


@dataclass
class DatasetRead:
    """Which datasets one ``pool.dataset.query`` reads, and how (see the notes above)."""

    starts: list          # datasets the read starts at (with their children when ``children``)
    children: bool
    flat: bool
    props: list | None    # ZFS property names honoured; None = all
    user_props: bool
    everything: bool = False

    def _read_names(self, datasets) -> list:
        if self.everything:
            return list(datasets)
        if not self.children:
            return list(self.starts)
        out = []
        for s in self.starts:
            out.append(s)
            out += [n for n in datasets if n.startswith(s + "/")]
        return out

    def read_count(self, datasets) -> int:
        return len(self._read_names(datasets))

    def props_read(self, datasets) -> int:
        total = 0
        for n in self._read_names(datasets):
            d = datasets[n]
            keys = dict(ZFS_PROPS, **(ZFS_VOLUME_PROPS if d["type"] == "VOLUME" else {}))
            total += len(keys) if self.props is None else sum(1 for z in keys.values() if z in self.props)
            if self.user_props:
                total += len(d.get("user_properties") or {}) + sum(
                    1 for k in USER_PROP_KEYS if d.get(k) is not None)
        return total


def dataset_read_plan(p, filters: list, extra: dict, datasets) -> DatasetRead:
    """What a ``pool.dataset.query(filters, {"extra": extra})`` reads on profile ``p``'s release."""
    v = _release(p)
    props = extra.get("properties") if isinstance(extra.get("properties"), list) else None
    flat = extra.get("flat", True) is not False
    children = extra.get("retrieve_children", True) is not False
    user_props = True
    terms = [f for f in filters if isinstance(f, list) and len(f) == 3]
    roots = sorted(n for n in datasets if "/" not in n)

    def lone(ops, fields=("id",)):
        if len(filters) == 1 and len(terms) == 1 and terms[0][0] in fields and terms[0][1] in ops:
            val = terms[0][2]
            return [val] if isinstance(val, str) else [x for x in val if isinstance(x, str)]
        return None

    if v < (12,):  # FreeNAS 11.3
        zf = [f for f in terms if f[0] in ("id", "name", "pool", "type")]
        lone_id = len(zf) == 1 and zf[0][:2] == ["id", "="] and isinstance(zf[0][2], str)
        pushed = [zf[0][2]] if lone_id else None
        if pushed is not None:
            return DatasetRead([n for n in pushed if n in datasets], True, False, None, True)
        return DatasetRead(roots, True, flat, props, True)
    if v < (20,):  # CORE 12/13: only extra.flat reaches ZFS
        eq = [f for f in terms if f[0] in ("id", "name") and f[1] == "=" and isinstance(f[2], str)]
        if eq:
            return DatasetRead([n for n in [eq[0][2]] if n in datasets], True, False, None, True)
        return DatasetRead(roots, True, flat, None, True)
    if v >= (25, 10):
        if props and not any(z in props for z in {**ZFS_PROPS, **ZFS_VOLUME_PROPS}.values()):
            props = None  # only unknown names: the default set ([] is none at all)
        user_props = extra.get("retrieve_user_props", True) is not False
        return DatasetRead([], children, flat, props, user_props, everything=True)
    if v < (25, 4):  # 24.10
        pushed = lone(("=",))
    else:  # 25.04
        pushed = lone(("=", "in"), ("id", "name"))
        user_props = extra.get("retrieve_user_props", True) is not False
    starts = roots if pushed is None else [n for n in pushed if n in datasets]
    return DatasetRead(starts, children, flat, props, user_props)


def _flatten(rows: list) -> list:
    out = []
    for r in rows:
        out.append(r)
        out += _flatten(r.get("children") or [])
    return out


def _limit_props(entry: dict, plan: DatasetRead) -> dict:
    """``entry`` (and its nested children) as the release returns it under ``plan``'s options."""
    if plan.props is None and plan.user_props:
        return entry
    keep_zfs = None if plan.props is None else set(plan.props)
    out = {}
    for k, v in entry.items():
        z = ZFS_PROPS.get(k) or ZFS_VOLUME_PROPS.get(k)
        if z is not None and keep_zfs is not None and z not in keep_zfs:
            continue
        if (k in USER_PROP_KEYS or k == "user_properties") and not plan.user_props:
            continue
        if k in ("encrypted", "encryption_root", "key_loaded", "locked") and keep_zfs is not None \
                and not (keep_zfs & _CRYPTO):
            continue  # encryption fields come only with an encryption property
        if k == "children" and isinstance(v, list):
            v = [_limit_props(c, plan) for c in v]
        out[k] = v
    return out


def register(nas: Nas):
    p = nas.p
    pyd = p.pydantic

    class _Tables:
        def __getitem__(self, k):
            return nas.tables[k]

    T = _Tables()
    m = nas.method

    # ============================================================== core / system / auth
    @m("core.ping", no_auth=True, max_args=0)
    def core_ping(ctx):
        return "pong"

    @m("core.set_options", no_auth=True, max_args=1)
    def core_set_options(ctx, options=None):
        options = options or {}
        if not isinstance(options, dict):
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

    @m("system.version", max_args=0)
    def system_version(ctx):
        return p.version_string

    @m("system.info", max_args=0)
    def system_info(ctx):
        return _sys_info(nas)

    @m("system.product_type", max_args=0)
    def system_product_type(ctx):
        return "CORE" if p.core else "COMMUNITY_EDITION"

    @m("auth.me", max_args=0)
    def auth_me(ctx):
        return _user_info(ctx.session.username)

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

    def _login_password(ctx, username, password, otp_token=None, two_step=False) -> str:
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

    def _find_key(key: str):
        for k in nas.api_keys.values():
            if k["key"] == key:
                return k
        return None

    def _login_key(ctx, key, username=None) -> str:
        k = _find_key(key) if isinstance(key, str) else None
        if k is None or (username is not None and k["username"] != username):
            return "AUTH_ERR"
        if k.get("revoked"):
            return "EXPIRED"
        if p.revoke_insecure_api_key and not ctx.secure_transport:
            k["revoked"] = True
            k["revoked_reason"] = "Attempt to use over an insecure transport"
            nas.on_event("api_key.query", "changed", k["id"], None)
            return "EXPIRED"
        ctx.session.authenticated = True
        ctx.session.username = k["username"]
        ctx.session.roles = None if k.get("roles") is None else frozenset(k["roles"])
        ctx.session.api_key_id = k["id"]
        return "SUCCESS"

    @m("auth.login", no_auth=True, max_args=3, min_args=2)
    def auth_login(ctx, username, password, otp_token=None):
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValidationError("auth_login.username", "Input should be a valid string")
        return _login_password(ctx, username, password, otp_token) == "SUCCESS"

    if not (p.name == "11.3"):

        @m("auth.login_with_api_key", no_auth=True, max_args=1, min_args=1, mutating=True)
        def auth_login_with_api_key(ctx, key):
            return _login_key(ctx, key) == "SUCCESS"

    @m("auth.logout", max_args=0)
    def auth_logout(ctx):
        ctx.session.authenticated = False
        ctx.session.username = None
        return True

    if p.login_ex:

        @m("auth.mechanism_choices", no_auth=True, max_args=0)
        def auth_mechanism_choices(ctx):
            return ["API_KEY_PLAIN", "AUTH_TOKEN_PLAIN", "PASSWORD_PLAIN"]

        @m("auth.login_ex", no_auth=True, max_args=1, min_args=1, mutating=True)
        def auth_login_ex(ctx, data):
            if not isinstance(data, dict) or "mechanism" not in data:
                raise ValidationError("auth_login_ex.mechanism", "Field required")
            mech = data["mechanism"]
            opts = data.get("login_options") or {}
            if mech == "PASSWORD_PLAIN":
                resp = _login_password(ctx, data.get("username"), data.get("password"), two_step=True)
                if resp == "OTP_REQUIRED":
                    return {"response_type": "OTP_REQUIRED", "username": data.get("username")}
            elif mech == "API_KEY_PLAIN":
                if "username" not in data:
                    raise ValidationError("auth_login_ex.username", "Field required")
                resp = _login_key(ctx, data.get("api_key"), data.get("username"))
            else:
                raise ValidationError(
                    "auth_login_ex.mechanism",
                    "Input should be 'API_KEY_PLAIN', 'PASSWORD_PLAIN', 'AUTH_TOKEN_PLAIN' or 'OTP_TOKEN'",
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
                raise ValidationError("auth_login_ex_continue.mechanism", "Input should be 'OTP_TOKEN'")
            user = ctx.session.pending_otp_user
            if user is None:
                raise CallError("No authentication in progress", errno.EINVAL)
            if data.get("otp_token") != nas.otp.get(user):
                ctx.session.pending_otp_user = None
                return {"response_type": "AUTH_ERR"}
            _grant(ctx, user)
            return {"response_type": "SUCCESS", "user_info": _user_info(user), "authenticator": "LEVEL_2"}

    # ============================================================== jobs
    def _jobs_visible(ctx):
        return [
            j
            for j in nas.jobs.values()
            if ctx.session.full_admin
            or (j["credentials"] or {}).get("data", {}).get("username") == ctx.session.username
        ]

    @m("core.get_jobs", max_args=2)
    def core_get_jobs(ctx, filters=None, options=None):
        options = dict(check_options(options, "core_get_jobs", pyd))
        options.pop("extra", None) if not pyd else None
        return nas.query(_jobs_visible(ctx), filters, options, "core_get_jobs")

    @m("core.bulk", job=True, max_args=3, min_args=2)
    def core_bulk(ctx, method, params, description=None):
        if not isinstance(method, str):
            raise ValidationError(
                "core_bulk.method", "Input should be a valid string" if pyd else "Not a string"
            )
        if not isinstance(params, list) or not all(isinstance(x, list) for x in params):
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
            raise ValidationError("core_job_abort.id", "Input should be a valid integer")
        if job_id not in nas.jobs:
            raise CallError(f"Job {job_id} not found", errno.ENOENT)

    # ============================================================== pool / datasets
    pool_entry = {
        "id": 1,
        "name": "tank",
        "guid": "1234567890123456789",
        "status": "ONLINE",
        "path": "/mnt/tank",
        "healthy": True,
        "warning": False,
        "status_code": "HEALTHY",
        "status_detail": None,
        "size": 4398046511104,
        "is_upgraded": True,
        "topology": {"data": [], "log": [], "cache": [], "spare": [], "special": [], "dedup": []},
    }

    @m("pool.query", max_args=2, roles=("POOL_READ",))
    def pool_query(ctx, filters=None, options=None):
        e = dict(pool_entry)
        e["allocated"] = nas.ds_used("tank")
        e["free"] = nas.ds_available()
        return nas.query([e], filters, options, "pool_query")

    @m("pool.dataset.query", max_args=2, roles=("DATASET_READ",))
    def pool_dataset_query(ctx, filters=None, options=None):
        options = dict(check_options(options, "pool_dataset_query", pyd))
        extra = options.get("extra") or {}
        if not isinstance(extra, dict):
            extra = {}
        plan = dataset_read_plan(p, filters if isinstance(filters, list) else [], extra, nas.datasets)
        wanted = _wanted_keys(filters, options)
        if wanted is not None and "children" in wanted:
            wanted = None  # children come whole: every key of every nested entry
        elif wanted is not None and plan.children:
            wanted = wanted | {"children"}  # built to be flattened; select drops them again
        if plan.everything:  # 25.10+: every dataset is read, whatever the filter
            names = sorted(nas.datasets)
            if plan.children:
                roots = nas.ds_entries([n for n in names if "/" not in n], children=True, wanted=wanted)
                rows = _flatten(roots) if (plan.flat or filters) else roots
            else:
                rows = nas.ds_entries(names, children=False, wanted=wanted)
        else:
            rows = nas.ds_entries(plan.starts, children=plan.children, wanted=wanted)
            if plan.flat:
                rows = _flatten(rows)
        rows = [_limit_props(r, plan) for r in rows]
        ctx.work = {"datasets": plan.read_count(nas.datasets), "properties": plan.props_read(nas.datasets)}
        nas.dataset_reads.append(
            {"filters": copy.deepcopy(filters), "options": copy.deepcopy(options), **ctx.work})
        return nas.query(rows, filters, options, "pool_dataset_query")

    vbs_choices = tuple(k for k in VOLBLOCKSIZES if p.core is False or k != "512B")
    ds_pyd = p.name in ("25.10", "26")  # 25.10+: pydantic dataset model; up to 25.04 legacy schema
    ds_create_spec = {
        "name": req("str"),
        "type": opt("str", "FILESYSTEM", enum=("FILESYSTEM", "VOLUME")),
        "volsize": opt("int", None, null=True),
        "volblocksize": opt("str", None, enum=vbs_choices),
        "sparse": opt("bool", False),
        "force_size": opt("bool", False),
        "comments": opt("str", None),
        "managedby": opt("str", None),
        "sync": opt("str", None),
        "compression": opt("str", None),
        "deduplication": opt("str", None),
        "readonly": opt("str", None),
        "snapdev": opt("str", None),
        "copies": opt("any", None),
        "checksum": opt("str", None),
        "refreservation": opt("any", None),
        "reservation": opt("any", None),
        "encryption": opt("bool", False),
        "encryption_options": opt("dict", None),
        "inherit_encryption": opt("bool", True),
        "exec": opt("str", None),
        "readonly_": opt("any", None),
        "share_type": opt("str", "GENERIC"),
        "special_small_block_size": opt("any", None),
    }
    ds_create_spec.pop("readonly_")
    for f in FS_ONLY_FIELDS:
        ds_create_spec[f] = opt("any", None)
    # accepted by every release's pool_dataset_create (plugins/pool.py on CORE, plugins/pool_/dataset.py on SCALE)
    for f in ("quota_warning", "quota_critical", "refquota_warning", "refquota_critical", "snapdir"):
        ds_create_spec[f] = opt("any", None)
    if p.core:
        ds_create_spec.pop("snapdev")  # Inheritable(Str('snapdev')) is SCALE-only (24.10 plugins/pool_/dataset.py)
    if p.name == "13":
        ds_create_spec["xattr"] = opt("any", None)  # TN-13.0 plugins/pool.py Str('xattr'); gone on SCALE
    if p.name == "11.3":
        # TN-11.3-U5 plugins/pool.py pool_dataset_create: no managedby, checksum, special_small_block_size,
        # acltype or encryption fields yet (all arrived in 12)
        for k in ("managedby", "checksum", "special_small_block_size", "encryption", "encryption_options",
                  "inherit_encryption", "acltype"):
            ds_create_spec.pop(k)
    if p.user_properties:
        ds_create_spec["user_properties"] = opt("list", list, items={"key": req("str"), "value": req("str")})
    if p.create_ancestors:
        ds_create_spec["create_ancestors"] = opt("bool", False)
    ds_update_spec = {
        k: v
        for k, v in ds_create_spec.items()
        if k
        not in (
            "name",
            "type",
            "sparse",
            "volblocksize",
            "casesensitivity",
            "share_type",
            "encryption",
            "encryption_options",
            "inherit_encryption",
            "create_ancestors",
            "user_properties",
        )
    }
    if p.user_properties:
        ds_update_spec["user_properties_update"] = opt(
            "list", list, items={"key": req("str"), "value": opt("str", None), "remove": opt("bool", False)}
        )

    def _valid_ds_name(name: str) -> bool:
        if not name or name.startswith("/") or name.endswith("/") or name.endswith(" "):
            return False
        return all(c and c not in (".", "..") and RE_DS_COMPONENT.match(c) for c in name.split("/"))

    @m("pool.dataset.create", max_args=1, min_args=1, roles=("DATASET_WRITE",), mutating=True)
    def pool_dataset_create(ctx, data):
        sch = "pool_dataset_create"
        data = S.check_dict(ds_pyd, sch, ds_create_spec, data)
        verrors = ValidationErrors()
        name = data["name"]
        if "/" not in name:
            verrors.add(f"{sch}.name", "You need a full name, e.g. pool/newdataset")
        elif not _valid_ds_name(name):
            verrors.add(f"{sch}.name", "Invalid dataset name")
        elif len(name) > p.dataset_name_max and p.name in ("24.10", "25.04"):
            # only TS-24.10/25.04 plugins/pool_/dataset.py check it; CORE leaves it to ZFS and 25.10+ defines
            # ZFS_MAX_DATASET_NAME_LEN in api/v25_10_1/pool_dataset.py without using it
            verrors.add(
                f"{sch}.name", f"Dataset name length should be less than or equal to {p.dataset_name_max}"
            )
        elif name in nas.datasets:
            verrors.add(f"{sch}.name", "Path already exists")
        else:
            parent = name.rsplit("/", 1)[0]
            if parent not in nas.datasets:
                if data.get("create_ancestors"):
                    if name.split("/")[0] not in nas.datasets:
                        verrors.add(
                            f"{sch}.name",
                            "Please specify a pool which exists for the dataset/volume to be created",
                        )
                    else:
                        cur = name.split("/")[0]
                        for comp in name.split("/")[1:-1]:
                            cur = f"{cur}/{comp}"
                            if cur in nas.datasets and nas.datasets[cur]["type"] == "VOLUME":
                                verrors.add(f"{sch}.name", f"{cur}: parent may not be a ZFS volume")
                                break
                elif p.name in ("25.10", "26"):
                    # TS-25.10.1 plugins/pool_/dataset.py: "zpool (x) does not exist." / "Parent dataset (x) ..."
                    what = "zpool" if "/" not in parent else "Parent dataset"
                    verrors.add(f"{sch}.name", f"{what} ({parent}) does not exist.")
                else:
                    verrors.add(f"{sch}.name", "Parent dataset does not exist for specified name")
            elif nas.datasets[parent]["type"] == "VOLUME":
                verrors.add(f"{sch}.name", f"{parent}: parent may not be a ZFS volume")
            elif nas.datasets[parent]["props"].get("readonly") == "ON":
                verrors.add(f"{sch}.name", f"{parent}: parent dataset is read-only")
        vol = data["type"] == "VOLUME"
        if vol:
            if data["volsize"] is None:
                verrors.add(f"{sch}.volsize", "This field is required for VOLUME")
            for f in FS_ONLY_FIELDS:
                if data.get(f) is not None:
                    verrors.add(f"{sch}.{f}", "This field is not valid for VOLUME")
            vbs_given = data["volblocksize"] is not None
            if data["volblocksize"] is None:
                data["volblocksize"] = p.default_volblocksize or "8K"
            vbs = VOLBLOCKSIZES[data["volblocksize"]]
            if data["volsize"] is not None:
                if (vbs_given or not p.volblocksize_check_only_if_given) and data["volsize"] % vbs:
                    verrors.add(f"{sch}.volsize", "Volume size should be a multiple of volume block size")
                elif data["volsize"] <= 0:
                    verrors.add(f"{sch}.volsize", "Volume size should be greater than 0")
                elif not data["force_size"] and data["volsize"] > nas.ds_available() * 0.80:
                    verrors.add(
                        f"{sch}.volsize",
                        "It is not recommended to use more than 80% of your available space for VOLUME",
                    )
        else:
            for f in ("volsize", "volblocksize", "sparse"):
                if f in ("volsize", "volblocksize") and data.get(f) is not None:
                    verrors.add(f"{sch}.{f}", "This field is not valid for FILESYSTEM")
        for i, up in enumerate(data.get("user_properties") or []):
            if ":" not in up.get("key", ""):
                verrors.add(f"{sch}.user_properties.{i}.key", "Key must contain a ':'")
        verrors.check()
        if data.get("create_ancestors"):
            cur = name.split("/")[0]
            for comp in name.split("/")[1:-1]:
                cur = f"{cur}/{comp}"
                if cur not in nas.datasets:
                    _mk_ds(cur, "FILESYSTEM")
        rec = _mk_ds(name, data["type"])
        if vol:
            rec["volsize"] = data["volsize"]
            rec["volblocksize"] = VOLBLOCKSIZES[data["volblocksize"]]
            rec["sparse"] = data["sparse"]
            rec["device_pending"] = nas.device_lag_default
        for k in ("sync", "compression", "deduplication", "readonly", "snapdev", "checksum", "copies"):
            if data.get(k) not in (None, "INHERIT"):
                rec["props"][k] = data[k]
        rec["comments"] = data.get("comments")
        managedby = data.get("managedby")
        if managedby is not None and p.name in ("13", "24.10") and ctx.peer_ip:
            managedby = f"{managedby}@{ctx.peer_ip}"
        rec["managedby"] = managedby
        for up in data.get("user_properties") or []:
            rec["user_properties"][up["key"]] = up["value"]
        entry = nas.ds_entries([name])[0]
        nas.on_event("pool.dataset.query", "added", name, entry)
        return entry

    def _mk_ds(name, type_):
        rec = nas.datasets[name] = dataset_record(name, type_)
        return rec

    @m("pool.dataset.get_instance", max_args=2, min_args=1, roles=("DATASET_READ",))
    def pool_dataset_get_instance(ctx, id_, options=None):
        if id_ not in nas.datasets:
            raise InstanceNotFound("PoolDataset", id_)
        return nas.ds_entries([id_])[0]

    @m("pool.dataset.update", max_args=2, min_args=2, roles=("DATASET_WRITE",), mutating=True)
    def pool_dataset_update(ctx, id_, data):
        if id_ not in nas.datasets:
            raise InstanceNotFound("PoolDataset", id_)
        sch = "pool_dataset_update"
        data = S.check_dict(ds_pyd, sch, ds_update_spec, data, update=True)
        rec = nas.datasets[id_]
        verrors = ValidationErrors()
        if "volsize" in data and data["volsize"] is not None:
            if rec["type"] != "VOLUME":
                verrors.add(f"{sch}.volsize", "This field is not valid for FILESYSTEM")
            elif data["volsize"] < rec["volsize"]:
                verrors.add(
                    f"{sch}.volsize", "You cannot shrink a zvol from GUI, this may lead to data loss."
                )
            elif data["volsize"] % rec["volblocksize"]:
                verrors.add(f"{sch}.volsize", "Volume size should be a multiple of volume block size")
            elif (
                not data.get("force_size")
                and not rec.get("sparse")
                and data["volsize"] - rec["volsize"] > nas.ds_available() * 0.80
            ):
                verrors.add(
                    f"{sch}.volsize",
                    "It is not recommended to use more than 80% of your available space for VOLUME",
                )
        for i, up in enumerate(data.get("user_properties_update") or []):
            if ":" not in up.get("key", ""):
                verrors.add(f"{sch}.user_properties_update.{i}.key", "Key must contain a ':'")
            elif not up.get("remove") and up.get("value") is None:
                verrors.add(f"{sch}.user_properties_update.{i}.value", "This field is required")
        verrors.check()
        if data.get("volsize") is not None and rec["type"] == "VOLUME":
            rec["volsize"] = data["volsize"]
        for k in ("sync", "compression", "deduplication", "readonly", "snapdev", "checksum", "copies"):
            if k in data and data[k] is not None:
                if data[k] == "INHERIT":
                    rec["props"].pop(k, None)
                else:
                    rec["props"][k] = data[k]
        if "comments" in data:
            rec["comments"] = data["comments"] if data["comments"] not in (None, "") else None
        if "managedby" in data:
            rec["managedby"] = data["managedby"]
        for up in data.get("user_properties_update") or []:
            if up.get("remove"):
                rec["user_properties"].pop(up["key"], None)
            else:
                rec["user_properties"][up["key"]] = up["value"]
        entry = nas.ds_entries([id_])[0]
        nas.on_event("pool.dataset.query", "changed", id_, entry)
        return entry

    def _descendants(name):
        out = []
        for c in nas.ds_children(name):
            out.extend(_descendants(c))
            out.append(c)
        return out

    def _snapshots_of(name):
        return [s for s in nas.snapshots if s.split("@")[0] == name]

    def _clones_of(snap):
        return [n for n, d in nas.datasets.items() if d.get("origin") == snap]

    def _cascade_zvol(name):
        """iSCSI fs-attachment delegate: drop DISK extents on the zvol, their mappings, orphaned targets."""
        path = zvol_path(name)
        extents = [
            e
            for e in T["extent"].values()
            # the delegate's query(path, enabled=True) (common/attachment/__init__.py get_query_filters): a
            # disabled extent on the zvol survives the delete, on every release from 11.3 to 26
            if e["type"] == "DISK" and e.get("enabled", True)
            and (e["path"] == path or e["path"].startswith(path + "@"))
        ]
        if not extents:
            return False
        orphan = set()
        for e in extents:
            for te in list(T["targetextent"].values()):
                if te["extent"] == e["id"]:
                    orphan.add(te["target"])
                    del T["targetextent"][te["id"]]
            del T["extent"][e["id"]]
        for te in T["targetextent"].values():
            orphan.discard(te["target"])
        if not p.core or p.name != "11.3":
            for tid in sorted(orphan):
                _target_delete(tid, True, False)
        return True

    @m("pool.dataset.delete", max_args=2, min_args=1, roles=("DATASET_DELETE",), mutating=True)
    def pool_dataset_delete(ctx, id_, options=None):
        opts = S.check_dict(
            ds_pyd,
            "pool_dataset_delete",
            {"recursive": opt("bool", False), "force": opt("bool", False)},
            options or {},
        )
        if id_ not in nas.datasets:
            raise InstanceNotFound("PoolDataset", id_)
        if "/" not in id_:
            raise CallError("Root dataset cannot be deleted", errno.EINVAL)
        rec = nas.datasets[id_]
        victims = _descendants(id_) + [id_]
        if not opts["recursive"]:
            if nas.ds_children(id_):
                raise CallError(
                    f"Failed to delete dataset: cannot destroy '{id_}': filesystem has children",
                    errno.ENOTEMPTY,
                )
            if _snapshots_of(id_):
                kind = "volume" if rec["type"] == "VOLUME" else "filesystem"
                raise CallError(
                    f"Failed to delete dataset: cannot destroy '{id_}': {kind} has children\n"
                    f"use '-r' to destroy the following datasets:\n" + "\n".join(_snapshots_of(id_)),
                    errno.ENOTEMPTY,
                )
        for v in victims:
            for s in _snapshots_of(v):
                clones = [c for c in _clones_of(s) if c not in victims]
                if clones:
                    raise CallError(
                        f"Failed to delete dataset: cannot destroy '{v}': filesystem has dependent "
                        f"clones\nuse '-R' to destroy the following datasets:\n" + "\n".join(clones),
                        errno.EBUSY,
                    )
        cascaded = False
        for v in victims:
            if nas.datasets[v]["type"] == "VOLUME":
                cascaded = _cascade_zvol(v) or cascaded
        for v in victims:
            for s in _snapshots_of(v):
                del nas.snapshots[s]
            del nas.datasets[v]
            nas.on_event("pool.dataset.query", "removed", v, None)
        if cascaded:
            nas.service_reload()
        return True

    # ------------------------------------------------------------- snapshots
    def _snap_entry(sid):
        s = nas.snapshots[sid]
        ds, _, sname = sid.partition("@")
        vs = s.get("volsize")
        props = {
            "creation": nas._prop({"$date": s["creation"] * 1000}, str(s["creation"]), None, "NONE"),
            "used": nas._prop(0, "0", "0B", "NONE"),
            "referenced": nas._prop(SPARSE_REF, str(SPARSE_REF), zfs_human(SPARSE_REF), "NONE"),
        }
        if vs is not None:
            props["volsize"] = nas._prop(vs, str(vs), zfs_human(vs), "LOCAL")
        vbs = s.get("volblocksize")
        if vbs is not None:  # a zvol snapshot has the zvol's volblocksize; the query returns every property
            props["volblocksize"] = nas._prop(vbs, str(vbs), zfs_human(vbs), "NONE")
        return {
            "id": sid,
            "name": sid,
            "pool": sid.split("/")[0],
            "type": "SNAPSHOT",
            "snapshot_name": sname,
            "dataset": ds,
            "createtxg": str(s["createtxg"]),
            "properties": props,
            "holds": {},
            "retention": None,
        }

    SPARSE_REF = 57344

    def snapshot_query(ctx, filters=None, options=None):
        return nas.query(
            [_snap_entry(s) for s in sorted(nas.snapshots)], filters, options, "pool_snapshot_query"
        )

    def snapshot_create(ctx, data):
        sch = "snapshot_create" if p.core else "pool_snapshot_create"
        data = S.check_dict(
            False,
            sch,
            {
                "dataset": req("str"),
                "name": opt("str", None),
                "naming_schema": opt("str", None),
                "recursive": opt("bool", False),
                "exclude": opt("list", list),
                "suspend_vms": opt("bool", False),
                "vmware_sync": opt("bool", False),
                "properties": opt("dict", dict),
            },
            data,
        )
        if not data["name"]:
            raise ValidationError(f"{sch}.name", "You must specify either name or naming schema")
        if data["dataset"] not in nas.datasets:
            raise ValidationError(f"{sch}.dataset", "This dataset does not exist", errno.ENOENT)
        sid = f"{data['dataset']}@{data['name']}"
        if sid in nas.snapshots:
            raise CallError(f"Failed to snapshot {sid}: dataset already exists", errno.EEXIST)
        d = nas.datasets[data["dataset"]]
        nas.snapshots[sid] = {
            "creation": int(time.time()),
            "createtxg": nas.next_txg(),
            "volsize": d.get("volsize"),
            "volblocksize": d.get("volblocksize"),
            "data": d.get("data"),
        }
        return _snap_entry(sid)

    def snapshot_clone(ctx, data):
        sch = "vmware_snapshot_clone" if False else ("snapshot_clone" if p.core else "pool_snapshot_clone")
        data = S.check_dict(
            False,
            sch,
            {"snapshot": req("str"), "dataset_dst": req("str"), "dataset_properties": opt("dict", dict)},
            data,
        )
        snap, dst = data["snapshot"], data["dataset_dst"]
        if snap not in nas.snapshots:
            raise ValidationError(f"{sch}.snapshot", "Snapshot does not exist", errno.ENOENT)
        if dst in nas.datasets:
            raise CallError(
                f"Failed to clone snapshot: cannot create '{dst}': dataset already exists", errno.EEXIST
            )
        parent = dst.rsplit("/", 1)[0]
        if "/" not in dst or parent not in nas.datasets:
            raise CallError(
                f"Failed to clone snapshot: cannot create '{dst}': parent does not exist", errno.ENOENT
            )
        if nas.datasets[parent]["type"] == "VOLUME":
            raise CallError(
                f"Failed to clone snapshot: cannot create '{dst}': parent may not be a ZFS volume"
            )
        src = nas.datasets.get(snap.split("@")[0])
        s = nas.snapshots[snap]
        rec = _mk_ds(dst, src["type"] if src else ("VOLUME" if s.get("volsize") else "FILESYSTEM"))
        rec["origin"] = snap
        rec["data"] = s.get("data")
        if rec["type"] == "VOLUME":
            rec["volsize"] = s["volsize"]
            rec["volblocksize"] = s["volblocksize"]
            rec["sparse"] = True
            rec["device_pending"] = nas.device_lag_default
        nas.on_event("pool.dataset.query", "added", dst, nas.ds_entries([dst])[0])
        return True

    def snapshot_delete(ctx, id_, options=None):
        if id_ not in nas.snapshots:
            raise InstanceNotFound("ZFSSnapshot" if p.core else "PoolSnapshot", id_)
        clones = _clones_of(id_)
        if clones:
            raise CallError(
                f"Failed to delete snapshot: cannot destroy '{id_}': snapshot has dependent clones\n"
                f"use '-R' to destroy the following datasets:\n" + "\n".join(clones),
                errno.EBUSY,
            )
        # extents on the snapshot itself (zvol/<ds>@snap) are attachments too
        path = zvol_path(id_)
        for e in [e for e in T["extent"].values() if e["path"] == path]:
            for te in [te for te in T["targetextent"].values() if te["extent"] == e["id"]]:
                del T["targetextent"][te["id"]]
            del T["extent"][e["id"]]
        del nas.snapshots[id_]
        return True

    @m("pool.dataset.promote", max_args=1, min_args=1, roles=("DATASET_WRITE",), mutating=True)
    def pool_dataset_promote(ctx, id_):
        """``zfs promote`` (public on 11.3 .. 26; MW-25.04 plugins/pool_/dataset.py ``promote``): the clone
        takes over its origin snapshot and every older snapshot of the origin dataset; the origin dataset
        becomes a clone of the moved snapshot; clones of moved snapshots follow the new names."""
        if id_ not in nas.datasets:
            raise CallError(f'Dataset "{id_}" does not exist.', errno.ENOENT)
        rec = nas.datasets[id_]
        origin = rec.get("origin")
        if not origin:
            raise CallError("Only cloned datasets can be promoted.", errno.EBADMSG)
        src, _, sname = origin.partition("@")
        src_rec = nas.datasets.get(src)
        if src_rec is None or origin not in nas.snapshots:
            raise CallError(f"Failed to promote dataset: cannot promote '{id_}': origin {origin} not found")
        cut = int(nas.snapshots[origin]["createtxg"])
        moved = [x for x in _snapshots_of(src) if int(nas.snapshots[x]["createtxg"]) <= cut]
        for x in moved:
            dst = f"{id_}@{x.partition('@')[2]}"
            if dst in nas.snapshots:
                raise CallError(
                    f"Failed to promote dataset: cannot promote '{id_}': snapshot name "
                    f"'{x.partition('@')[2]}' from origin conflicts with '{dst}' from target",
                    errno.EEXIST,
                )
        src_origin = src_rec.get("origin")
        renames = {x: f"{id_}@{x.partition('@')[2]}" for x in moved}
        for x, dst in renames.items():
            nas.snapshots[dst] = nas.snapshots.pop(x)
        for d in nas.datasets.values():
            if d.get("origin") in renames:
                d["origin"] = renames[d["origin"]]
        rec["origin"] = src_origin
        src_rec["origin"] = renames[origin]
        for e in T["extent"].values():   # extents on a moved snapshot follow its name
            if e["type"] == "DISK" and e["path"].startswith(zvol_path(src) + "@"):
                snap_name = zvol_name(e["path"])
                if snap_name in renames:
                    e["path"] = zvol_path(renames[snap_name])
        nas.on_event("pool.dataset.query", "changed", id_, nas.ds_entries([id_])[0])
        return None

    # pool.snapshot.* exists from 25.10 on (MW commit 5d42c5cfbd, first in TS-25.10-BETA.1); 11.3 .. 25.04 have
    # only zfs.snapshot.* (private in 25.10, still callable: kept here)
    for ns in ["zfs.snapshot"] + (["pool.snapshot"] if p.pool_snapshot else []):
        m(f"{ns}.query", max_args=2, roles=("SNAPSHOT_READ", "DATASET_READ"))(snapshot_query)
        m(f"{ns}.create", max_args=1, min_args=1, roles=("SNAPSHOT_WRITE", "DATASET_WRITE"), mutating=True)(
            snapshot_create
        )
        m(f"{ns}.clone", max_args=1, min_args=1, roles=("SNAPSHOT_WRITE", "DATASET_WRITE"), mutating=True)(
            snapshot_clone
        )
        m(f"{ns}.delete", max_args=2, min_args=1, roles=("SNAPSHOT_DELETE", "DATASET_DELETE"), mutating=True)(
            snapshot_delete
        )

    # ============================================================== iSCSI: global / sessions
    def _global_entry():
        g = nas.global_cfg
        e = {"id": 1, "basename": g["basename"], "isns_servers": list(g["isns_servers"])}
        if p.global_listen_port:
            e["listen_port"] = g["listen_port"]
        e["pool_avail_threshold"] = g["pool_avail_threshold"]
        e["alua"] = g["alua"]
        if p.global_iser:
            e["iser"] = g["iser"]
        if p.global_mode_fields:  # 26: api/v26_0_0/iscsi_global.py ISCSIGlobalEntry
            e["direct_config"] = None
            e["mode"] = 0
        return e

    ISCSI_R = ("SHARING_ISCSI_READ",)
    ISCSI_W = ("SHARING_ISCSI_WRITE",)

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

    # ============================================================== iSCSI: portals
    def _portal_entry(r):
        e = {"id": r["id"], "tag": r["tag"], "comment": r["comment"]}
        if p.portal_port_per_ip:
            e["listen"] = [{"ip": x["ip"], "port": x["port"]} for x in r["listen"]]
        else:
            e["listen"] = [{"ip": x["ip"], "port": nas.global_cfg["listen_port"]} for x in r["listen"]]
        if p.portal_discovery_fields:
            e["discovery_authmethod"] = r.get("discovery_authmethod", "NONE")
            e["discovery_authgroup"] = r.get("discovery_authgroup")
        return e

    listen_item = {"ip": req("str")}
    if p.portal_port_per_ip:
        listen_item["port"] = opt("int", 3260, range=(1, 65535))
    portal_spec = {"comment": opt("str", ""), "listen": req("list", items=listen_item, min_length=1)}
    if p.portal_discovery_fields:
        portal_spec["discovery_authmethod"] = opt("str", "NONE", enum=("NONE", "CHAP", "CHAP_MUTUAL"))
        portal_spec["discovery_authgroup"] = opt("int", None, null=True)

    def _portal_validate(sch, data, old_id=None):
        verrors = ValidationErrors()
        for i, li in enumerate(data["listen"]):
            ip = li["ip"]
            if ip not in nas.listen_ip_choices:
                verrors.add(f"{sch}.listen.{i}.ip", f"IP {ip} not configured on this system.")
                continue
            for r in T["portal"].values():
                if p.portal_port_per_ip:
                    # CORE (TN-13.0 plugins/iscsi.py portal validate): the (ip, port) pair, on .listen
                    port = li.get("port", 3260)
                    if r["id"] != old_id and any(x["ip"] == ip and x.get("port", 3260) == port
                                                 for x in r["listen"]):
                        verrors.add(f"{sch}.listen", f"{ip}:{port} already in use.")
                elif r["id"] != old_id and any(x["ip"] == ip for x in r["listen"]):
                    verrors.add(f"{sch}.listen.{i}.ip", f"{ip!r} IP is already in use.")
        if p.portal_discovery_fields and data.get("discovery_authmethod") in ("CHAP", "CHAP_MUTUAL"):
            g = data.get("discovery_authgroup")
            if g is None:
                verrors.add(
                    f"{sch}.discovery_authgroup",
                    "This field is required if discovery method is set to CHAP or CHAP Mutual.",
                )
            elif not any(a["tag"] == g for a in T["auth"].values()):
                verrors.add(f"{sch}.discovery_authgroup", "Authentication group not found", errno.ENOENT)
        verrors.check()

    @m("iscsi.portal.query", max_args=2, roles=ISCSI_R)
    def iscsi_portal_query(ctx, filters=None, options=None):
        return nas.query(
            [_portal_entry(r) for _, r in sorted(T["portal"].items())], filters, options, "iscsi_portal_query"
        )

    @m("iscsi.portal.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_portal_get_instance(ctx, id_, options=None):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        return _portal_entry(T["portal"][id_])

    @m("iscsi.portal.listen_ip_choices", max_args=0, roles=ISCSI_R)
    def iscsi_portal_listen_ip_choices(ctx):
        return {ip: ip for ip in nas.listen_ip_choices}

    @m("iscsi.portal.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_portal_create(ctx, data):
        data = S.check_dict(pyd, "iscsi_portal_create" if pyd else "iscsiportal_create", portal_spec, data)
        _portal_validate("iscsiportal_create", data)
        pid = nas._next_id("portal")
        r = {"id": pid, "tag": len(T["portal"]) + 1, **data}
        r["listen"] = [dict(x) for x in data["listen"]]
        T["portal"][pid] = r
        nas.service_reload()
        return _portal_entry(r)

    @m("iscsi.portal.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_portal_update(ctx, id_, data):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        data = S.check_dict(
            pyd, "iscsi_portal_update" if pyd else "iscsiportal_update", portal_spec, data, update=True
        )
        new = {**T["portal"][id_], **data}
        _portal_validate("iscsiportal_update", new, old_id=id_)
        T["portal"][id_] = new
        nas.service_reload()
        return _portal_entry(new)

    @m("iscsi.portal.delete", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_portal_delete(ctx, id_):
        if id_ not in T["portal"]:
            raise InstanceNotFound("iSCSIPortal", id_)
        del T["portal"][id_]
        for t in T["target"].values():  # portal delete removes the target groups that used it
            t["groups"] = [g for g in t["groups"] if g["portal"] != id_]
        for i, (_, r) in enumerate(sorted(T["portal"].items()), start=1):  # tags renumbered
            r["tag"] = i
        nas.service_reload()
        return True

    # ============================================================== iSCSI: initiators
    ini_spec = {"initiators": opt("list", list, items=S.Field("str")), "comment": opt("str", "")}
    if p.initiator_tag:
        ini_spec["tag"] = opt("int", 0)
    if p.initiator_auth_network:
        ini_spec["auth_network"] = opt("list", list, items=S.Field("str"))

    def _ini_entry(r):
        e = {"id": r["id"], "initiators": list(r["initiators"])}
        if p.initiator_tag:  # 11.3: plugins/iscsi.py iscsi_initiator_create Int('tag', default=0)
            e["tag"] = r["tag"]
        if p.initiator_auth_network:
            e["auth_network"] = list(r.get("auth_network", []))
        e["comment"] = r["comment"]
        return e

    def _ini_validate(sch, data):
        verrors = ValidationErrors()
        for i, net in enumerate(data.get("auth_network") or []):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                verrors.add(f"{sch}.auth_network.{i}", "Not a valid IP network")
        verrors.check()

    @m("iscsi.initiator.query", max_args=2, roles=ISCSI_R)
    def iscsi_initiator_query(ctx, filters=None, options=None):
        return nas.query(
            [_ini_entry(r) for _, r in sorted(T["initiator"].items())],
            filters,
            options,
            "iscsi_initiator_query",
        )

    @m("iscsi.initiator.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_initiator_get_instance(ctx, id_, options=None):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        return _ini_entry(T["initiator"][id_])

    @m("iscsi.initiator.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_create(ctx, data):
        data = S.check_dict(pyd, "iscsi_initiator_create", ini_spec, data)
        _ini_validate("iscsi_initiator_create", data)
        iid = nas._next_id("initiator")
        # stored newline-joined / split on whitespace when read back
        data["initiators"] = " ".join(data["initiators"]).split()
        if p.initiator_tag and not data.get("tag"):
            # 11.3 do_create: tag 0 => the first free tag counting from len(groups) + 1
            used = {r.get("tag") for r in T["initiator"].values()}
            t = len(T["initiator"]) + 1
            while t in used:
                t += 1
            data["tag"] = t
        T["initiator"][iid] = {"id": iid, **data}
        nas.service_reload()
        return _ini_entry(T["initiator"][iid])

    @m("iscsi.initiator.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_update(ctx, id_, data):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        data = S.check_dict(pyd, "iscsi_initiator_update", ini_spec, data, update=True)
        new = {**T["initiator"][id_], **data}
        _ini_validate("iscsi_initiator_update", new)
        new["initiators"] = " ".join(new["initiators"]).split()
        T["initiator"][id_] = new
        nas.service_reload()
        return _ini_entry(new)

    @m("iscsi.initiator.delete", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_initiator_delete(ctx, id_):
        if id_ not in T["initiator"]:
            raise InstanceNotFound("iSCSITargetAuthorizedInitiator", id_)
        del T["initiator"][id_]
        for t in T["target"].values():  # FK ondelete SET NULL
            for g in t["groups"]:
                if g["initiator"] == id_:
                    g["initiator"] = None
        nas.service_reload()
        return True

    # ============================================================== iSCSI: auth (CHAP)
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

    # CHAP rules as plugins/iscsi_/auth.py validate() (TN-11.3-U5 / TN-13.0-U6.1: plugins/iscsi.py) has them:
    # up to 24.10 only the length is checked; from 25.04 _validate_secret also refuses leading/trailing space
    # and '#' (INVALID_CHARACTERS), every error is reported, and the peer secret is titled "Peer Secret".
    def _validate_secret(verrors, sch, attr, title, secret):
        if len(secret) < 12 or len(secret) > 16:
            verrors.add(f"{sch}.{attr}", f"{title} must be between 12 and 16 characters.")
        if p.auth_secret_no_hash:
            if secret != secret.strip():
                verrors.add(f"{sch}.{attr}", f"{title} contains leading or trailing space.")
            if "#" in secret:
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
                verrors.add(f"{sch}.discovery_auth",
                            "Cannot specify CHAP_MUTUAL as only one such entry is permitted.")
        elif da == "CHAP_MUTUAL":
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

    # ============================================================== iSCSI: extents
    ext_spec = {
        "name": req("str", max_length=p.extent_name_max, min_length=1 if pyd else None),
        "type": opt("str", "DISK", enum=("DISK", "FILE")),
        "disk": opt("str", None, null=True),
        "serial": opt("str", None, null=True),
        "path": opt("str", None, null=True),
        "filesize": opt("int", 0),
        "blocksize": opt("int", 512, enum=(512, 1024, 2048, 4096)),
        "pblocksize": opt("bool", False),
        "avail_threshold": opt("int", None, null=True, range=(1, 99)),
        "comment": opt("str", ""),
        "insecure_tpc": opt("bool", True),
        "xen": opt("bool", False),
        "rpm": opt("str", "SSD", enum=("UNKNOWN", "SSD", "5400", "7200", "10000", "15000")),
        "ro": opt("bool", False),
        "enabled": opt("bool", True),
    }
    if p.extent_product_id:
        ext_spec["product_id"] = opt("str", None, null=True, max_length=16)

    def _ext_entry(r):
        e = {
            "id": r["id"],
            "name": r["name"],
            "type": r["type"],
            "disk": r["path"] if r["type"] == "DISK" else None,
            "serial": r["serial"],
            "path": r["path"],
            "filesize": str(r["filesize"]),
            "blocksize": r["blocksize"],
            "pblocksize": r["pblocksize"],
            "avail_threshold": r["avail_threshold"],
            "comment": r["comment"],
            "naa": r["naa"],
            "insecure_tpc": r["insecure_tpc"],
            "xen": r["xen"],
            "rpm": r["rpm"],
            "ro": r["ro"],
            "enabled": r["enabled"],
            "vendor": "TrueNAS",
        }
        if p.extent_product_id:
            e["product_id"] = r.get("product_id")
        if p.extent_dataset_fields:  # 26: read-only, null for DISK extents (plugins/iscsi_/extents.py extend)
            e["dataset"], e["relative_path"] = _file_dataset(r) if r["type"] == "FILE" else (None, None)
        if p.extent_locked:  # not on 11.3 (the lockable SharingService came in 12)
            e["locked"] = False
        return e

    def _file_dataset(r):
        path = r["path"] or ""
        best = None
        for name in nas.datasets:
            mp = "/mnt/" + name
            if (path == mp or path.startswith(mp + "/")) and (best is None or len(name) > len(best)):
                best = name
        if best is None:
            return None, None
        return best, path[len("/mnt/" + best):].lstrip("/")

    def _gen_serial():
        used = {e["serial"] for e in T["extent"].values()}
        while True:
            s = "%015x" % nas.rng.getrandbits(60)
            if s not in used:
                return s

    def _gen_naa():
        return (
            "0x6589cfc000000"
            + hashlib.sha256(str(uuid.UUID(int=nas.rng.getrandbits(128))).encode()).hexdigest()[0:19]
        )

    def _ext_validate(sch, data, old=None):
        verrors = ValidationErrors()
        name = data["name"]
        if '"' in name:
            verrors.add(f"{sch}.name", "Double quotes are not allowed")
        if old is None or name != old["name"]:
            if any(e["name"] == name for e in T["extent"].values()):
                verrors.add(f"{sch}.name", "Extent name must be unique")
        serial = data["serial"]
        if '"' in serial:
            verrors.add(f"{sch}.serial", "Double quotes are not allowed")
        if len(serial) > p.serial_max and p.serial_schema_max:
            verrors.add(f"{sch}.serial", f"Value greater than {p.serial_max} not allowed")  # 11.3 Str max_length
        elif len(serial) > p.serial_max:
            verrors.add(
                f"{sch}.serial",
                f"Maximum length of {p.serial_max} characters is allowed for extent serial"
                if p.core
                else f"Extent serial can not exceed {p.serial_max} characters",
            )
        if (old is None or serial != old["serial"]) and not p.core:   # SCALE extents.py only
            if any(e["serial"] == serial for e in T["extent"].values()):
                verrors.add(f"{sch}.serial", "Serial number must be unique")
        if data["type"] == "DISK":
            disk = data.get("disk")
            if not disk:
                verrors.add(f"{sch}.disk", "This field is required")
                raise verrors
            if not disk.startswith("zvol/"):
                verrors.add(f"{sch}.disk", 'Disk name must start with "zvol/"')
                raise verrors
            zname = zvol_name(disk)
            device = "/dev/" + disk
            if "@" in zname:
                exists = zname in nas.snapshots and nas.snapshots[zname].get("volsize") is not None
                pending = None
            else:
                ds = nas.datasets.get(zname)
                exists = ds is not None and ds["type"] == "VOLUME"
                pending = ds if exists and ds.get("device_pending", 0) > 0 and not p.core else None
            if " " in disk:
                exists = False  # the device node uses '+' for spaces: /dev/zvol/SSD+Pool/x
            if exists and pending is not None and old is None:
                pending["device_pending"] -= 1  # the zvol device node appears a little after the create
                exists = False
            if not exists:
                if p.zvol_missing_msg_11:  # 11.3: os.path.exists(f'/dev/{disk}')
                    verrors.add(f"{sch}.disk", f"ZVOL {disk} does not exist")
                elif p.core:
                    verrors.add(f"{sch}.disk", f"Zvol {zname} does not exist", errno.ENOENT)
                else:
                    verrors.add(f"{sch}.disk", f"Device {device!r} for volume {zname!r} does not exist")
            elif zname.split("/")[0] in ("boot-pool", "freenas-boot"):
                verrors.add(f"{sch}.disk", "Volumes in the boot pool are not allowed")
            if "@" in zname and not data["ro"] and not p.core:   # SCALE extents.py only
                verrors.add(f"{sch}.ro", "Must be set when disk is a ZFS Snapshot")
        else:
            path = data.get("path")
            if not path:
                verrors.add(f"{sch}.path", "This field is required")
                raise verrors
            if not any(
                path.startswith(f"/mnt/{n}/") for n, d in nas.datasets.items() if d["type"] == "FILESYSTEM"
            ):
                verrors.add(f"{sch}.path", "The path must reside within a pool mount point")
            if path.endswith("/"):
                verrors.add(f"{sch}.path", "You need to specify a filepath not a directory")
            size = data["filesize"]
            if size == 0:
                if path not in nas.files:
                    verrors.add(f"{sch}.path", "The file must exist if the extent size is set to auto (0)")
            elif float(size) % data["blocksize"]:
                verrors.add(
                    f"{sch}.filesize",
                    f"File size ({size}) must be a multiple of block size ({data['blocksize']})",
                )
        verrors.check()

    @m("iscsi.extent.query", max_args=2, roles=ISCSI_R)
    def iscsi_extent_query(ctx, filters=None, options=None):
        return nas.query(
            [_ext_entry(r) for _, r in sorted(T["extent"].items())], filters, options, "iscsi_extent_query"
        )

    @m("iscsi.extent.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_extent_get_instance(ctx, id_, options=None):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        return _ext_entry(T["extent"][id_])

    @m("iscsi.extent.disk_choices", max_args=1, roles=ISCSI_R)
    def iscsi_extent_disk_choices(ctx, exclude=None):
        used = {e["path"] for e in T["extent"].values() if e["type"] == "DISK"}
        out = {}
        for n, d in sorted(nas.datasets.items()):
            if d["type"] == "VOLUME" and zvol_path(n) not in used:
                out[zvol_path(n)] = f"{n} ({zfs_human(d['volsize']).replace('G', ' GiB')})"
        return out

    @m("iscsi.extent.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_extent_create(ctx, data):
        sch = "iscsi_extent_create"
        data = S.check_dict(pyd, sch, ext_spec, data)
        data["serial"] = data["serial"] or _gen_serial()
        _ext_validate(sch, data)
        eid = nas._next_id("extent")
        r = dict(data)
        r["id"] = eid
        r["naa"] = _gen_naa()
        if r["type"] == "DISK":
            r["path"] = r["disk"]
        else:
            nas.files.add(r["path"])
        r.pop("disk", None)
        T["extent"][eid] = r
        if p.name == "11.3":
            nas.service_reload()
        return _ext_entry(r)

    @m("iscsi.extent.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_extent_update(ctx, id_, data):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        data = S.check_dict(pyd, "iscsi_extent_update", ext_spec, data, update=True)
        old = _ext_entry(T["extent"][id_])
        new = {**old, **data}
        if new["type"] == "DISK" and "disk" not in data and "path" in data:
            new["disk"] = data["path"]
        new["serial"] = new["serial"] or _gen_serial()
        new["filesize"] = int(new["filesize"]) if str(new["filesize"]).isdigit() else 0
        _ext_validate("iscsi_extent_update", new, old)
        r = {k: v for k, v in new.items() if k not in ("disk", "vendor", "locked")}
        if r["type"] == "DISK":
            r["path"] = new["disk"]
        T["extent"][id_] = r
        nas.service_reload()
        nas.service_reload()  # update reloads twice on purpose (doc §8.3)
        return _ext_entry(r)

    @m("iscsi.extent.delete", max_args=3, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_extent_delete(ctx, id_, remove=False, force=False):
        if id_ not in T["extent"]:
            raise InstanceNotFound("iSCSITargetExtent", id_)
        tes = [te for te in T["targetextent"].values() if te["extent"] == id_]
        active = nas.active_sessions_for_targets([te["target"] for te in tes])
        if active and not force:
            raise CallError(
                f"Associated target(s) {','.join(active)} {'is' if len(active) == 1 else 'are'} in use."
            )
        data = T["extent"][id_]
        if remove and data["type"] == "FILE":
            nas.files.discard(data["path"])
        for te in tes:
            del T["targetextent"][te["id"]]
        del T["extent"][id_]
        nas.service_reload()
        return True

    # ============================================================== iSCSI: targets
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

    def _tgt_entry(r):
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

    def _tgt_validate(sch, data, old=None):
        verrors = ValidationErrors()
        name = data["name"]
        if not RE_TARGET_NAME.search(name):
            if pyd:
                verrors.add(
                    f"{sch}.name",
                    "Value error, Only lowercase alphanumeric charactersplus dot (.), "
                    "dash (-), and colon (:) are allowed.",
                )
            elif p.core:  # TN-11.3-U5 / TN-13.0-U6.1 plugins/iscsi.py __validate
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
            except ValueError:
                verrors.add(f"{sch}.auth_networks.{i}", "Not a valid IP network")
        ip = data.get("iscsi_parameters")
        if ip:
            for k, v in ip.items():
                if k != "QueuedCommands":
                    verrors.add(f"{sch}.iscsi_parameters.{k}", "Extra inputs are not permitted")
                elif v not in (None, 32, 128):
                    verrors.add(f"{sch}.iscsi_parameters.QueuedCommands", "Input should be 32 or 128")
        verrors.check()

    def _norm_alias(data):
        if data.get("alias") == "" and not p.alias_empty_is_value:
            data["alias"] = None  # SCALE stores "" as NULL

    @m("iscsi.target.query", max_args=2, roles=ISCSI_R)
    def iscsi_target_query(ctx, filters=None, options=None):
        return nas.query(
            [_tgt_entry(r) for _, r in sorted(T["target"].items())], filters, options, "iscsi_target_query"
        )

    @m("iscsi.target.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_target_get_instance(ctx, id_, options=None):
        if id_ not in T["target"]:
            raise InstanceNotFound("iSCSITarget", id_)
        return _tgt_entry(T["target"][id_])

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
        data = S.check_dict(pyd, "iscsi_target_create", tgt_spec, data)
        _norm_alias(data)
        _tgt_validate("iscsi_target_create", data)
        tid = nas._next_id("target")
        r = {"id": tid, **copy.deepcopy(data)}
        if p.target_rel_tgt_id:
            used = {t["rel_tgt_id"] for t in T["target"].values()}
            r["rel_tgt_id"] = min(i for i in range(1, len(used) + 2) if i not in used)
        T["target"][tid] = r
        nas.service_reload()
        return _tgt_entry(r)

    @m("iscsi.target.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_target_update(ctx, id_, data):
        if id_ not in T["target"]:
            raise InstanceNotFound("iSCSITarget", id_)
        data = S.check_dict(pyd, "iscsi_target_update", tgt_spec, data, update=True)
        old = T["target"][id_]
        new = {**copy.deepcopy(old), **copy.deepcopy(data)}
        _norm_alias(new)
        _tgt_validate("iscsi_target_create", new, old)  # update reports iscsi_target_create.*
        T["target"][id_] = new
        nas.service_reload()
        return _tgt_entry(new)

    def _target_delete(id_, force, delete_extents):
        t = T["target"][id_]
        if nas.active_sessions_for_targets([id_]) and not force:
            raise CallError(f"Target {t['name']} is in use.")
        ext_ids = []
        for te in [te for te in T["targetextent"].values() if te["target"] == id_]:
            ext_ids.append(te["extent"])
            del T["targetextent"][te["id"]]
        if delete_extents:
            for eid in ext_ids:
                T["extent"].pop(eid, None)
        del T["target"][id_]
        # the target disappears from the running config: its sessions go away with it
        iqn = nas.target_iqn(t["name"])
        nas.sessions[:] = [s for s in nas.sessions if s["target"] != iqn]

    if p.target_delete_extents:

        @m("iscsi.target.delete", max_args=3, min_args=1, roles=ISCSI_W, mutating=True)
        def iscsi_target_delete(ctx, id_, force=False, delete_extents=False):
            if id_ not in T["target"]:
                raise InstanceNotFound("iSCSITarget", id_)
            _target_delete(id_, force, delete_extents)
            nas.service_reload()
            return True
    else:

        @m("iscsi.target.delete", max_args=2, min_args=1, roles=ISCSI_W, mutating=True)
        def iscsi_target_delete_legacy(ctx, id_, force=False):
            if id_ not in T["target"]:
                raise InstanceNotFound("iSCSITarget", id_)
            _target_delete(id_, force, False)
            nas.service_reload()
            return True

    # ============================================================== iSCSI: target <-> extent
    te_spec = {"target": req("int"), "lunid": opt("int", None, null=True), "extent": req("int")}
    lun_map_size = 1024 if p.core else 16383

    def _te_validate(sch, data, old=None):
        old = old or {}
        verrors = ValidationErrors()
        if data["target"] not in T["target"]:
            verrors.add(f"{sch}.target", f"Target {data['target']} not found", errno.ENOENT)
        if data["extent"] not in T["extent"]:
            verrors.add(f"{sch}.extent", f"Extent {data['extent']} not found", errno.ENOENT)
        verrors.check()
        target = data["target"]
        if data.get("lunid") is None:
            lunids = sorted(te["lunid"] for te in T["targetextent"].values() if te["target"] == target)
            if not lunids:
                lunid = 0
            else:
                diff = sorted(set(range(lunids[-1] + 1)).difference(lunids))
                lunid = diff[0] if diff else max(lunids) + 1
            data["lunid"] = lunid
        lunid = data["lunid"]
        if lunid < 0 or lunid > lun_map_size - 1:
            verrors.add(
                f"{sch}.lunid", f"LUN ID must be a positive integer and lower than {lun_map_size - 1}"
            )
        if (old.get("lunid") != lunid or old.get("target") != target) and any(
            te["lunid"] == lunid and te["target"] == target and te["id"] != old.get("id")
            for te in T["targetextent"].values()
        ):
            verrors.add(f"{sch}.lunid", "LUN ID is already being used for this target.")
        if p.extent_single_target:
            if old.get("extent") != data["extent"] and any(
                te["extent"] == data["extent"] for te in T["targetextent"].values()
            ):
                verrors.add(f"{sch}.extent", "Extent is already in use.")
        else:
            if (old.get("extent") != data["extent"] or old.get("target") != target) and any(
                te["extent"] == data["extent"] and te["target"] == target and te["id"] != old.get("id")
                for te in T["targetextent"].values()
            ):
                verrors.add(f"{sch}.extent", "Extent is already in this target.")
        verrors.check()

    @m("iscsi.targetextent.query", max_args=2, roles=ISCSI_R)
    def iscsi_targetextent_query(ctx, filters=None, options=None):
        return nas.query(
            [dict(r) for _, r in sorted(T["targetextent"].items())],
            filters,
            options,
            "iscsi_targetextent_query",
        )

    @m("iscsi.targetextent.get_instance", max_args=2, min_args=1, roles=ISCSI_R)
    def iscsi_targetextent_get_instance(ctx, id_, options=None):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        return dict(T["targetextent"][id_])

    @m("iscsi.targetextent.create", max_args=1, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_create(ctx, data):
        data = S.check_dict(
            pyd, "iscsi_target_to_extent_create" if pyd else "iscsi_targetextent_create", te_spec, data
        )
        _te_validate("iscsi_targetextent_create", data)
        tid = nas._next_id("targetextent")
        r = {"id": tid, "target": data["target"], "lunid": data["lunid"], "extent": data["extent"]}
        T["targetextent"][tid] = r
        nas.service_reload()
        return dict(r)

    @m("iscsi.targetextent.update", max_args=2, min_args=2, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_update(ctx, id_, data):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        spec = dict(te_spec)
        spec["lunid"] = opt("int", None)
        data = S.check_dict(
            pyd,
            "iscsi_target_to_extent_update" if pyd else "iscsi_targetextent_update",
            spec,
            data,
            update=True,
        )
        old = T["targetextent"][id_]
        new = {**old, **data}
        _te_validate("iscsi_targetextent_update", new, old)
        T["targetextent"][id_] = new
        nas.service_reload()
        return dict(new)

    @m("iscsi.targetextent.delete", max_args=2, min_args=1, roles=ISCSI_W, mutating=True)
    def iscsi_targetextent_delete(ctx, id_, force=False):
        if id_ not in T["targetextent"]:
            raise InstanceNotFound("iSCSITargetToExtent", id_)
        te = T["targetextent"][id_]
        active = nas.active_sessions_for_targets([te["target"]])
        if active and not force:
            raise CallError(f"Associated target {active[0]} is in use.")
        del T["targetextent"][id_]
        nas.service_reload()
        return True

    # ============================================================== services
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
                raise ValidationError(
                    "service_control.verb", "Input should be 'START', 'STOP', 'RESTART' or 'RELOAD'"
                )
            opts = S.check_dict(pyd, "service_control.options", svc_opts, options or {})
            _check_svc(name)
            return JobRequest(
                "service.control", [verb, name, options or {}], run=lambda: verbs[verb.lower()](name, opts)
            )
