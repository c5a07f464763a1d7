"""Every command, with distinctive secrets, and every byte it writes searched for them (issue 10, item 9).

The commands run as a user runs them (real subprocesses) against the TrueNAS simulator and a PXE
server that is a local directory (``transport: local``): validate, plan and its variants, apply
(a saved plan, --debug), state pull, render --out, demo, and failures on purpose: a bad secret, a
wrong API key, a NAS call that fails while a CHAP secret is rotated, a dnsmasq restart that fails
once (rolled back) and one that keeps failing (DHCP IS DOWN), both printing the scripts they see.

Then stdout, stderr and every file under the lab (work dir, HOME, TMPDIR, the PXE root, saved
plans, state files, the demo's directory) are searched for each secret, raw and encoded (base64 at
every alignment, hex, JSON and URL escaping). A CHAP secret may be only in the machine's own iPXE
script on the PXE server (0640), in ``render --out`` output (0600 here) and in the simulated NAS's
state (the demo's state file, 0600); an API key only in that state file. The sha256 of every script that
held a CHAP secret is searched for too: it may be only in a state snapshot (0600).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
from pathlib import Path

import pytest

from netprov.core.boot_render import script_name
from tests.support.cli_lab import FailOn, Result, create_parent, netprov

API_KEY = "1-Zq9ApiKeySweep0123456789abcdefXYZ"
CHAP1 = "Zq9Chap-m1-AAA"          # secret_env
CHAP1_NEW = "Zq9Chap-m1-NEW"      # the same machine's secret, rotated
CHAP2 = "Zq9Chap-m2-BBB"          # secret_file
BAD = "Zq9-bad#secret1"           # refused by validation ('#')
DEMO = "Zq9Demo-Chap-01"
MACS = {"m1": "52:54:00:60:00:01", "m2": "52:54:00:60:00:02"}


def encodings(secret: str) -> set[bytes]:
    raw = secret.encode()
    forms = {raw, raw.hex().encode(), raw.hex().upper().encode(), json.dumps(secret)[1:-1].encode(),
             urllib.parse.quote(secret, safe="").encode(), urllib.parse.quote_plus(secret).encode()}
    for k in range(3):           # base64 of the secret inside a longer stream, at each alignment
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            b = enc(b"\0" * k + raw)
            forms.add(b[4 if k else 0:-4])
    return {f for f in forms if len(f) >= 8}


def _inventory(url: str, lab: Path, *, range_end: int = 150, restart: str = "true") -> str:
    pxe = lab / "pxe"
    return f"""\
version: 1
storage:
  nas: {{url: {url}, api_key_env: NAS_KEY, parent: tank/netboot, portal: 10.99.5.10}}
pxe_servers:
  pxe:
    transport: local
    sudo: false
    lock_path: {lab}/netprov.lock
    mode: dhcp
    interface: lo
    address: 10.99.5.5
    subnet: 10.99.5.0/24
    range: {{start: 10.99.5.100, end: 10.99.5.{range_end}}}
    tftp_root: {pxe}/tftp
    dnsmasq_dir: {pxe}/dnsmasq.d
    hosts_dir: {pxe}/hosts
    ipxe: {{source: null}}
    test_command: "true"
    reload_command: "true"
    restart_command: '{restart}'
defaults: {{disk: {{size: 16M}}}}
machines:
  m1: {{mac: '{MACS["m1"]}', chap: {{secret_env: S1}}}}
  m2: {{mac: '{MACS["m2"]}', chap: {{secret_file: {lab}/secrets/m2}}}}
