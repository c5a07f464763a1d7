"""`flavor: pihole`: a PXE server whose dnsmasq is the one inside Pi-hole's pihole-FTL (docs/pihole.md).

The stand-in wraps the real dnsmasq behind Pi-hole's command names and file layout: a `pihole-FTL` whose
`dnsmasq-test-file FILE` runs `dnsmasq --conf-file=FILE --test` (what FTL v6's src/args.c does), a
`systemctl` that records the pihole-FTL restart, and a pihole.toml with `[misc] etc_dnsmasq_d`. Real
`netprov` subprocesses, the TrueNAS simulator, transport: local.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from truenas_sim import Simulator
from tests.support.cli_lab import create_parent, local_server_inventory, netprov

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs the real dnsmasq")

FIX = "sudo pihole-FTL --config misc.etc_dnsmasq_d true"


@pytest.fixture
def sim():
    with Simulator(profile="26") as s:
        create_parent(s)
        yield s


def _pihole(tmp: Path, sim: Simulator, n: int, *, etc_dnsmasq_d: str | None, extra: str = "") -> tuple[Path, dict]:
    bin_dir, log = tmp / "bin", tmp / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "pihole-FTL").write_text(f"""#!/bin/sh
echo "pihole-FTL $*" >> {log}
case "$1" in
  dnsmasq-test-file) exec dnsmasq --conf-file="$2" --test ;;
  --config) echo "stand-in: would set $2 = $3"; exit 0 ;;
esac
echo "pihole-FTL: invalid option -- '$1'"; exit 1
""")
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >> {log}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    toml = tmp / "pihole.toml"
    if etc_dnsmasq_d is not None:   # Pi-hole v6 layout (FTL writes every key, indented, with comments)
        toml.write_text("[dns]\n  etc_dnsmasq_d = true\n\n[misc]\n  # Should FTL load additional dnsmasq "
                        f"configuration files from /etc/dnsmasq.d/?\n  etc_dnsmasq_d = {etc_dnsmasq_d} "
                        "### CHANGED, default = false\n\n[misc.check]\n  load = true\n")
    inv = tmp / "inventory.yaml"
    inv.write_text(local_server_inventory(
        sim.url, tmp, server="pihole", server_keys=f"    flavor: pihole\n    pihole_toml: {toml}\n{extra}",
        machines=f'  ph{n}: {{mac: "52:54:00:10:00:{n:02x}", disk: {{size: 8G}}, pxe_server: pihole}}\n'))
    env = {**os.environ, "TEST_NAS_KEY": sim.api_key, "NO_COLOR": "1", "HOME": str(tmp),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return inv, env


def _nas_writes(sim: Simulator) -> list[str]:
    return sorted(m for m in sim.round_trips if m.endswith((".create", ".update", ".delete")) and
                  not m.startswith("pool.dataset.create"))


def test_drop_in_not_read_fails_the_plan_with_the_command_to_run(sim, tmp_path):
    inv, env = _pihole(tmp_path, sim, 1, etc_dnsmasq_d="false")
    before = _nas_writes(sim)
    for args in (("plan", str(inv)), ("apply", "--auto-approve", str(inv))):
        r = netprov(*args, env=env, cwd=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr
        assert "Pi-hole v6 does not read" in lines[0] and "misc.etc_dnsmasq_d is false" in lines[0], lines[0]
        assert FIX in lines[0] and "nothing was changed" in lines[0], lines[0]
    assert not (tmp_path / "pxe").exists() or not any(p.is_file() for p in (tmp_path / "pxe").rglob("*"))
    assert _nas_writes(sim) == before
    assert not (tmp_path / "calls.log").exists()      # no test, no restart


def test_drop_in_read_apply_pushes_and_runs_the_pihole_commands(sim, tmp_path):
    inv, env = _pihole(tmp_path, sim, 2, etc_dnsmasq_d="true")
    r = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].startswith("pihole-FTL dnsmasq-test-file "), calls      # validated by the real dnsmasq
    assert "systemctl restart pihole-FTL" in calls, calls
    conf = (tmp_path / "pxe" / "dnsmasq.d" / "netprov.conf").read_text()
    assert "tftp-root=" in conf
    r = netprov("plan", "--detailed-exitcode", str(inv), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr      # converged


def test_pihole_v5_layout_needs_no_toml_switch(sim, tmp_path):
    """No pihole.toml: Pi-hole v5, whose dnsmasq.conf always has conf-dir=/etc/dnsmasq.d."""
    inv, env = _pihole(tmp_path, sim, 3, etc_dnsmasq_d=None)
    r = netprov("plan", str(inv), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "etc_dnsmasq_d" not in r.stdout + r.stderr


@pytest.mark.parametrize("test_command", ["pihole-FTL-typo dnsmasq-test-file {conf}",
                                          "env pihole-FTL-typo dnsmasq-test-file {conf}"])
def test_a_test_command_that_is_not_there_says_not_found(sim, tmp_path, test_command):
    inv, env = _pihole(tmp_path, sim, 4 + len(test_command) % 7, etc_dnsmasq_d="true", extra=f"    test_command: \"{test_command}\"\n")
    r = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "not found" in out and "pihole-FTL-typo" in out and "rejected" not in out, out
    assert not (tmp_path / "pxe" / "dnsmasq.d" / "netprov.conf").exists()
