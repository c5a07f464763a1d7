"""dump/load round trip, state files, the blocking serve() entry point, TLS."""

import json
import signal
import subprocess
import sys
import time

import pytest
from simhelpers import Client, GiB, mk_stack

from truenas_sim import Simulator


def test_default_state(api):
    assert [d["id"] for d in api.call("pool.dataset.query")] == ["tank"]
    assert api.call("pool.query", [], {"select": ["name"]}) == [{"name": "tank"}]
    for ns in ("portal", "initiator", "auth", "target", "extent", "targetextent"):
        assert api.call(f"iscsi.{ns}.query") == []


def test_dump_load_round_trip(sim, api, sim_factory, connect_factory):
    mk_stack(api, "m1")
    api.call("iscsi.auth.create", {"tag": 1, "user": "u", "secret": "abcdefghijkl"})
    sim.add_snapshot("tank/golden/img@v1", volsize=GiB)
    sim.add_session("m1", "iqn.x:1")
    d = sim.dump_state()
    json.dumps(d)  # JSON-serialisable
    s2 = sim_factory("25.04", state=d)
    c2 = connect_factory(s2)
    for m in (
        "iscsi.extent.query",
        "iscsi.target.query",
        "iscsi.targetextent.query",
        "iscsi.portal.query",
        "iscsi.auth.query",
        "iscsi.global.sessions",
        "zfs.snapshot.query",
    ):
        assert c2.call(m) == api.call(m), m

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("available", "used")} for r in rows]

    assert strip(c2.call("pool.dataset.query")) == strip(api.call("pool.dataset.query"))
    assert s2.dump_state() == d
    # the API key survives too when not given explicitly
    assert s2.api_key == sim.api_key


def test_load_state_replaces_everything(sim, api):
    mk_stack(api, "m1")
    fresh = Simulator(profile="25.04").dump_state()
    sim.load_state(fresh)
    assert api.call("iscsi.target.query") == []


def test_from_state_file(tmp_path, sim, api):
    mk_stack(api, "m1")
    path = tmp_path / "nas.json"
    sim.save_state(path)
    s2 = Simulator.from_state_file(path)
    with s2:
        c = Client(s2.url)
        c.login(s2.api_key)
        assert [t["name"] for t in c.call("iscsi.target.query")] == ["m1"]
        c.close()


def test_revoked_key_persists(sim, connect_factory, sim_factory):
    sim.knobs.insecure_transport = True
    c = connect_factory(sim, login=False)
    c.call("auth.login_with_api_key", sim.api_key)
    s2 = sim_factory("25.04", state=sim.dump_state(), api_key=sim.api_key)
    assert s2.api_key_revoked()


def test_context_manager_and_urls():
    with Simulator(profile="13") as s:
        assert s.url == f"ws://127.0.0.1:{s.port}/websocket"
        assert s.url_for("/websocket") == s.url
    with Simulator(profile="25.10") as s:
        assert s.url.endswith("/api/current")


def test_tls_wss(tmp_path):
    pytest.importorskip("ssl")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    r = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        capture_output=True,
    )
    if r.returncode:
        pytest.skip("openssl not available")
    import ssl

    with Simulator(profile="25.04", tls=(str(cert), str(key))) as s:
        assert s.url.startswith("wss://")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = Client(s.url, ssl=ctx)
        c.login(s.api_key)
        assert c.call("core.ping") == "pong"
        c.close()


def test_serve_cli_entry_point(tmp_path):
    state = tmp_path / "state.json"
    code = (
        "from truenas_sim import serve; "
        f"serve(listen='127.0.0.1:0', state_file={str(state)!r}, profile='25.04')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("TrueNAS simulator (profile 25.04) listening on ws://127.0.0.1:")
        assert "/api/current" in line and "api key: " in line
        url = line.split("listening on ")[1].split()[0]
        key = line.split("api key: ")[1].strip()
        c = Client(url)
        c.login(key)
        c.call("iscsi.portal.create", {"listen": [{"ip": "0.0.0.0"}]})
        c.close()
        for _ in range(100):  # saved after each mutating call
            if state.exists() and json.loads(state.read_text())["tables"]["portal"]:
                break
            time.sleep(0.02)
        assert json.loads(state.read_text())["tables"]["portal"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # restart from the state file: same key, no key printed
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "api key" not in line
        url = line.split("listening on ")[1].split()[0]
        c = Client(url)
        c.login(key)
        assert len(c.call("iscsi.portal.query")) == 1
        c.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_profile_names_and_aliases():
    from truenas_sim import get_profile

    assert get_profile("13.0-U6.1").name == "13"
    assert get_profile("25.04.2").name == "25.04"
    assert get_profile("11.3-U5").name == "11.3" and get_profile("26.0.0-BETA.3").name == "26"
    with pytest.raises(ValueError):
        Simulator(profile="11.2")