"""


@pytest.fixture
def lab(tmp_path):
    sim = FailOn(profile="25.04", api_key=API_KEY).start()
    create_parent(sim)
    for d in ("work", "home", "tmp", "secrets"):
        (tmp_path / d).mkdir()
    secret_file = tmp_path / "secrets/m2"
    secret_file.write_text(CHAP2 + "\n")
    secret_file.chmod(0o600)
    try:
        yield sim, tmp_path
    finally:
        sim.stop()


def test_no_command_leaks_a_secret(lab) -> None:
    sim, lab_dir = lab
    work, pxe = lab_dir / "work", lab_dir / "pxe"
    inv = work / "inventory.yaml"
    inv.write_text(_inventory(sim.url, lab_dir))
    env = {"PATH": os.environ["PATH"], "HOME": str(lab_dir / "home"), "TMPDIR": str(lab_dir / "tmp"),
           "LANG": "C.UTF-8", "NO_COLOR": "1", "NAS_KEY": API_KEY, "S1": CHAP1,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runs: list[tuple[list[str], Result]] = []

    def run(*args: str, code: int, **extra: str) -> Result:
        out = netprov(*args, env={**env, **extra}, cwd=work)
        runs.append((list(args), out))
        assert out.returncode == code, (args, out.output[-3000:])
        assert "Traceback" not in out.output or "--debug" in args, (args, out.output[-3000:])
        return out

    run("validate", str(inv), code=0)
    run("validate", str(inv), code=1, S1=BAD)
    run("plan", "--offline", str(inv), code=0)
    run("plan", "--offline", "--json", str(inv), code=0)
    run("plan", "--offline", "--detailed-exitcode", str(inv), code=2)
    run("-v", "plan", "--detailed-exitcode", str(inv), code=2)
    run("plan", "--json", str(inv), code=0)
    run("plan", "--out", str(work / "plan.json"), str(inv), code=0)
    run("--debug", "apply", str(work / "plan.json"), code=0)
    run("plan", "--detailed-exitcode", str(inv), code=0)
    run("state", "pull", str(inv), "--out", str(work / "state.json"), code=0)
    run("plan", "--state", str(work / "state.json"), "--json", str(inv), code=0)
    run("render", str(inv), "--out", str(work / "out"), code=0)
    run("render", str(inv), code=0)                                # into ./rendered
    run("apply", "--auto-approve", str(inv), code=1, NAS_KEY="1-wrongwrongwrongwrong")

    # Rotate m1's secret; the NAS fails the update (its message quoting what it was sent).
    sim.message, sim.method = f"auth update failed for secret {CHAP1_NEW}", "iscsi.auth.update"
    failed = run("--debug", "apply", "--auto-approve", str(inv), code=1, S1=CHAP1_NEW)
    assert sim.method is None, "the rotation must have reached the NAS: " + failed.output[-2000:]
    run("apply", "--auto-approve", str(inv), code=0, S1=CHAP1_NEW)

    # dnsmasq restarts that fail (a config change needs a restart); the command prints the scripts.
    show = f"cat {pxe}/tftp/*.ipxe"
    marker = lab_dir / "restarted-once"
    inv.write_text(_inventory(sim.url, lab_dir, range_end=140,
                              restart=f"{show}; [ -e {marker} ] || {{ touch {marker}; exit 1; }}"))
    rolled = run("apply", "--auto-approve", str(inv), code=1, S1=CHAP1_NEW)
    assert "rolled back" in rolled.stderr, rolled.stderr[-2000:]
    inv.write_text(_inventory(sim.url, lab_dir, range_end=130, restart=f"{show}; exit 1"))
    down = run("--debug", "apply", "--auto-approve", str(inv), code=1, S1=CHAP1_NEW)
    assert "DHCP IS DOWN" in down.stderr, down.stderr[-2000:]

    demo_dir = work / "demo"
    run("demo", "--workdir", str(demo_dir), code=0, NETPROV_DEMO_CHAP_SECRET=DEMO)
    demo_state = demo_dir / "truenas-state.json"
    demo_key = json.loads(demo_state.read_text())["api_keys"][0]["key"]
    assert demo_key and demo_key != API_KEY

    # --- where each secret may be ---------------------------------------------------------
    rendered_tftp = work / "rendered" / "pxe" / str(pxe / "tftp").lstrip("/")
    out_tftp = work / "out" / "pxe" / str(pxe / "tftp").lstrip("/")
    allowed: dict[Path, tuple[set[str], int]] = {
        pxe / "tftp" / script_name(MACS["m1"]): ({CHAP1, CHAP1_NEW}, 0o640),
        pxe / "tftp" / script_name(MACS["m2"]): ({CHAP2}, 0o640),
        rendered_tftp / script_name(MACS["m1"]): ({CHAP1}, 0o600),
        rendered_tftp / script_name(MACS["m2"]): ({CHAP2}, 0o600),
        out_tftp / script_name(MACS["m1"]): ({CHAP1}, 0o600),
        out_tftp / script_name(MACS["m2"]): ({CHAP2}, 0o600),
        demo_state: ({DEMO, demo_key}, 0o600),
        demo_dir / "chap-secret": ({DEMO}, 0o600),           # the demo inventory's secret_file, kept with its state
        lab_dir / "secrets/m2": ({CHAP2}, 0o600),          # the input itself
    }
    for path in (demo_dir / "pxe-server/srv/tftp").glob("*.ipxe"):
        if DEMO.encode() in path.read_bytes():
            allowed[path] = ({DEMO}, 0o640)
    secrets = {API_KEY, CHAP1, CHAP1_NEW, CHAP2, BAD, DEMO, demo_key}
    patterns = {s: encodings(s) for s in secrets}

    leaks = []
    for args, out in runs:
        data = (out.stdout + "\n" + out.stderr).encode()
        leaks += [f"`netprov {' '.join(args)}` output: {s} ({enc!r})"
                  for s, encs in patterns.items() for enc in encs if enc in data]
    files = [p for p in lab_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        ok, mode = allowed.get(path, (set(), None))
        found = {s for s, encs in patterns.items() for enc in encs if enc in data}
        leaks += [f"{path}: {s}" for s in sorted(found - ok)]
        if found and mode is not None and path.stat().st_mode & 0o777 != mode:
            leaks.append(f"{path}: mode {path.stat().st_mode & 0o777:04o}, not {mode:04o}")
    assert not leaks, "\n".join(leaks)

    # --- and the hash of every file that held a secret: the rest of such a file is known (inventory and
    # templates), so its sha256 would let anyone test guesses of the secret offline. Only the state
    # snapshot (0600, private like the secrets themselves) holds it: offline plans compare by it.
    secret_files = [p for d in (rendered_tftp, out_tftp, pxe / "tftp", demo_dir / "pxe-server/srv/tftp")
                    for p in d.glob("*.ipxe") if any(s.encode() in p.read_bytes() for s in secrets)]
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in secret_files}
    assert len(hashes) >= 4, hashes     # m1 with CHAP1 and CHAP1_NEW, m2, the demo's
    hashed = []
    for args, out in runs:
        hashed += [f"`netprov {' '.join(args)}` output: sha256 of {p}"
                   for h, p in hashes.items() if h in out.output]
    for path in files:
        data = path.read_bytes()
        if path in (work / "state.json", demo_dir / "state.json"):
            assert path.stat().st_mode & 0o777 == 0o600, path
            continue
        hashed += [f"{path}: sha256 of {p}" for h, p in hashes.items() if h.encode() in data]
    assert not hashed, "\n".join(hashed)
    # The places a secret must be are where the search looked.
    assert CHAP1_NEW.encode() in (pxe / "tftp" / script_name(MACS["m1"])).read_bytes()
    assert CHAP2.encode() in (rendered_tftp / script_name(MACS["m2"])).read_bytes()
    assert DEMO.encode() in demo_state.read_bytes()
    assert (demo_dir / "chap-secret").read_text().strip() == DEMO
