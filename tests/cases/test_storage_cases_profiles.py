"""The golden storage cases on every simulator profile (11.3, 13, 24.10, 25.04, 25.10, 26).

Each case's ``actual.json`` is loaded into a simulator of the profile (as that release stores it: zvol marks
in user properties on SCALE, in the ``comments`` property on CORE/FreeNAS, which have no user properties),
read back through netprov's real client over the websocket, and planned: the state netprov reads must be
the case's ``actual.json`` and the plan must be the case's golden ``plan.json``. A case whose zvols carry
SCALE user properties is a SCALE NAS and runs on the SCALE profiles only; a case with no user properties
runs everywhere. One simulator per profile serves every case (its state is replaced per case).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.inventory_load import parse_inventory
from netprov.core.storage import desired_storage, secret_digest
from netprov.core.units import VOLBLOCKSIZES
from truenas_sim import Simulator
from truenas_sim.profiles import PROFILE_ORDER, PROFILES

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_storage_cases import CASES, SECRET, run_case  # noqa: E402

PW = "Root-pw-0001"
OTHER = "0ther-secret-99"


def _bytes(vbs: str | None) -> int:
    return VOLBLOCKSIZES[vbs] if vbs else 16384


def sim_state(actual: dict, profile: str) -> dict:
    """A case's normalised actual state as the simulator of ``profile`` stores it."""
    p = PROFILES[profile]
    ds = {"tank": {"name": "tank", "type": "FILESYSTEM", "props": {}, "user_properties": {}, "origin": None,
                   "device_pending": 0, "comments": None, "managedby": None}}
    parts = actual["parent"].split("/")
    for i in range(2, len(parts) + 1):
        name = "/".join(parts[:i])
        if name == actual["parent"] and not actual["parent_exists"]:
            break
        typ = actual["parent_type"] if name == actual["parent"] else "FILESYSTEM"
        ds[name] = {**ds["tank"], "name": name, "type": typ}
    snaps = {}
    for sid, s in actual["snapshots"].items():
        vol = sid.split("@")[0]
        vparts = vol.split("/")
        for i in range(2, len(vparts)):
            ds.setdefault("/".join(vparts[:i]), {**ds["tank"], "name": "/".join(vparts[:i])})
        ds.setdefault(vol, {**ds["tank"], "name": vol, "type": "VOLUME", "volsize": s["volsize"],
                            "volblocksize": _bytes(s.get("volblocksize")), "sparse": False})
        snaps[sid] = {"creation": 1, "createtxg": 1000 + len(snaps), "volsize": s["volsize"],
                      "volblocksize": _bytes(s.get("volblocksize"))}
    for z in actual["zvols"]:
        ds[z["name"]] = {**ds["tank"], "name": z["name"], "type": "VOLUME", "volsize": z["volsize"],
                         "volblocksize": _bytes(z["volblocksize"]), "sparse": z["sparse"], "origin": z["origin"],
                         "comments": z.get("comments"), "user_properties": dict(z.get("props") or {})}
    ext = [{"filesize": 0, "pblocksize": False, "avail_threshold": None, "insecure_tpc": True, "xen": False,
            "rpm": "SSD", "naa": f"0x6589cfc0000000{e['id']:018x}", "path": e["disk"],
            **{k: v for k, v in e.items() if k != "disk"}} for e in actual["extents"]]
    tgt = []
    for t in actual["targets"]:
        row = {"alias": None, "mode": "ISCSI", **t}
        if p.target_auth_networks:
            row["auth_networks"] = []
        if p.target_rel_tgt_id:
            row["rel_tgt_id"] = t["id"]
        if p.target_iscsi_parameters:
            row["iscsi_parameters"] = None
        tgt.append(row)
    ini = []
    for i in actual["initiators"]:
        row = dict(i)
        if p.initiator_auth_network:
            row["auth_network"] = []
        if p.initiator_tag:
            row["tag"] = i["id"]
        ini.append(row)
    auth = [{"peeruser": "", "peersecret": "", **{k: v for k, v in a.items() if k != "secret"},
             "secret": SECRET if a["secret"] in ("redacted", secret_digest(SECRET)) else OTHER}
            for a in actual["auths"]]
    portals = [{"discovery_authmethod": "NONE", "discovery_authgroup": None, **x} for x in actual["portals"]]
    svc = {"id": 7, "service": "iscsitarget", "pids": [], **actual["service"]}
    sessions = [{"initiator": s["initiator"], "target": s["target"], "initiator_addr": "192.0.2.100"}
                for s in actual["sessions"]]
    glob = {"basename": actual["global"]["basename"]}
    if "listen_port" in actual["global"] and p.global_listen_port:
        glob["listen_port"] = actual["global"]["listen_port"]
    return {"datasets": ds, "snapshots": snaps, "global": glob, "services": {"iscsitarget": svc},
            "sessions": sessions,
            "tables": {"extent": ext, "target": tgt, "targetextent": actual["targetextents"], "initiator": ini,
                       "auth": auth, "portal": portals}}


@pytest.fixture(scope="module", params=PROFILE_ORDER)
def nas(request):
    profile = request.param
    sim = Simulator(profile=profile, users={"root": PW}).start()
    if profile == "11.3":
        full = limited = Credentials(username="root", password=PW)
    else:
        full = Credentials(api_key=sim.api_key)
        # a read-only key: the NAS redacts CHAP secrets for it on releases with roles (24.10+)
        limited = Credentials(api_key=sim.add_api_key(roles=["READONLY_ADMIN"])) if PROFILES[profile].roles \
            else full
    clients = {"full": TrueNASClient.connect(sim.url, full), "limited": TrueNASClient.connect(sim.url, limited)}
    yield profile, sim, clients
    for c in clients.values():
        c.close()
    sim.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case_on_profile(nas, case: Path):
    profile, sim, clients = nas
    p = PROFILES[profile]
    actual = json.loads((case / "actual.json").read_text())
    scale_only = any(z.get("props") for z in actual["zvols"])
    if scale_only and not p.user_properties:
        pytest.skip(f"{case.name} is a SCALE NAS (zvol user properties); {profile} has none")
    redacted = any(a["secret"] == "redacted" for a in actual["auths"])
    if redacted and not p.roles:
        pytest.skip(f"{case.name} needs a NAS that redacts CHAP secrets (roles, 24.10+); {profile} shows them")
    sim.load_state(sim_state(actual, profile))
    client = clients["limited" if redacted else "full"]
    loaded = parse_inventory((case / "inventory.yaml").read_text(), "inventory.yaml")
    storage = next(iter(loaded.inventory.storage))
    opts = json.loads((case / "options.json").read_text()) if (case / "options.json").exists() else {}
    storage = opts.get("storage") or storage
    desired = desired_storage(loaded, storage, {m.name: SECRET for m in loaded.machines if m.chap})
    read = TrueNASStorage(client, storage, None).read(desired).to_json()
    expect = json.loads(json.dumps(actual))
    if not p.global_listen_port:   # CORE/FreeNAS: the port is per portal IP, the global config has none
        expect["global"]["listen_port"] = None
    if not expect["parent_exists"]:
        expect["parent_type"] = None
    for a in expect["auths"]:       # a digest of another secret: the one seeded
        if a["secret"].startswith("sha256:") and a["secret"] != secret_digest(SECRET):
            a["secret"] = secret_digest(OTHER)
    assert read == expect, f"{case.name}: what netprov reads on {profile} differs from actual.json"
    golden = json.loads((case / "plan.json").read_text())
    assert run_case(case, actual=read) == golden, f"{case.name}: the plan on {profile} differs from plan.json"
