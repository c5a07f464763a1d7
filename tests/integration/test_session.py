"""The engine session (netprov.engine.session) without the CLI: which credential wins, a stale saved
plan, verify after apply, state snapshots. Against the TrueNAS simulator and a local PXE directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.engine.session import ConnectOptions, SavedPlan, Session
from netprov.errors import AuthError, ConvergenceError, NetprovError, StalePlanError
from truenas_sim import Simulator

SECRET = "Chap-s3cret-01"


def _write_inventory(path: Path, url: str, root: Path, *, credential: str, machines: str = "") -> Path:
    path.write_text(f"""\
version: 1
storage:
  nas: {{url: {url}, {credential}, parent: tank/nb, portal: 10.99.3.10}}
pxe_servers:
  pxe:
    transport: local
    sudo: false
    lock_path: {root}/lock
    interface: lo
    address: 10.99.3.5
    subnet: 10.99.3.0/24
    tftp_root: {root}/tftp
    dnsmasq_dir: {root}/dnsmasq.d
    hosts_dir: {root}/hosts
    ipxe: {{source: null}}
    test_command: "true"
    reload_command: "true"
    restart_command: "true"
defaults: {{disk: {{size: 16M}}}}
machines:
  alpha: {{mac: '52:54:00:30:00:01', chap: {{secret_env: ALPHA_SECRET}}}}
{machines}""")
    return path


@pytest.fixture
def sim():
    with Simulator(profile="25.04") as sim:
        with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as client:
            client.call("pool.dataset.create", {"name": "tank/nb", "type": "FILESYSTEM"})
        yield sim


@pytest.fixture
def lab(tmp_path, sim):
    """A session over an inventory whose NAS key comes from $NAS_KEY, in the session's own env."""
    inv = _write_inventory(tmp_path / "inventory.yaml", sim.url, tmp_path / "pxe", credential="api_key_env: NAS_KEY")
    env = {"NAS_KEY": sim.api_key, "ALPHA_SECRET": SECRET}
    warnings: list[str] = []
    masked: list[str] = []
    session = Session.load(inv, env=env, warn=warnings.append, mask=lambda *v: masked.extend(x for x in v if x))
    return session, warnings, masked, tmp_path


# --- credentials: NETPROV_API_KEY (the api_key option) > the inventory's one source -----------------

def _session(tmp_path: Path, credential: str, env: dict[str, str]) -> tuple[Session, list[str]]:
    inv = _write_inventory(tmp_path / "inventory.yaml", "wss://nas.invalid/api/current", tmp_path / "pxe",
                           credential=credential)
    warnings: list[str] = []
    return Session.load(inv, env={"ALPHA_SECRET": SECRET, **env}, warn=warnings.append), warnings


def test_the_api_key_option_beats_the_inventorys_source(tmp_path) -> None:
    session, _ = _session(tmp_path, "api_key_env: NAS_KEY", {"NAS_KEY": "1-from-env"})
    assert session.credentials("nas", ConnectOptions(api_key="1-from-option")).api_key.get_secret_value() \
        == "1-from-option"
    assert session.credentials("nas", ConnectOptions()).api_key.get_secret_value() == "1-from-env"


