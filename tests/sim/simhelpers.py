"""Helpers: a tiny sync websocket client for both protocols and simulator fixtures."""

from __future__ import annotations

import itertools
import json

import pytest
from websockets.sync.client import connect

from truenas_sim import Simulator


class RpcFailure(Exception):
    def __init__(self, error: dict):
        super().__init__(json.dumps(error)[:500])
        self.error = error

    # convenience accessors working for both protocols
    @property
    def data(self) -> dict:
        return self.error.get("data") or self.error

    @property
    def errno(self):
        return self.data.get("error")

    @property
    def reason(self) -> str:
        return self.data.get("reason") or ""

    @property
    def extra(self):
        return self.data.get("extra")

    def messages(self) -> list[str]:
        return [e[1] for e in (self.extra or [])]

    def attrs(self) -> list[str]:
        return [e[0] for e in (self.extra or [])]


class Client:
    def __init__(self, url: str, kind: str | None = None, handshake: bool = True, **kw):
        self.kind = kind or ("legacy" if url.endswith("/websocket") else "jsonrpc")
        self.ws = connect(
            url, max_size=None, open_timeout=5, close_timeout=2, compression=None, legacy=True, **kw
        )
        self.ids = itertools.count(1)
        self.buffer: dict = {}
        self.events: list = []
        if self.kind == "legacy" and handshake:
            self.send({"msg": "connect", "version": "1", "support": ["1"]})
            assert self.recv()["msg"] == "connected"

    def close(self):
        self.ws.close()

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv(self, timeout: float = 5):
        return json.loads(self.ws.recv(timeout=timeout))

    def envelope(self, method, params, id_):
        if self.kind == "jsonrpc":
            return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
        return {"msg": "method", "id": str(id_), "method": method, "params": params}

    def submit(self, method, *params):
        id_ = next(self.ids)
        if self.kind == "legacy":
            id_ = f"u{id_}"
        self.send(self.envelope(method, list(params), id_))
        return id_

    def wait(self, id_, timeout: float = 5) -> dict:
        while id_ not in self.buffer:
            msg = self.recv(timeout)
            if msg.get("id") is not None and ("result" in msg or "error" in msg):
                self.buffer[msg["id"]] = msg
            else:
                self.events.append(msg)
        return self.buffer.pop(id_)

    def request(self, method, *params) -> dict:
        return self.wait(self.submit(method, *params))

    def call(self, method, *params):
        resp = self.request(method, *params)
        err = resp.get("error")
        if err is not None and (self.kind == "jsonrpc" or err.get("error") is not None):
            raise RpcFailure(err)
        return resp.get("result")

    def login(self, key):
        assert self.call("auth.login_with_api_key", key) is True
        return self

    def wait_job(self, job_id, timeout: float = 5):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("core.get_jobs", [["id", "=", job_id]], {"get": True})
            if job["state"] in ("SUCCESS", "FAILED", "ABORTED"):
                return job
            time.sleep(0.01)
        raise TimeoutError(job_id)


@pytest.fixture
def sim_factory():
    sims = []

    def make(profile="25.04", **kw):
        s = Simulator(profile=profile, **kw).start()
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.stop()


@pytest.fixture
def connect_factory():
    clients = []

    def make(sim, kind=None, login=True, path=None, **kw):
        url = (
            sim.url_for(path)
            if path
            else (
                sim.url if kind is None else sim.url_for("/websocket" if kind == "legacy" else "/api/current")
            )
        )
        c = Client(url, **kw)
        clients.append(c)
        if login:
            c.login(sim.api_key)
        return c

    yield make
    for c in clients:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def sim(sim_factory):
    return sim_factory("25.04")


@pytest.fixture
def api(sim, connect_factory):
    return connect_factory(sim)


PROFILES = ["13", "24.10", "25.04", "25.10"]


@pytest.fixture(params=PROFILES)
def any_api(request, sim_factory, connect_factory):
    s = sim_factory(request.param)
    return s, connect_factory(s)


GiB = 1024**3


def mk_zvol(api, name="tank/vols/m1", volsize=GiB, **kw):
    try:
        api.call("pool.dataset.query", [["id", "=", name.rsplit("/", 1)[0]]], {"get": True})
    except RpcFailure:
        api.call("pool.dataset.create", {"name": name.rsplit("/", 1)[0]})
    return api.call(
        "pool.dataset.create",
        {"name": name, "type": "VOLUME", "volsize": volsize, "volblocksize": "16K", **kw},
    )


def mk_stack(api, name="m1", zvol=None, portal=True):
    """zvol + extent + portal + target + mapping; returns dict of ids."""
    zvol = zvol or f"tank/vols/{name}"
    mk_zvol(api, zvol)
    ext = api.call("iscsi.extent.create", {"name": name, "type": "DISK", "disk": f"zvol/{zvol}"})
    groups = []
    if portal:
        portals = api.call("iscsi.portal.query")
        pid = (
            portals[0]["id"]
            if portals
            else api.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}]})["id"]
        )
        groups = [{"portal": pid}]
    tgt = api.call("iscsi.target.create", {"name": name, "groups": groups})
    te = api.call("iscsi.targetextent.create", {"target": tgt["id"], "extent": ext["id"]})
    return {"extent": ext["id"], "target": tgt["id"], "targetextent": te["id"], "zvol": zvol}
