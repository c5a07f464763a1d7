"""An apply that fails after it made changes says what it made (issue 10: the truthful report).

* The losing apply of two (another apply holds the PXE lock) made its NAS changes first: its report
  counts and lists them, and never says "nothing was changed" about the apply.
* A fault in the check after the apply (the verification plan's read) says the changes were made.
* A port that raises (a stale NAS after another NAS was changed) is recorded with what came before.
* A progress reporter that raises loses no outcome (recording never depends on printing).
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

import pytest

from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.adapters.pxe.local_shell import LocalConnection
from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.inventory_load import parse_inventory
from netprov.core.boot_render import Renderer, script_name
from netprov.core.storage import StoragePolicy
from netprov.engine.run import World, apply_plan, make_plan, server_roots
from tests.support.cli_lab import FailOn, inventory_text, netprov, sim_fixture  # noqa: F401 (a fixture)

MACHINES = {"m1": "52:54:00:40:00:01", "m2": "52:54:00:40:00:02"}


def _cli_lab(sim, tmp_path: Path) -> tuple[Path, dict]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory_text(sim.url, tmp_path, machines=MACHINES))
    return inv, {**os.environ, "NAS_KEY": sim.api_key, "NO_COLOR": "1"}


def _made_count(output: str) -> int:
    m = re.search(r"(\d+) change\(s\) made", output)
    assert m, output[-3000:]
    return int(m.group(1))


def test_the_apply_that_loses_the_pxe_lock_says_what_it_made(sim, tmp_path) -> None:
    inv, env = _cli_lab(sim, tmp_path)
    with open(tmp_path / "netprov.lock", "a") as held:   # another apply holds the PXE server's lock
        fcntl.flock(held, fcntl.LOCK_EX)
        out = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
    assert out.returncode == 1, out.output[-3000:]
    nas = [ln for ln in out.stderr.splitlines() if ln.startswith("storage:nas: ") and ln.endswith(": ok")]
    assert len(nas) >= 10, out.stderr[-3000:]          # the NAS half was made before the lock was tried
    assert _made_count(out.stderr) == len(nas)
    for line in nas:
        address = re.fullmatch(r"storage:nas: \w+ (.+): ok", line).group(1)
        assert f"  made: {address}\n" in out.stderr, address
    assert "holds the lock" in out.stderr
    # Whatever the PXE server says about itself, the apply never claims it changed nothing.
    assert not re.search(r"nothing was changed(?! on pxe\b)", out.output), out.stderr[-3000:]
    assert out.stderr.rstrip().splitlines()[-1].startswith("error: pxe:pxe: ")
    assert not (tmp_path / "pxe" / "tftp").exists()


def test_a_fault_in_the_check_after_apply_says_the_changes_were_made(sim, tmp_path) -> None:
    inv, env = _cli_lab(sim, tmp_path)
    # iscsi.global.config is read once per whole-NAS read: plan, apply's fingerprint check, then the
    # verification plan. Fail the third.
    sim.message, sim.method, sim.nth = "injected: the NAS went away", "iscsi.global.config", 3
    out = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
    assert sim.method is None
    assert out.returncode == 1, out.output[-3000:]
    made = _made_count(out.stderr)
    assert made > 10
    last = out.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: ") and f"the {made} change(s) above were made" in last, last
    assert "injected: the NAS went away" in last and "netprov plan" in last
    assert "Traceback" not in out.output
    assert (tmp_path / "pxe" / "tftp" / script_name(MACHINES["m1"])).exists()


# --- the engine: one NAS per simulator -----------------------------------------------------

def _engine_inventory(urls: dict[str, str], root: Path) -> str:
    storage = "".join(f"  {n}: {{url: {u}, api_key_env: K, parent: tank/nb, portal: 10.99.4.10}}\n"
                      for n, u in urls.items())
    machines = "".join(f"  m{n}: {{mac: '52:54:00:40:01:0{i}', storage: {n}}}\n" for i, n in enumerate(urls))
    return f"""\
version: 1
storage:
{storage}pxe_servers:
  pxe:
    ssh: {{host: localhost, sudo: false}}
    interface: lo
    address: 10.99.4.5
    subnet: 10.99.4.0/24
    tftp_root: {root}/tftp
    dnsmasq_dir: {root}/dnsmasq.d
    hosts_dir: {root}/hosts
    ipxe: {{source: null}}
    test_command: "true"
    reload_command: "true"
    restart_command: "true"
