"""adapters/truenas/normalise.py: raw middleware rows -> normalised ActualStorage records.

The fixtures under tests/fixtures/truenas_storage/ are the exact query results (with the same
filters and ``select`` the adapter sends) captured from the simulator for SCALE 25.04 and CORE 13
after an apply, plus hand-written rows for quirks the simulator does not produce.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netprov.adapters.truenas import normalise as parse
from netprov.adapters.truenas.backend import version_tuple
from netprov.core.storage import ActualStorage, secret_digest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "truenas_storage"
SECRET = "Sup3rSecret-001"


def load(name: str) -> tuple[str, dict]:
    d = json.loads((FIX / name).read_text())
    return d["version"], {c["method"]: c["result"] for c in d["calls"]}


def build(raw: dict) -> ActualStorage:
    snaps = next((v for k, v in raw.items() if k.endswith("snapshot.query")), [])
    return parse.build_actual(
        "tank/netboot", datasets=raw["pool.dataset.query"], extents=raw["iscsi.extent.query"],
        targets=raw["iscsi.target.query"], targetextents=raw["iscsi.targetextent.query"],
        initiators=raw["iscsi.initiator.query"], auths=raw["iscsi.auth.query"], portals=raw["iscsi.portal.query"],
        global_=raw["iscsi.global.config"], service_rows=raw["service.query"],
        sessions=raw["iscsi.global.sessions"], snapshots=snaps)


@pytest.mark.parametrize("name", ["scale-25.04.json", "core-13.json"])
def test_captured_state_normalises_the_same_on_both_versions(name):
    version, raw = load(name)
    a = build(raw)
    zv = {z["name"]: z for z in a.zvols}
    m1, m2 = zv["tank/netboot/m1"], zv["tank/netboot/m2"]
    assert (m1["volsize"], m1["volblocksize"], m1["sparse"], m1["origin"]) == (32 * 2**30, "16K", False, None)
    assert (m2["volsize"], m2["sparse"], m2["origin"]) == (16 * 2**30, True, "tank/golden/debian@v1")
    if version_tuple(version) < (20, 0):
        assert m1["comments"] == "netprov:managed zvol=tank/netboot/m1" and m1["props"] == {}
    else:
        assert m1["props"] == {"netprov:managed": "true", "netprov:machine": "m1"}
    assert a.parent_exists and a.parent_type == "FILESYSTEM"
    assert [e["disk"] for e in a.extents] == ["zvol/tank/netboot/m1", "zvol/tank/netboot/m2"]
    assert all(isinstance(e["blocksize"], int) for e in a.extents)
    assert a.targets[1]["groups"] == [{"portal": 1, "initiator": 2, "authmethod": "CHAP", "auth": 1}]
    assert a.portals[0]["listen"] == [{"ip": "0.0.0.0", "port": 3260}]
    assert a.service == {"enable": True, "state": "RUNNING"}
    assert a.sessions == [{"target": "iqn.2005-10.org.freenas.ctl:m1", "initiator": "iqn.2010-04.org.ipxe:m1"}]
    assert a.snapshots["tank/golden/debian@v1"]["volsize"] == 8 * 2**30
    # m2 is a clone of an 8G snapshot grown to the default 16G
    # the CHAP secret never reaches the normalised state (a digest when the NAS shows it)
    assert a.auths[0]["secret"] in ("redacted", secret_digest(SECRET))
    blob = json.dumps(a.to_json())
    assert SECRET not in blob
    assert ActualStorage.from_json(json.loads(blob)).to_json() == a.to_json()


def test_quirks():
    # CORE: alias "" and legacy authmethod spellings; initiators stored newline-joined / ALL
    t = parse.target({"id": 3, "name": "x", "alias": "", "groups": [
        {"portal": "1", "initiator": 2, "authmethod": "CHAP Mutual", "auth": "4"},
        {"portal": 1, "initiator": None, "authmethod": None, "auth": None}]})
    assert t["alias"] is None and t["mode"] == "ISCSI"
    assert t["groups"] == [{"portal": 1, "initiator": 2, "authmethod": "CHAP_MUTUAL", "auth": 4},
                           {"portal": 1, "initiator": None, "authmethod": "NONE", "auth": None}]
    assert parse.initiator({"id": 1, "initiators": ["IQN.2010-04.org.ipxe:A\niqn.b:c"], "comment": None}) == \
        {"id": 1, "initiators": ["iqn.2010-04.org.ipxe:a", "iqn.b:c"], "comment": ""}
    assert parse.initiator({"id": 1, "initiators": ["ALL"]})["initiators"] == []
    e = parse.extent({"id": "5", "name": "e", "path": "zvol/tank/x", "blocksize": "4096", "filesize": "0"})
    assert (e["id"], e["disk"], e["blocksize"], e["enabled"], e["comment"]) == (5, "zvol/tank/x", 4096, True, "")
    # properties: parsed, rawvalue only, plain values; humanised ``value`` is never used
    z = parse.zvol({"id": "tank/netboot/a", "type": "VOLUME",
                    "volsize": {"parsed": None, "rawvalue": "17179869184", "value": "16G"},
                    "volblocksize": {"parsed": 16384, "value": "16K"}, "refreservation": {"rawvalue": "none"},
                    "origin": {"parsed": ""}, "user_properties": {"netprov:managed": {"parsed": "true"},
                                                                   "other:prop": {"parsed": "x"}}})
    assert z == {"name": "tank/netboot/a", "volsize": 16 * 2**30, "volblocksize": "16K", "sparse": True,
                 "origin": None, "comments": None, "props": {"netprov:managed": "true"}}
    assert parse.volblocksize("512B") == "512" and parse.volblocksize({"parsed": "64K"}) == "64K"
    assert parse.zvol({"id": "tank/fs", "type": "FILESYSTEM"}) is None
    assert parse.auth({"id": 1, "tag": 1, "user": "u", "secret": "********"})["secret"] == "redacted"
    assert parse.auth({"id": 1, "tag": 1, "user": "u", "secret": ""})["secret"] is None
    assert parse.service([]) is None
    assert parse.global_config({"basename": "iqn.x"}) == {"basename": "iqn.x", "listen_port": None}


def test_prefix_query_siblings_are_ignored():
    a = parse.build_actual("tank/netboot", datasets=[
        {"id": "tank/netboot", "type": "FILESYSTEM"},
        {"id": "tank/netboot2/x", "type": "VOLUME", "volsize": 1},
        {"id": "tank/netboot/m1", "type": "VOLUME", "volsize": {"parsed": 1024}}],
        extents=[], targets=[], targetextents=[], initiators=[], auths=[], portals=[], global_={},
        service_rows=[])
    assert [z["name"] for z in a.zvols] == ["tank/netboot/m1"]


@pytest.mark.parametrize("text,expected", [
    ("TrueNAS-25.04.2.4", (25, 4)), ("TrueNAS-25.10.1", (25, 10)), ("TrueNAS-SCALE-24.10.2.2", (24, 10)),
    ("TrueNAS-13.0-U6.1", (13, 0)), ("FreeNAS-11.3-U5", (11, 3)), ("TrueNAS-12.0-U8.1", (12, 0))])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected
