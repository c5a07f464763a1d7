"""The simulated NAS's state: datasets, snapshots, the iSCSI tables, services, sessions, keys and jobs, the
method registry and the synchronous call path (authorisation, arity, id type, secret redaction).

The methods themselves are in ``methods/`` (one module per API namespace) and are registered on a
:class:`NasState` by ``nas.Nas``. They are plain synchronous functions running on the simulator's event-loop
thread while holding ``lock``; the protocol layer (``server.py``) only does framing, auth gating, limits and
knobs.
"""

from __future__ import annotations

import collections
import copy
import errno
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema as S
from .apiversions import adapt_args, adapt_result
from .errors import (
    ESERVICESTARTFAILURE,
    CallError,
    MethodNotFound,
    NotAuthorized,
    ValidationErrors,
)
from .filters import filter_list
from .profiles import Profile

REDACTED = "********"
POOL_SIZE = 4 * 1024**4  # 4 TiB pool
SPARSE_USED = 57344
KNOWN_SERVICES = ["cifs", "ftp", "iscsitarget", "nfs", "snmp", "ssh", "ups", "smartd"]
SERVICE_IDS = {
    "cifs": 4,
    "ftp": 6,
    "iscsitarget": 7,
    "nfs": 9,
    "snmp": 10,
    "ssh": 11,
    "ups": 14,
    "smartd": 18,
}
VOLBLOCKSIZES = {
    "512": 512,
    "512B": 512,
    "1K": 1024,
    "2K": 2048,
    "4K": 4096,
    "8K": 8192,
    "16K": 16384,
    "32K": 32768,
    "64K": 65536,
    "128K": 131072,
}
RE_TARGET_NAME = re.compile(r"^[-a-z0-9\.:]+$")
RE_DS_COMPONENT = re.compile(r"^[A-Za-z0-9_.: -]+$")
FS_ONLY_FIELDS = ("aclmode", "acltype", "atime", "casesensitivity", "quota", "refquota", "recordsize")
SESSION_TEMPLATE = {
    "initiator_addr": "192.0.2.100",
    "initiator_alias": None,
    "target_alias": None,
    "header_digest": None,
    "data_digest": None,
    "max_data_segment_length": 1048576,
    "max_receive_data_segment_length": 1048576,
    "max_xmit_data_segment_length": 262144,
    "max_burst_length": 1048576,
    "first_burst_length": 65536,
    "immediate_data": True,
    "iser": False,
    "offload": False,
}

# --------------------------------------------------------------------------------------------- roles
ROLE_INCLUDES = {
    "FULL_ADMIN": {"*"},
    "READONLY_ADMIN": {"SHARING_ISCSI_READ", "DATASET_READ", "POOL_READ", "SERVICE_READ"},
    "SHARING_ADMIN": {"SHARING_ISCSI_WRITE", "DATASET_WRITE", "SERVICE_READ", "POOL_READ", "DATASET_READ"},
    "SHARING_ISCSI_WRITE": {
        "SHARING_ISCSI_READ",
        "SHARING_ISCSI_AUTH_WRITE",
        "SHARING_ISCSI_EXTENT_WRITE",
        "SHARING_ISCSI_TARGET_WRITE",
        "SHARING_ISCSI_PORTAL_WRITE",
        "SHARING_ISCSI_INITIATOR_WRITE",
        "SHARING_ISCSI_TARGETEXTENT_WRITE",
        "SHARING_ISCSI_GLOBAL_WRITE",
    },
    "DATASET_WRITE": {"DATASET_READ"},
    "DATASET_DELETE": {"DATASET_READ"},
    "SERVICE_WRITE": {"SERVICE_READ"},
}


def expand_roles(roles) -> set:
    out, todo = set(), list(roles)
    while todo:
        r = todo.pop()
        if r in out:
            continue
        out.add(r)
        todo.extend(ROLE_INCLUDES.get(r, ()))
    return out