defaults: {{disk: {{size: 16M}}}}
machines:
{machines}"""


@pytest.fixture
def engine_lab(tmp_path):
    """build({name: simulator}) -> (loaded, world, clients, pxe root)."""
    clients = []

    def build(sims: dict):
        root = tmp_path / "pxe"
        loaded = parse_inventory(_engine_inventory({n: s.url for n, s in sims.items()}, root), "inv.yaml")
        ports = {}
        for name, s in sims.items():
            client = TrueNASClient.connect(s.url, Credentials(api_key=s.api_key))
            client.call("pool.dataset.create", {"name": "tank/nb", "type": "FILESYSTEM"})
            clients.append(client)
            ports[name] = TrueNASStorage(client, name, loaded.inventory.storage[name])
        host = PxeHost(PxeSettings(host="localhost", roots=server_roots(loaded, "pxe"), server="pxe",
                                   lock_path=str(tmp_path / "lock"), test_command="true",
                                   reload_command="true", restart_command="true"),
                       connection=LocalConnection())
        return loaded, World(storage=ports, pxe={"pxe": host}), {n: c for n, c in zip(sims, clients)}, root
    yield build
    for c in clients:
        c.close()


def _plan(loaded, w):
    return make_plan(loaded, Renderer(), {}, w, policy=StoragePolicy())


def test_a_port_that_raises_after_changes_elsewhere_is_recorded_with_them(engine_lab) -> None:
    with FailOn(profile="25.04") as a, FailOn(profile="25.04") as b:
        loaded, w, clients, root = engine_lab({"a": a, "b": b})
        run = _plan(loaded, w)
        # NAS b changes behind the plan: its port raises StalePlanError after NAS a was changed.
        clients["b"].call("pool.dataset.create", {"name": "tank/nb/intruder", "type": "VOLUME",
                                                  "volsize": 16 * 2**20, "volblocksize": "16K"})
        result = apply_plan(run.plan, w, desired=run.desired)
    assert not result.ok
    assert [a for a, _ in result.failed] == ["storage:b"]
    assert "changed since the plan" in result.failed[0][1]
    made_on_a = [str(c.address) for c in run.plan.pending if c.system == "storage:a"]
    assert made_on_a and sorted(result.done) == sorted(made_on_a)
    assert result.stopped == "storage:b"
    # Everything else is accounted for as not attempted, and no file was pushed.
    assert {str(c.address) for c in run.plan.pending} <= set(result.done) | set(result.skipped)
    assert not root.exists()


class Raising:
    """A progress reporter that raises on every event (a broken terminal, a bug in a view)."""

    def __init__(self) -> None:
        self.calls = 0

    def event(self, system, event, change=None, error=None):
        self.calls += 1
        raise RuntimeError(f"reporter broke on {event}")


def test_a_reporter_that_raises_loses_no_outcome(engine_lab) -> None:
    with FailOn(profile="25.04") as nas:
        loaded, w, clients, root = engine_lab({"a": nas})
        # Two machines on the one NAS.
        loaded = parse_inventory(_engine_inventory({"a": nas.url}, root).replace(
            "machines:\n", "machines:\n  mz: {mac: '52:54:00:40:01:09', storage: a}\n"), "inv.yaml")
        run = _plan(loaded, w)
        nas.message, nas.method = "Device [/dev/zvol/tank/nb/ma] is busy", "iscsi.target.create"
        reporter = Raising()
        result = apply_plan(run.plan, w, desired=run.desired, reporter=reporter, parallel=1)
    assert reporter.calls > 10
    assert len(result.failed) == 1, result.failed
    address, error = result.failed[0]
    assert error.endswith("Device [/dev/zvol/tank/nb/ma] is busy")
    bad = next(c.machine for c in run.plan.changes if str(c.address) == address)
    assert not (root / "tftp" / script_name(loaded.machine(bad).mac)).exists()
    (good,) = {"ma", "mz"} - {bad}
    assert (root / "tftp" / script_name(loaded.machine(good).mac)).exists()
