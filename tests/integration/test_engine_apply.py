"""The engine's apply over both halves, against the simulator and a local PXE directory.

Ctrl-C stops between steps and the next apply converges; a machine whose storage chain
fails keeps its old boot files (its script must never point at a disk that isn't there).
"""

from __future__ import annotations

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
from truenas_sim import Simulator


def _inventory(url: str, root: Path, n: int) -> str:
    machines = "".join(f"  m{i}: {{mac: '52:54:00:20:00:{i:02x}'}}\n" for i in range(n))
    return f"""\
version: 1
storage:
  nas: {{url: {url}, api_key_env: K, parent: tank/nb, portal: 10.99.2.10}}
pxe_servers:
  pxe:
    ssh: {{host: localhost, sudo: false}}
    interface: lo
    address: 10.99.2.5
    subnet: 10.99.2.0/24
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
def world(tmp_path):
    sim = Simulator(profile="25.04").start()
    client = TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key))
    client.call("pool.dataset.create", {"name": "tank/nb", "type": "FILESYSTEM"})
    root = tmp_path / "pxe"

    def build(n: int):
        loaded = parse_inventory(_inventory(sim.url, root, n), "inv.yaml")
        settings = PxeSettings(host="localhost", roots=server_roots(loaded, "pxe"), server="pxe",
                               lock_path=str(tmp_path / "lock"), test_command="true", reload_command="true",
                               restart_command="true")
        host = PxeHost(settings, connection=LocalConnection())
        w = World(storage={"nas": TrueNASStorage(client, "nas", loaded.inventory.storage["nas"])},
                  pxe={"pxe": host})
        return loaded, w

    yield sim, build, root
    client.close()
    sim.stop()


def _plan(loaded, w):
    return make_plan(loaded, Renderer(), {}, w, policy=StoragePolicy())


def _apply(planned, w):
    return apply_plan(planned.plan, w, desired=planned.desired)


def test_interrupt_stops_between_steps_then_converges(world) -> None:
    sim, build, root = world
    loaded, w = build(4)
    run = _plan(loaded, w)
    events = []

    class Stopper:
        def event(self, system, event, change=None, error=None):
            events.append(event)

    stopper = Stopper()
    result = apply_plan(run.plan, w, desired=run.desired, reporter=stopper, parallel=1,
                        should_stop=lambda: events.count("done") >= 3)
    assert result.interrupted
    assert 3 <= len(result.done) < len(run.plan.pending)
    assert result.skipped, "the steps not begun are reported as not attempted"
    assert not (root / "tftp").exists(), "boot files must not be pushed after an interrupt"
    again = _plan(loaded, w)
    assert again.plan.has_changes
    finished = apply_plan(again.plan, w, desired=again.desired)
    assert finished.ok, finished.failed
    assert not _plan(loaded, w).plan.has_changes


def test_failed_storage_chain_holds_back_that_machines_files(world) -> None:
    sim, build, root = world
    loaded, w = build(3)
    run = _plan(loaded, w)
    # Fail one storage call early in the apply (after its 10-call read): one machine's chain.
    sim.knobs.fail_call = (12, 22, "injected failure")
    result = apply_plan(run.plan, w, desired=run.desired, parallel=1)
    assert result.failed, "the injected failure must surface"
    failed_machines = {c.machine for c in run.plan.changes if str(c.address) in {a for a, _ in result.failed}}
    assert len(failed_machines) == 1
    (bad,) = failed_machines
    for m in loaded.machines:
        script = root / "tftp" / script_name(m.mac)
        assert script.exists() == (m.name != bad), m.name
    sim.knobs.fail_call = None
    fixed = _apply(_plan(loaded, w), w)
    assert fixed.ok and (root / "tftp" / script_name(loaded.machine(bad).mac)).exists()


def test_orphans_are_deleted_after_the_files_with_one_read_per_phase(world) -> None:
    sim, build, root = world
    loaded, w = build(3)
    assert _apply(_plan(loaded, w), w).ok
    smaller, w2 = build(2)                       # m2 left the inventory
    run = make_plan(smaller, Renderer(), {}, w2, policy=StoragePolicy(allow_destroy=True))
    kinds = [c.kind for c in run.plan.changes if c.is_change]
    assert "file" in kinds and kinds.index("file") < kinds.index("zvol"), kinds  # files stop pointing first
    sim.reset_counters()
    result = apply_plan(run.plan, w2, desired=run.desired)
    assert result.ok, result.failed
    # Phase 1 (creates/updates) and phase 3 (deletes) each re-read the NAS once, no more.
    # (iscsi.global.config is read only by the whole-NAS read; per-object verifications query other kinds)
    assert sim.round_trips["iscsi.global.config"] == 2, dict(sim.round_trips)
    assert not (root / "tftp" / script_name("52:54:00:20:00:02")).exists()
    assert not make_plan(smaller, Renderer(), {}, w2, policy=StoragePolicy(allow_destroy=True)).plan.has_changes