# ------------------------------------------------------------------------------------------ helpers
def zfs_human(n: int) -> str:
    if n < 1024:
        return f"{n}B"
    units = "KMGTPE"
    v, u = float(n), -1
    while v >= 1024 and u < len(units) - 1:
        v /= 1024
        u += 1
    if v == int(v):
        return f"{int(v)}{units[u]}"
    if v < 10:
        return f"{v:.2f}{units[u]}"
    if v < 100:
        return f"{v:.1f}{units[u]}"
    return f"{v:.0f}{units[u]}"


def dataset_record(name: str, type_: str, **extra) -> dict:
    """A fresh dataset as the simulator stores it (``extra``: volsize, volblocksize, sparse, ...)."""
    return {"name": name, "type": type_, "props": {}, "creation": int(time.time()), "user_properties": {},
            "origin": None, "device_pending": 0, "comments": None, "managedby": None, **extra}


def zvol_path(name: str) -> str:
    return "zvol/" + name.replace(" ", "+")


def zvol_name(path: str) -> str:
    return path[len("zvol/") :].replace("+", " ") if path.startswith("zvol/") else path


def sanitize_extent(name: str) -> str:
    return name.replace(".", "_").replace("/", "-")


@dataclass
class Session:
    authenticated: bool = False
    username: str | None = None
    roles: frozenset | None = None  # None => full admin
    api_key_id: int | None = None
    pending_otp_user: str | None = None

    def has(self, role: str) -> bool:
        if not self.authenticated:
            return False
        if self.roles is None:
            return True
        exp = expand_roles(self.roles)
        return "*" in exp or role in exp

    @property
    def full_admin(self) -> bool:
        return self.authenticated and (self.roles is None or "FULL_ADMIN" in self.roles)


@dataclass
class Ctx:
    session: Session
    secure_transport: bool = True
    peer_ip: str = "127.0.0.1"
    conn: Any = None
    in_bulk: bool = False
    api_version: str | None = None  # None = current; "v24.10" for /websocket on 25.04+ (see apiversions.py)
    work: Any = None  # what the last call read, for the cost model (pool.dataset.query: datasets, properties)


@dataclass
class MethodSpec:
    func: Callable
    no_auth: bool = False
    roles: tuple = ()  # any of these roles is enough
    job: bool = False
    mutating: bool = False
    secret_fields: tuple = ()  # result fields redacted without SHARING_ISCSI_AUTH_WRITE
    min_args: int = 0
    max_args: int = 99


@dataclass
class JobRequest:
    """Returned by job methods; the server creates the job, answers with its id and runs ``run``."""

    method: str
    arguments: list
    run: Callable[[], Any]
    description: str | None = None
    bulk: tuple | None = None  # (method, params_list) for core.bulk: the server runs the inner calls


class Tables:
    """``nas.tables`` looked up at each access (``reset``/``load`` replace the dict): ``T["extent"]``."""

    def __init__(self, nas: NasState):
        self._nas = nas

    def __getitem__(self, k: str) -> dict[int, dict]:
        return self._nas.tables[k]