def test_the_environment_is_the_sessions_not_the_process(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAS_KEY", "1-from-os-environ")
    session, _ = _session(tmp_path, "api_key_env: NAS_KEY", {})
    with pytest.raises(NetprovError) as exc:
        session.credentials("nas", ConnectOptions())
    assert str(exc.value) == "storage nas: environment variable NAS_KEY (its API key) is not set"


def test_a_key_file_is_read_by_the_one_secret_reader_and_warned_about(tmp_path) -> None:
    key = tmp_path / "api-key"
    key.write_text("  1-from-file \n")
    key.chmod(0o644)
    session, warnings = _session(tmp_path, f"api_key_file: {key}", {})
    masked: list[str] = []
    session.mask = lambda *v: masked.extend(v)
    assert session.credentials("nas", ConnectOptions()).api_key.get_secret_value() == "1-from-file"
    assert warnings == [f"{key} is open to other users (mode 0644); chmod 600 it"]
    assert masked == ["1-from-file"], "a credential read is handed to the mask hook"
    key.unlink()
    with pytest.raises(NetprovError, match=f"^cannot read {key}: No such file or directory$"):
        session.credentials("nas", ConnectOptions())


def test_a_password_login_needs_a_password(tmp_path) -> None:
    session, _ = _session(tmp_path, "username: root, password_env: NAS_PW", {"NAS_PW": "pw-from-env"})
    creds = session.credentials("nas", ConnectOptions())
    assert (creds.username, creds.password.get_secret_value()) == ("root", "pw-from-env")
    empty, _ = _session(tmp_path, "username: root, password_env: NAS_PW", {"NAS_PW": ""})
    with pytest.raises(NetprovError, match="^storage nas: no password available for user root$"):
        empty.credentials("nas", ConnectOptions())


def test_connect_uses_the_chosen_credential(lab) -> None:
    session, _, masked, _ = lab
    with pytest.raises(AuthError):
        with session.connect(ConnectOptions(api_key="1-wrong")):
            pass
    with session.connect(ConnectOptions()) as world:
        assert sorted(world.storage) == ["nas"] and sorted(world.pxe) == ["pxe"]
    assert SECRET in masked and session.env["NAS_KEY"] in masked


# --- plan, apply, verify -------------------------------------------------------------------------

def test_apply_then_verify_converges_and_a_changed_world_does_not(lab, sim) -> None:
    session, _, _, tmp_path = lab
    policy = session.policy()
    with session.connect(ConnectOptions()) as world:
        run = session.plan(world, policy)
        assert run.plan.has_changes
        result = session.apply(run, world)
        assert result.ok, result.failed
        assert not session.verify(world, policy, result).plan.has_changes
        # Someone removes a boot file behind netprov's back: verify's fresh plan has a change left.
        script = next((tmp_path / "pxe" / "tftp").glob("*.ipxe"))
        script.unlink()
        with pytest.raises(ConvergenceError) as exc:
            session.verify(world, policy, result)
    assert str(exc.value) == "the world did not converge: a fresh plan still has changes"
    assert [str(c.address) for c in exc.value.plan.pending] == [f"pxe.tftp[{script.name}]"]


def test_verify_says_the_changes_were_made_when_its_own_check_fails(lab, sim) -> None:
    session, _, _, _ = lab
    policy = session.policy()
    with session.connect(ConnectOptions()) as world:
        run = session.plan(world, policy)
        result = session.apply(run, world)
        assert result.ok, result.failed
        sim.knobs.fail_call = (1, None, "injected failure")
        with pytest.raises(NetprovError) as exc:
            session.verify(world, policy, result)
        sim.knobs.fail_call = None
    assert not isinstance(exc.value, ConvergenceError)
    assert str(exc.value).startswith(f"the {len(result.done)} change(s) above were made, but the check that "
                                     "followed failed: ")


def test_apply_refuses_a_missing_chap_secret_before_changing_anything(lab, sim) -> None:
    session, _, _, _ = lab
    lacking = Session.load(session.path, env={"NAS_KEY": sim.api_key})
    with lacking.connect(ConnectOptions()) as world:
        run = lacking.plan(world, lacking.policy())
        with pytest.raises(NetprovError, match="change\\(s\\) refused; nothing was changed: "):
            lacking.apply(run, world)
        assert lacking.plan(world, lacking.policy()).plan.fingerprints == run.plan.fingerprints


# --- saved plans -----------------------------------------------------------------------------------

def test_a_saved_plan_whose_world_changed_is_stale(lab, sim, tmp_path) -> None:
    session, _, _, _ = lab
    out = tmp_path / "plan.json"
    with session.connect(ConnectOptions()) as world:
        SavedPlan.write(session.plan(world, session.policy()).plan, out)
    saved = SavedPlan.read(out)
    policy = session.saved_policy(saved)
    assert policy.stamp == saved.options["snapshot_stamp"], "a saved plan keeps its own stamp"
    with session.connect(ConnectOptions()) as world:
        saved.check(session.plan(world, policy).plan)   # nothing changed: not stale
        with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as client:
            client.call("pool.dataset.create", {"name": "tank/nb/intruder", "type": "VOLUME", "volsize": 16 << 20})
        with pytest.raises(StalePlanError, match="^saved plan is stale: storage:nas changed since it was made; "
                                                 "plan again$"):
            saved.check(session.plan(world, policy).plan)


def test_a_saved_plan_whose_inventory_or_secrets_changed_is_stale(lab, tmp_path) -> None:
    session, _, _, _ = lab
    out = tmp_path / "plan.json"
    with session.connect(ConnectOptions()) as world:
        SavedPlan.write(session.plan(world, session.policy()).plan, out)
    saved = SavedPlan.read(out)
    # Same inventory file, another CHAP secret: the plan made now differs.
    other = Session.load(session.path, env={**session.env, "ALPHA_SECRET": "Other-s3cret-02"})
    with other.connect(ConnectOptions()) as world:
        with pytest.raises(StalePlanError, match="the plan made now differs from the saved one"):
            saved.check(other.plan(world, other.saved_policy(saved)).plan)
    session.path.write_text(session.path.read_text() + "  beta: {mac: '52:54:00:30:00:02'}\n")
    changed = Session.load(session.path, env=session.env)
    with pytest.raises(StalePlanError, match=f"^saved plan is stale: {session.path} changed since "):
        changed.saved_policy(saved)


def _script_sha(session: Session) -> str:
    """The real sha256 of alpha's iPXE script (it holds the CHAP secret), from the rendered BootFile."""
    import hashlib
    script = next(f for f in session.render() if f.secret)
    return hashlib.sha256(script.content).hexdigest()


def test_a_saved_plan_holds_no_hash_of_a_secret_file_and_still_sees_the_secret_change(lab, tmp_path) -> None:
    session, _, _, _ = lab
    first = _script_sha(session)
    with session.connect(ConnectOptions()) as world:
        run = session.plan(world, session.policy())
        assert session.apply(run, world).ok         # the server now holds the script of SECRET
    # Rotate the secret: the plan updates the script, from a file holding SECRET to one holding the new one.
    rotated = Session.load(session.path, env={**session.env, "ALPHA_SECRET": "Rotated-s3cret"})
    second = _script_sha(rotated)
    out = tmp_path / "rotate.json"
    with rotated.connect(ConnectOptions()) as world:
        SavedPlan.write(rotated.plan(world, rotated.policy()).plan, out)
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    assert first not in text and second not in text
    saved = SavedPlan.read(out)
    update = next(c for c in saved.data["changes"] if c["kind"] == "file" and c["payload"]["secret"])
    assert update["action"] == "update" and update["before"] == update["after"] == {"sha256": "********",
                                                                                     "mode": "0640"}
    assert list(saved.data["secret_files"]["digests"]) == [update["address"]]
    with rotated.connect(ConnectOptions()) as world:
        saved.check(rotated.plan(world, rotated.saved_policy(saved)).plan)   # the same secret: not stale
    # The secret rotated again before apply: same JSON (masked), other digest: stale.
    again = Session.load(session.path, env={**session.env, "ALPHA_SECRET": "Rotated-again1"})
    with again.connect(ConnectOptions()) as world:
        plan = again.plan(world, again.saved_policy(saved)).plan
        assert [c.to_json() for c in plan.changes] == saved.data["changes"], "only the digests can tell"
        with pytest.raises(StalePlanError, match="the plan made now differs from the saved one"):
            saved.check(plan)
    # An edited record (digests removed) is not taken as "no secret file".
    saved.data["secret_files"] = {"key": saved.data["secret_files"]["key"], "digests": {}}
    with rotated.connect(ConnectOptions()) as world:
        with pytest.raises(StalePlanError, match="the plan made now differs from the saved one"):
            saved.check(rotated.plan(world, rotated.saved_policy(saved)).plan)


def test_an_offline_plan_cannot_be_saved_and_a_foreign_file_is_not_a_plan(lab, tmp_path) -> None:
    session, _, _, _ = lab
    with session.connect(ConnectOptions(), offline=True) as world:
        plan = session.plan(world, session.policy()).plan
    with pytest.raises(NetprovError, match="^an offline plan can't be saved for apply") as exc:
        SavedPlan.write(plan, tmp_path / "plan.json")
    assert not isinstance(exc.value, StalePlanError)
    (tmp_path / "other.json").write_text('{"kind": "something else"}')
    with pytest.raises(NetprovError, match="is not a saved netprov plan"):
        SavedPlan.read(tmp_path / "other.json")


# --- state snapshots -------------------------------------------------------------------------------

def test_a_snapshot_feeds_an_offline_plan_that_matches_the_live_one(lab, tmp_path) -> None:
    import json
    session, _, _, _ = lab
    policy = session.policy()
    with session.connect(ConnectOptions()) as world:
        session.apply(session.plan(world, policy), world)
        snapshot = session.snapshot(world)
        live = session.plan(world, policy).plan
    assert sorted(snapshot["storage"]) == ["nas"] and sorted(snapshot["pxe"]) == ["pxe"]
    assert SECRET not in json.dumps(snapshot)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(snapshot))
    with session.connect(ConnectOptions(), state=state) as world:
        offline = session.plan(world, policy).plan
    assert not offline.has_changes and offline.fingerprints == live.fingerprints
