"""Broken or hostile NAS answers (issue 10, item 6): each fails at once, in one line that names the
method and what was wrong; nothing hangs until a timeout and nothing reaches a traceback.

Driven by the simulator's ``Knobs.bad_answer`` on both wire protocols (JSON-RPC at /api/current and the
legacy protocol at /websocket). The client's timeout is 20 s: on the code before this change every
framing fault below ended in "no answer within 20 s" (a CallTimeout), which these tests reject.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netprov.adapters.truenas.rpc import MAX_ANSWER_BYTES, Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.errors import BadAnswerError, ConnectError
from truenas_sim import Simulator

API_KEY = "1-" + "b" * 64
PATHS = {"jsonrpc": "/api/current", "legacy": "/websocket"}


@pytest.fixture(params=sorted(PATHS))
def proto(request):
    return request.param


@pytest.fixture
def sim():
    s = Simulator(profile="25.04", api_key=API_KEY).start()
    with s.nas.lock:
        from truenas_sim.nas import dataset_record

        s.nas.datasets["tank/netboot"] = dataset_record("tank/netboot", "FILESYSTEM")
    yield s
    s.stop()


def connect(sim, proto, **kw) -> TrueNASClient:
    return TrueNASClient.connect(sim.url_for(PATHS[proto]), Credentials(api_key=API_KEY), timeout=20, **kw)


def one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


# ------------------------------------------------------------------ framing: the connection can't be trusted


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("garbage", None, "sent a message that is not JSON"),
        ("binary", None, "sent a binary frame"),
        ("wrong_id", None, "which is not a call netprov is waiting for"),
        ("deep", 200_000, "sent JSON nested too deeply"),
        ("huge", MAX_ANSWER_BYTES + 1024, "larger than 64 MiB"),
    ],
)
def test_broken_message_fails_every_pending_call_at_once(sim, proto, kind, value, says):
    with connect(sim, proto) as c:
        sim.knobs.bad_answer("iscsi.target.query", kind, value)
        with pytest.raises(ConnectError) as ei:
            c.call("iscsi.target.query", [], {})
        msg = str(ei.value)
        assert msg.startswith("iscsi.target.query: ") and says in msg and one_line(msg), msg
        assert "closed the connection" in msg
        # The session is over: the next call says so instead of waiting.
        with pytest.raises(ConnectError, match="closed"):
            c.call("core.ping")


def test_broken_message_fails_the_whole_pipelined_read(sim, proto):
    """The storage read pipelines 10 queries: a garbage frame for one ends all of them, at once."""
    with connect(sim, proto) as c:
        sim.knobs.bad_answer("iscsi.portal.query", "garbage")
        st = TrueNASStorage(c, "nas", _Model())
        with pytest.raises(ConnectError) as ei:
            st.read()
        assert "not JSON" in str(ei.value) and one_line(str(ei.value))


def test_an_answer_under_the_cap_is_accepted(sim, proto):
    with connect(sim, proto) as c:
        sim.knobs.bad_answer("system.info", "huge", 4 * 2**20)
        assert len(c.call("system.info")) == 4 * 2**20


# ------------------------------------------------------------------ shape: the answer is JSON, but wrong


class _Model:
    parent = "tank/netboot"


@pytest.mark.parametrize(
    ("method", "kind", "value", "says"),
    [
        ("iscsi.target.query", "value", "a string", "expected a list of objects, got a string"),
        ("iscsi.target.query", "value", [None, None], "row 0: expected an object, got null"),
        ("iscsi.extent.query", "value", None, "expected a list of objects, got null"),
        ("iscsi.target.query", "value", [{"id": 1, "name": "t", "groups": "x"}],
         "row 0: field 'groups': expected a list of objects, got a string"),
        ("iscsi.auth.query", "value", [{"id": "one", "tag": 1}], "row 0: field 'id': expected an integer"),
        ("iscsi.auth.query", "value", [{"tag": 1, "secret": "s3cret-chap-value"}], "row 0: field 'id': missing"),
        ("iscsi.global.config", "value", ["x"], "expected an object, got a list"),
        ("service.query", "value", [{"enable": "yes"}], "row 0: field 'enable': expected true/false"),
        ("iscsi.portal.query", "value", [{"id": 1, "listen": [{"ip": ["10.0.0.1"]}]}],
         "row 0: field 'listen[0].ip': expected a string, got a list"),
        ("iscsi.initiator.query", "value", [{"id": 1, "initiators": {"a": 1}}],
         "row 0: field 'initiators': expected a list of strings, got an object"),
        ("pool.dataset.query", "value",
         [{"id": "tank/netboot/m1", "type": "VOLUME", "volsize": {"parsed": [1]}}],
         "row 0: field 'volsize.parsed': expected a string or a number, got a list"),
        ("pool.dataset.query", "field", ("user_properties", {"netprov:managed": {"parsed": {"deep": 1}}}),
         "field 'user_properties.netprov:managed.parsed': expected a string or a number, got an object"),
    ],
)
def test_wrong_shape_names_method_and_field(sim, proto, method, kind, value, says):
    with connect(sim, proto) as c:
        sim.knobs.bad_answer(method, kind, value)
        st = TrueNASStorage(c, "nas", _Model())
        with pytest.raises(BadAnswerError) as ei:
            st.read()
        msg = str(ei.value)
        assert msg.startswith(f"{method}: ") and says in msg and one_line(msg), msg
        assert "s3cret-chap-value" not in msg  # values are never quoted
        # Only that answer was wrong: the connection stays usable.
        sim.knobs.bad_answer(method, None)
        assert st.read().parent_exists


def test_wrong_shape_of_a_create_answer_is_that_calls_error(sim, proto):
    with connect(sim, proto) as c:
        sim.knobs.bad_answer("iscsi.initiator.create", "value", "created!")
        out = c.call_many([("iscsi.initiator.create", ({"initiators": ["iqn.2000-01.x:a"]},))])
        assert isinstance(out[0], BadAnswerError)
        assert "iscsi.initiator.create" in str(out[0]) and "expected an object, got a string" in str(out[0])


def test_wrong_type_in_a_job_answer(sim, proto):
    with connect(sim, proto) as c:
        sim.knobs.bad_answer("core.get_jobs", "field", ("progress", "half"))
        with pytest.raises(BadAnswerError, match=r"core\.get_jobs: .*field 'progress': expected an object"):
            c.bulk("iscsi.initiator.create", [({"initiators": [f"iqn.2000-01.x:{i}"]},) for i in range(3)])


# ------------------------------------------------------------------ through the CLI


@pytest.mark.parametrize(
    ("method", "kind", "value", "says"),
    [
        ("iscsi.target.query", "value", "not a list", "iscsi.target.query: "),
        ("iscsi.auth.query", "value", [None], "iscsi.auth.query: "),
        ("pool.dataset.query", "garbage", None, "not JSON"),
        ("pool.dataset.query", "deep", 200_000, "nested too deeply"),
    ],
)
def test_plan_exits_1_with_one_line(sim, tmp_path, method, kind, value, says):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""\
version: 1
storage:
  nas: {{url: {sim.url}, api_key_env: TEST_NAS_KEY, parent: tank/netboot, portal: 10.99.1.10}}
pxe_servers:
  pxe:
    ssh: {{host: 127.0.0.1, port: 9, user: nobody}}
    mode: dhcp
    interface: lo
    address: 10.99.1.5
    subnet: 10.99.1.0/24
    range: {{start: 10.99.1.100, end: 10.99.1.150}}
    tftp_root: {tmp_path}/tftp
    dnsmasq_dir: {tmp_path}/dnsmasq.d
    hosts_dir: {tmp_path}/hosts
defaults: {{disk: {{size: 8G}}}}
machines:
  alpha: {{mac: "52:54:00:10:00:01"}}
""")
    sim.knobs.bad_answer(method, kind, value)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "NO_COLOR": "1", "TEST_NAS_KEY": API_KEY,
           "NETPROV_TIMEOUT": "20"}
    out = subprocess.run([sys.executable, "-m", "netprov", "plan", str(inventory)], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).parents[3], timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and says in errors[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_a_field_left_out_of_select_is_not_required():
    """The CHAP tag check asks for ``select: ["tag"]``: rows without ``id`` are then the right answer
    (found when the shape checks met the auth-tag verification: every racing apply's check failed)."""
    from netprov.adapters.truenas.normalise import answer_problem
    assert answer_problem("iscsi.auth.query", [[], {"select": ["tag"]}], [{"tag": 3}]) is None
    assert answer_problem("iscsi.auth.query", [[], {}], [{"tag": 3}]) == "row 0: field 'id': missing"
    assert answer_problem("iscsi.auth.query", [[], {"select": ["id", "tag"]}], [{"tag": 3}]) is not None


def test_the_websockets_library_never_prints_its_own_traceback():
    """A connection dying mid-read makes websockets log "unexpected internal error" with a traceback;
    netprov reports the failure in one line, so the library's log must not reach stderr (fault matrix,
    about 1 drop in 100)."""
    code = ("import logging, netprov.adapters.truenas.rpc\n"
            "try:\n    raise EOFError('stream ended')\n"
            "except EOFError:\n    logging.getLogger('websockets.client').error('unexpected internal error', "
            "exc_info=True)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[3])
    assert out.returncode == 0 and out.stderr == "", out.stderr