# ------------------------------------------------------------------------------------------------ NAS
class NasState:
    def __init__(self, profile: Profile, seed: int = 1234):
        self.p = profile
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.listen_ip_choices = ["0.0.0.0", "::", "127.0.0.1", "192.0.2.10"]
        self.device_lag_default = 0
        #: The last 256 ``pool.dataset.query`` calls as received, with what each read (datasets, properties)
        self.dataset_reads: collections.deque = collections.deque(maxlen=256)
        self.reload_count = 0
        self.restart_count = 0
        self.on_event: Callable[[str, str, Any, dict | None], None] = lambda *a: None
        self.wants_event: Callable[[str], bool] = lambda collection: True
        self.jobs: dict[int, dict] = {}
        self.next_job_id = 1
        self.methods: dict[str, MethodSpec] = {}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self):
        now = int(time.time())
        self.datasets: dict[str, dict] = {
            "tank": {
                "name": "tank",
                "type": "FILESYSTEM",
                "props": {"compression": "LZ4"},
                "creation": now,
                "user_properties": {},
                "origin": None,
                "device_pending": 0,
            },
        }
        self.snapshots: dict[str, dict] = {}
        self.tables: dict[str, dict[int, dict]] = {
            k: {} for k in ("extent", "target", "targetextent", "portal", "initiator", "auth")
        }
        self.global_cfg = {
            "id": 1,
            "basename": "iqn.2005-10.org.freenas.ctl",
            "isns_servers": [],
            "listen_port": 3260,
            "pool_avail_threshold": None,
            "alua": False,
            "iser": False,
        }
        self.services = {
            name: {
                "id": SERVICE_IDS[name],
                "service": name,
                "enable": name == "smartd",
                "state": "STOPPED",
                "pids": [],
            }
            for name in KNOWN_SERVICES
        }
        self.sessions: list[dict] = []
        self.api_keys: dict[int, dict] = {}
        self.users: dict[str, str] = {}
        self.otp: dict[str, str] = {}
        self.files: set[str] = set()
        self._ds_cache = None

    def dump(self) -> dict:
        with self.lock:
            return copy.deepcopy(
                {
                    "format": 1,
                    "profile": self.p.name,
                    "datasets": self.datasets,
                    "snapshots": self.snapshots,
                    "tables": {k: [v for _, v in sorted(t.items())] for k, t in self.tables.items()},
                    "global": self.global_cfg,
                    "services": self.services,
                    "sessions": self.sessions,
                    "api_keys": [v for _, v in sorted(self.api_keys.items())],
                    "users": self.users,
                    "otp": self.otp,
                    "files": sorted(self.files),
                }
            )

    def load(self, d: dict):
        with self.lock:
            self.reset()
            d = copy.deepcopy(d)
            self.datasets = d.get("datasets", self.datasets)
            self.snapshots = d.get("snapshots", {})
            for k, rows in d.get("tables", {}).items():
                self.tables[k] = {r["id"]: r for r in rows}
            self.global_cfg.update(d.get("global", {}))
            for name, svc in d.get("services", {}).items():
                self.services[name] = svc
            self.sessions = d.get("sessions", [])
            self.api_keys = {k["id"]: k for k in d.get("api_keys", [])}
            self.users.update(d.get("users", {}))
            self.otp.update(d.get("otp", {}))
            self.files = set(d.get("files", []))

    def next_txg(self) -> int:
        """A snapshot's createtxg: increasing for the life of the pool (deletes don't reuse one)."""
        return max([int(x.get("createtxg") or 0) for x in self.snapshots.values()] + [999]) + 1

    def _next_id(self, table: str) -> int:
        # SQLite rowid semantics: max(id)+1, so the highest id is handed out again after its row is deleted.
        t = self.tables[table]
        return (max(t) + 1) if t else 1

    # ------------------------------------------------------------------ registry
    def method(self, name, **kw):
        def deco(fn):
            self.methods[name] = MethodSpec(fn, **kw)
            return fn

        return deco

    def has_method(self, name: str) -> bool:
        return name in self.methods

    def known_services(self) -> set:
        return {m.rpartition(".")[0] for m in self.methods}

    def authorize(self, ctx: Ctx, method: str):
        spec = self.methods.get(method)
        if spec is None:
            raise MethodNotFound(method)
        if not self.p.roles or spec.no_auth or not spec.roles:
            return spec
        if not any(ctx.session.has(r) for r in spec.roles):
            raise NotAuthorized()
        return spec

    def call(self, ctx: Ctx, method: str, params: list):
        """Run a (non-job) method synchronously. Raises SimError subclasses."""
        spec = self.authorize(ctx, method)
        params = adapt_args(ctx.api_version, method, params)
        S.check_arity(self.p.pydantic, method, params, spec.max_args, spec.min_args)
        self._check_id_arg(method, params)
        with self.lock:
            result = spec.func(ctx, *params)
        return adapt_result(ctx.api_version, method, self.dump_result(ctx, spec, result))

    def _check_id_arg(self, method: str, params: list):
        svc, _, verb = method.rpartition(".")
        if verb not in ("get_instance", "update", "delete", "promote") or not params or svc == "iscsi.global":
            return
        id_ = params[0]
        if svc.startswith(("pool.dataset", "pool.snapshot", "zfs.snapshot")):
            ok, kind = isinstance(id_, str), "str"
        elif svc == "service":
            ok, kind = isinstance(id_, (str, int)) and not isinstance(id_, bool), "str"
        else:
            ok, kind = isinstance(id_, int) and not isinstance(id_, bool), "int"
        if not ok:
            schema = method.replace(".", "_")
            if self.p.pydantic:
                msg = "Input should be a valid integer" if kind == "int" else "Input should be a valid string"
            else:
                msg = "Not an integer" if kind == "int" else "Not a string"
            raise ValidationErrors([(f"{schema}.id", msg, errno.EINVAL)])

    def dump_result(self, ctx: Ctx, spec: MethodSpec, result):
        if (
            spec.secret_fields
            and self.p.roles
            and not (ctx.session.full_admin or ctx.session.has("SHARING_ISCSI_AUTH_WRITE"))
        ):

            def red(o):
                if isinstance(o, dict):
                    o = dict(o)
                    for f in spec.secret_fields:
                        if f in o:
                            o[f] = REDACTED
                return o

            result = [red(r) for r in result] if isinstance(result, list) else red(result)
        return copy.deepcopy(result)

    def query(self, rows, filters, options, schema):
        return filter_list(rows, filters, options, schema=schema, strict=self.p.pydantic)

    # ------------------------------------------------------------------ service helpers
    def scst_config_error(self) -> str | None:
        if self.p.core:
            return None
        seen = {}
        for e in self.tables["extent"].values():
            if not e["enabled"]:
                continue
            s = sanitize_extent(e["name"])
            if s in seen:
                return f"duplicate SCST device {s!r} (extents {seen[s]!r} and {e['name']!r})"
            seen[s] = e["name"]
        return None

    def service_reload(self):
        """`_service_change('iscsitarget', 'reload')`: only does something when RUNNING."""
        svc = self.services["iscsitarget"]
        if svc["state"] != "RUNNING":
            return
        self.reload_count += 1
        if self.scst_config_error():
            raise CallError("The iscsitarget service failed to start", ESERVICESTARTFAILURE)

    def target_iqn(self, name: str) -> str:
        if self.p.core and name.startswith(("iqn.", "eui.", "naa.")):
            return name
        return f"{self.global_cfg['basename']}:{name}"

    def active_sessions_for_targets(self, target_ids) -> list[str]:
        iqns = [
            self.target_iqn(self.tables["target"][t]["name"])
            for t in target_ids
            if t in self.tables["target"]
        ]
        out = []
        for s in self.sessions:
            if s["target"] in iqns and s["target"] not in out:
                out.append(s["target"])
        return out

    def add_session(self, target: str, initiator: str) -> dict:
        with self.lock:
            iqn = (
                target
                if ":" in target and target.startswith(("iqn.", "eui.", "naa."))
                else self.target_iqn(target)
            )
            s = {"initiator": initiator, "target": iqn, **copy.deepcopy(SESSION_TEMPLATE)}
            self.sessions.append(s)
            return s

    def drop_sessions(self):
        self.sessions.clear()

    # ------------------------------------------------------------------ datasets
    @staticmethod
    def _own_used(d) -> int:
        if d["type"] == "VOLUME":
            return SPARSE_USED if (d.get("origin") or d.get("sparse")) else d["volsize"]
        return 98304

    def ds_used(self, name) -> int:
        c = self._ds_cache
        if c is not None and name in c["used"]:
            return c["used"][name]
        d = self.datasets[name]
        if d["type"] == "VOLUME":
            used = self._own_used(d)
        else:
            prefix = name + "/"
            used = self._own_used(d) + sum(
                self._own_used(o) for n, o in self.datasets.items() if n.startswith(prefix)
            )
        if c is not None:
            c["used"][name] = used
        return used

    def ds_children(self, name) -> list[str]:
        d = self.datasets.get(name)
        if d is not None and d["type"] == "VOLUME":
            return []  # a zvol cannot have child datasets
        c = self._ds_cache
        if c is not None:
            if c["children"] is None:
                idx: dict[str, list[str]] = {}
                for n in sorted(self.datasets):
                    if "/" in n:
                        idx.setdefault(n.rsplit("/", 1)[0], []).append(n)
                c["children"] = idx
            return c["children"].get(name, [])
        return sorted(n for n in self.datasets if "/" in n and n.rsplit("/", 1)[0] == name)

    def ds_available(self) -> int:
        c = self._ds_cache
        if c is not None and c["avail"] is not None:
            return c["avail"]
        total = 0
        for d in self.datasets.values():
            if d["type"] != "VOLUME":
                total += 98304
            elif d.get("origin") or d.get("sparse"):
                total += SPARSE_USED
            else:
                total += d["volsize"]
        avail = max(POOL_SIZE - total, 0)
        if c is not None:
            c["avail"] = avail
        return avail

    def ds_entries(self, names, _fn=None, children: bool = True, wanted: set | None = None):
        """Entries for ``names`` with per-call caches (children index, used/available, built entries).

        ``children=False`` leaves ``children`` empty; ``wanted`` (top-level keys) skips building the rest.
        """
        if self._ds_cache is not None:
            return _fn() if _fn else [self.ds_entry(n) for n in names]
        self._ds_cache = {
            "children": None,
            "used": {},
            "avail": None,
            "entries": {},
            "children_on": children,
            "wanted": wanted,
        }
        try:
            return _fn() if _fn else [self.ds_entry(n) for n in names]
        finally:
            self._ds_cache = None

    def _prop(self, parsed, rawvalue=None, value=None, source="LOCAL"):
        d = {
            "parsed": parsed,
            "rawvalue": rawvalue if rawvalue is not None else (None if parsed is None else str(parsed)),
            "value": value if value is not None else (None if parsed is None else str(parsed)),
            "source": source,
        }
        if not self.p.core:
            d["source_info"] = None
        return d

    def _inherited(self, name, key, default):
        cur = name
        while True:
            d = self.datasets.get(cur)
            if d and key in d["props"]:
                return d["props"][key], ("LOCAL" if cur == name else "INHERITED")
            if "/" not in cur:
                return default, "DEFAULT"
            cur = cur.rsplit("/", 1)[0]

    def ds_entry(self, name: str) -> dict:
        c = self._ds_cache
        if c is not None and name in c["entries"]:
            return c["entries"][name]
        e = self._ds_entry(name)
        if c is not None:
            c["entries"][name] = e
        return e

    def _ds_entry(self, name: str) -> dict:
        d = self.datasets[name]
        vol = d["type"] == "VOLUME"
        c = self._ds_cache or {}
        wanted = c.get("wanted")
        P = self._prop

        def inh(key, default, lower=True):
            v, src = self._inherited(name, key, default)
            return P(v, v.lower() if lower else str(v), v if lower else str(v), src)

        def refres():
            if not vol:
                return P(0, "0", "0B", "DEFAULT")
            r = 0 if (d.get("sparse") or d.get("origin")) else d["volsize"]
            return P(r, str(r), zfs_human(r) if r else "0B", "LOCAL" if r else "NONE")

        def sized(n):
            return P(n, str(n), zfs_human(n), "NONE")

        origin = d.get("origin") or ""
        builders = [
            ("id", lambda: name),
            ("name", lambda: name),
            ("type", lambda: d["type"]),
            ("pool", lambda: name.split("/")[0]),
            ("encrypted", lambda: False),
            ("encryption_root", lambda: None),
            ("key_loaded", lambda: False),
            ("locked", lambda: False),
            (
                "children",
                lambda: (
                    [self.ds_entry(ch) for ch in self.ds_children(name)] if c.get("children_on", True) else []
                ),
            ),
        ]
        if self.p.user_properties:
            builders.append(
                ("user_properties", lambda: {k: P(v, v, v) for k, v in sorted(d["user_properties"].items())})
            )
        builders += [
            ("mountpoint", lambda: None if vol else f"/mnt/{name}"),
            ("compression", lambda: inh("compression", "LZ4")),
            ("sync", lambda: inh("sync", "STANDARD")),
            ("deduplication", lambda: inh("deduplication", "OFF")),
            ("readonly", lambda: inh("readonly", "OFF")),
            ("checksum", lambda: inh("checksum", "ON")),
            ("copies", lambda: inh("copies", 1, lower=False)),
        ]
        if vol:
            vs, vbs = d["volsize"], d["volblocksize"]
            builders += [
                ("volsize", lambda: P(vs, str(vs), zfs_human(vs), "LOCAL")),
                ("volblocksize", lambda: P(vbs, str(vbs), zfs_human(vbs), "NONE")),
                ("snapdev", lambda: inh("snapdev", "HIDDEN")),
            ]
        created = d.get("creation") or 0   # datasets loaded from a state without it (golden cases)
        builders += [
            ("refreservation", refres),
            ("reservation", lambda: P(0, "0", "0B", "DEFAULT")),
            ("used", lambda: sized(self.ds_used(name))),
            ("available", lambda: sized(self.ds_available())),
            ("origin", lambda: P(origin, origin, origin, "NONE")),
            (
                "creation",
                lambda: P(
                    {"$date": created * 1000},
                    str(created),
                    time.strftime("%a %b %d %H:%M %Y", time.gmtime(created)),
                    "NONE",
                ),
            ),
            ("key_format", lambda: P(None, "none", None, "DEFAULT")),
            ("encryption_algorithm", lambda: P(None, "off", None, "DEFAULT")),
        ]
        if d.get("comments") is not None:
            cm = d["comments"]
            builders.append(("comments", lambda: P(cm, cm, cm, "LOCAL")))
        if d.get("managedby") is not None:
            mb = d["managedby"]
            builders.append(("managedby", lambda: P(mb, mb, mb, "LOCAL")))
        return {k: fn() for k, fn in builders if wanted is None or k in wanted}

    # ------------------------------------------------------------------ jobs
    def new_job(self, method: str, arguments: list, ctx: Ctx, description=None) -> dict:
        jid = self.next_job_id
        self.next_job_id += 1
        job = {
            "id": jid,
            "method": method,
            "arguments": copy.deepcopy(arguments),
            "transient": False,
            "description": description,
            "abortable": False,
            "logs_path": None,
            "logs_excerpt": None,
            "progress": {"percent": 0, "description": "", "extra": None},
            "result": None,
            "result_encoding_error": None,
            "error": None,
            "exception": None,
            "exc_info": None,
            "state": "WAITING",
            "time_started": {"$date": int(time.time() * 1000)},
            "time_finished": None,
            "credentials": {
                "type": "LOGIN_PASSWORD" if ctx.session.api_key_id is None else "API_KEY",
                "data": {"username": ctx.session.username},
            },
        }
        if self.p.legacy_jobs_option:
            job["message_ids"] = []
        self.jobs[jid] = job
        if self.wants_event("core.get_jobs"):
            self.on_event("core.get_jobs", "added", jid, copy.deepcopy(job))
        return job

    def job_update(self, job: dict, **changes):
        job.update(changes)
        if self.wants_event("core.get_jobs"):
            self.on_event("core.get_jobs", "changed", job["id"], copy.deepcopy(job))
