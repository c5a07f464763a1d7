"""The fault matrix harness (issue 10, item 10): worlds, one cell runner, and the checks after each cell.

A *world* is a simulated NAS (the real TrueNAS simulator, on loopback) plus a PXE server (a local
directory with ``transport: local``, or the same directory reached through a real sshd), holding the
*old generation*: inventory A applied. Each cell resets the world to that state, injects one fault
while ``netprov apply`` carries out inventory B, checks what the failed apply left, then reruns
``apply`` and ``plan --detailed-exitcode`` and checks that everything converged.

Scenario (A -> B), 4 machines in B:

    m1  unchanged (CHAP)           m2  new MAC and a bigger disk (zvol update + file moves)
    m3  removed (--allow-destroy)  m4  new (CHAP)      m5  new (UEFI)
    log_dhcp turned on: netprov.conf changes, so dnsmasq is restarted.

The checks read the simulator's state directly (no netprov code decides what is right) and the
files in the PXE roots; ``dnsmasq --test`` checks the live configuration.

Used by tests/faults/test_*.py (one named test per cell) and benchmarks/fault_matrix.py (the table).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

API_ENV = "FM_NAS_KEY"
# Distinctive CHAP secrets (12-16 characters): none may ever appear in netprov's output.
SECRETS = {"FM_S1": "fm1-Qz7Kp2Lw9x", "FM_S3": "fm3-Hv4Ty8Rn2c", "FM_S4": "fm4-Jd6Wm3Bs5v",
           "FM_A1": "fma1-Xc8Nq4Tz7", "FM_A2": "fma2-Pk3Vr9Gy2", "FM_B1": "fmb1-Lw5Hs7Qd4",
           "FM_B2": "fmb2-Rt2Mz6Kf8"}
INJECTED = "fault-matrix injected failure"
# What a real NAS says when a zvol is in use; rich markup must never eat it (issue 10 item 2).
INJECTED_MESSAGE = f"{INJECTED}: Device [/dev/zvol/tank/netboot/busy] is busy"
DNSMASQ = shutil.which("dnsmasq", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
IPXE_SOURCE = "/usr/lib/ipxe"
MIB = 2**20


@dataclass(frozen=True)
class MachineSpec:
    name: str
    mac: str
    size_mib: int = 16
    firmware: str = "bios"
    chap_env: str | None = None

    @property
    def secret(self) -> str | None:
        return SECRETS[self.chap_env] if self.chap_env else None

    @property
    def script(self) -> str:
        return "tftp/" + self.mac.lower().replace(":", "-") + ".ipxe"

    @property
    def host_file(self) -> str:
        return f"hosts/{self.name}.conf"


def machines(*specs: MachineSpec) -> dict[str, MachineSpec]:
    return {m.name: m for m in specs}


OLD = machines(MachineSpec("m1", "52:54:00:f0:00:01", chap_env="FM_S1"),
               MachineSpec("m2", "52:54:00:f0:00:02"),
               MachineSpec("m3", "52:54:00:f0:00:03", firmware="uefi", chap_env="FM_S3"))
NEW = machines(MachineSpec("m1", "52:54:00:f0:00:01", chap_env="FM_S1"),
               MachineSpec("m2", "52:54:00:f0:00:12", size_mib=32),
               MachineSpec("m4", "52:54:00:f0:00:04", chap_env="FM_S4"),
               MachineSpec("m5", "52:54:00:f0:00:05", firmware="uefi"))


@dataclass(frozen=True)
class StorageSpec:
    """One inventory's share of the NAS: its parent dataset, target prefix and machines."""

    parent: str
    prefix: str
    machines: dict[str, MachineSpec]
    basename: str = "iqn.2005-10.org.freenas.ctl"
    initiator_basename: str = "iqn.2010-04.org.ipxe"

    def zvol(self, m: str) -> str:
        return f"{self.parent}/{m}"

    def target(self, m: str) -> str:
        return f"{self.prefix}{m}"


# --------------------------------------------------------------------------------------- inventories

@dataclass(frozen=True)
class PxeConf:
    """Where the PXE server's roots are and how netprov reaches it."""

    base: Path                      # tftp/, dnsmasq.d/, hosts/ live under it
    lock_path: Path
    ssh: Any = None                 # a tests.support.sshd.SshServer, or None for transport: local
    test_command: str = ""
    reload_command: str = "true"
    restart_command: str = "true"


def default_test_command() -> str:
    return "dnsmasq --test --conf-file={conf}" if DNSMASQ else "true"


def inventory_text(url: str, pxe: PxeConf, ms: dict[str, MachineSpec], *, parent: str = "tank/netboot",
                   prefix: str = "", log_dhcp: bool = False, subnet: int = 99) -> str:
    if pxe.ssh is None:
        reach = "    transport: local\n    sudo: false\n"
    else:
        s = pxe.ssh
        reach = (f"    ssh: {{host: {s.host}, port: {s.port}, user: {s.user}, identity_file: {s.identity_file}, "
                 f"known_hosts: {s.known_hosts}, sudo: false}}\n")
    lines = []
    for m in ms.values():
        extra = f", firmware: {m.firmware}" if m.firmware != "bios" else ""
        extra += f", chap: {{secret_env: {m.chap_env}}}" if m.chap_env else ""
        lines.append(f"  {m.name}: {{mac: '{m.mac}', disk: {{size: {m.size_mib}M}}{extra}}}\n")
    prefix_line = f", target_prefix: {prefix}" if prefix else ""
    return f"""\
version: 1
storage:
  nas: {{url: '{url}', api_key_env: {API_ENV}, parent: {parent}, portal: 10.{subnet}.7.10{prefix_line}}}
pxe_servers:
  pxe:
{reach}    mode: dhcp
    interface: lo
    address: 10.{subnet}.7.5
    subnet: 10.{subnet}.7.0/24
    range: {{start: 10.{subnet}.7.100, end: 10.{subnet}.7.150}}
    log_dhcp: {str(log_dhcp).lower()}
    tftp_root: {pxe.base}/tftp
    dnsmasq_dir: {pxe.base}/dnsmasq.d
    hosts_dir: {pxe.base}/hosts
    ipxe: {{source: {IPXE_SOURCE if Path(IPXE_SOURCE, 'undionly.kpxe').exists() else 'null'}}}
    lock_path: {pxe.lock_path}
    test_command: "{pxe.test_command or default_test_command()}"
    reload_command: "{pxe.reload_command}"
    restart_command: "{pxe.restart_command}"
defaults: {{disk: {{size: 16M}}}}
machines:
{''.join(lines)}"""


# --------------------------------------------------------------------------------------- running netprov

@dataclass
class Run:
    """One netprov command: exit code and everything it printed."""

    args: tuple[str, ...]
    code: int | None
    out: str
    err: str
    traceback: str | None = None

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(api_key: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {API_ENV: api_key, "NO_COLOR": "1", **SECRETS}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(args: list[str] | tuple[str, ...], env: dict[str, str]) -> Run:
    """`netprov ARGS` in this process, exactly as the console script runs it (main(): errors -> exit codes).

    Anything main() lets escape is what a user would see as a traceback: it is recorded as one."""
    from netprov.cli import console
    from netprov.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    tb = None
    console.reset()
    try:
        with _environ(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - an escaped exception is a traceback on a terminal
                tb = traceback.format_exc()
                err.write(tb)
                code = 1
    finally:
        console.reset()
    return Run(tuple(args), code, out.getvalue(), err.getvalue(), tb)


def subprocess_env(env: dict[str, str], home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH")}
    return {**keep, "HOME": str(home), **env}


# --------------------------------------------------------------------------------------- the world

class World:
    """A simulator + a PXE directory holding generation A (``old``; none: an empty NAS and no files),
    resettable between cells; ``new`` is what the cells apply. Several worlds may share one simulator
    (``sim``: two inventories on one NAS), each with its own parent, target prefix and PXE directory."""

    def __init__(self, base: Path, profile: str = "25.04", *, ssh=None, hook: Path | None = None,
                 old: dict[str, MachineSpec] | None = OLD, new: dict[str, MachineSpec] = NEW,
                 parent: str = "tank/netboot", prefix: str = "", sim=None, test_command: str | None = None,
                 subnet: int = 99, reference: bool = True) -> None:
        from truenas_sim import Simulator

        self.base = Path(base)
        self.profile = profile
        self.base.mkdir(parents=True, exist_ok=True)
        self.pxe_dir = self.base / "pxe"
        hook_cmd = f"{hook} " if hook else ""
        self.pxe = PxeConf(self.pxe_dir, self.base / "netprov.lock", ssh,
                           test_command=test_command or (hook_cmd + ("test " if hook else "") + default_test_command()),
                           reload_command=hook_cmd + ("activate " if hook else "") + "true",
                           restart_command=hook_cmd + ("activate " if hook else "") + "true")
        self.own_sim = sim is None
        self.sim = sim or Simulator(profile=profile).start()
        # Every cell logs in several times from 127.0.0.1: the 24.10+ per-IP limit on unauthenticated
        # calls (20 a minute) is not what this matrix is about.
        self.sim.knobs.rate_limit = False
        self.env = cli_env(self.sim.api_key)
        self.old_ms, self.new_ms = dict(old or {}), dict(new)
        self.storage = StorageSpec(parent, prefix, self.new_ms)
        self.inv_old = self.base / "old.yaml"
        self.inv_new = self.base / "new.yaml"
        self.inv_old.write_text(inventory_text(self.sim.url, self.pxe, self.old_ms, parent=parent, prefix=prefix,
                                               subnet=subnet))
        self.inv_new.write_text(inventory_text(self.sim.url, self.pxe, self.new_ms, parent=parent, prefix=prefix,
                                               log_dhcp=bool(self.old_ms), subnet=subnet))
        self._create_parent(parent)
        if self.old_ms:
            applied = self.cli("apply", "--auto-approve", str(self.inv_old))
            if applied.code != 0:
                raise RuntimeError(f"setting up generation A failed:\n{applied.err[-3000:]}")
        self.state_a = self.sim.dump_state()
        self.files_a = read_tree(self.pxe_dir)
        self.tree_a = snapshot_tree(self.pxe_dir)
        self.rerun_memo: dict[str, tuple] = {}
        self.calls = 0
        self.call_log: list[str] = []
        self.files_b: dict[str, bytes] = {}
        if reference:
            # The reference run: a clean apply of B from A, counting the NAS calls it makes.
            self.reset()
            n0 = len(self.sim_log())
            clean = self.apply_new()
            self.call_log = self.sim_log()[n0:]
            self.calls = len(self.call_log)
            if clean.code != 0:
                raise RuntimeError(f"the clean apply of B failed:\n{clean.err[-3000:]}")
            self.files_b = read_tree(self.pxe_dir)
            self.reset()

    def sim_log(self) -> list[str]:
        """Every NAS call the simulator received so far, by method (call n is [n - 1])."""
        sim = self.sim
        if not hasattr(sim, "fm_calls"):
            sim.fm_calls = []
            count = sim._count_call

            def recording(method, _count=count, _log=sim.fm_calls):
                _log.append(str(method))
                return _count(method)
            sim._count_call = recording
        return list(sim.fm_calls)

    # -- helpers ---------------------------------------------------------------------------------
    def _create_parent(self, name: str) -> None:
        from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
        with TrueNASClient.connect(self.sim.url, Credentials(api_key=self.sim.api_key)) as c:
            c.call("pool.dataset.create", {"name": name, "type": "FILESYSTEM"})

    def cli(self, *args: str) -> Run:
        return cli(args, self.env)

    def apply_new(self, *, quiet: bool = False) -> Run:
        return self.cli(*(["-q"] if quiet else []), "apply", "--auto-approve", "--allow-destroy", str(self.inv_new))

    def clear_faults(self) -> None:
        k = self.sim.knobs
        k.fail_call = None
        k.drop_at = None
        k.lose_reply_at = None
        k.latency = 0.0

    def reset(self) -> None:
        """Back to generation A: the NAS state, the PXE files, no lock, no fault."""
        self.clear_faults()
        self.sim.nas.load(self.state_a)
        stamp_kept_zvols(self.sim, self.kept_zvols())
        restore_tree(self.pxe_dir, self.tree_a)
        for p in (self.pxe.lock_path, Path(str(self.pxe.lock_path) + ".pending")):
            p.unlink(missing_ok=True)

    def kept_zvols(self) -> list[str]:
        return [self.storage.zvol(m) for m in self.new_ms if m in self.old_ms]

    def close(self) -> None:
        if self.own_sim:
            self.sim.stop()


def stamp_kept_zvols(sim, zvols: list[str]) -> None:
    """Give each zvol that must survive a sentinel creation time: a destroyed-and-recreated zvol (its data
    lost) gets a new one."""
    with sim.nas.lock:
        for i, z in enumerate(zvols):
            if z in sim.nas.datasets:
                sim.nas.datasets[z]["creation"] = 1_000_000 + i


def lost_zvols(sim, zvols: list[str]) -> list[str]:
    out = []
    with sim.nas.lock:
        for i, z in enumerate(zvols):
            d = sim.nas.datasets.get(z)
            if d is None:
                out.append(f"{z} was destroyed")
            elif d.get("creation") != 1_000_000 + i:
                out.append(f"{z} was destroyed and re-created (its data is gone)")
    return out


# --------------------------------------------------------------------------------------- files

def read_tree(base: Path) -> dict[str, bytes]:
    """Every live file under the PXE roots (netprov's dot-prefixed temporaries are never live)."""
    out = {}
    if not base.exists():
        return out
    for p in sorted(base.rglob("*")):
        if p.is_file() and not p.name.startswith(".netprov."):
            out[str(p.relative_to(base))] = p.read_bytes()
    return out


def snapshot_tree(base: Path) -> dict[str, tuple[bytes, int, int]]:
    """Everything under ``base`` (temporaries too): bytes, mode, group."""
    out = {}
    for p in sorted(base.rglob("*")) if base.exists() else []:
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(base))] = (p.read_bytes(), st.st_mode & 0o7777, st.st_gid)
    return out


def restore_tree(base: Path, snap: dict[str, tuple[bytes, int, int]]) -> None:
    shutil.rmtree(base, ignore_errors=True)
    for rel, (data, mode, gid) in snap.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chown(p, -1, gid)
        p.chmod(mode)


def temporaries(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob(".netprov.*")) if base.exists() else []


_ROOT_RE = re.compile(r"^set netprov-root iscsi:[^:]*:[^:]*:[^:]*:[^:]*:(\S+)$", re.M)
_USER_RE = re.compile(r"^set username (\S+)$", re.M)
_PASS_RE = re.compile(r"^set password (\S+)$", re.M)
_IQN_RE = re.compile(r"^set initiator-iqn (\S+)$", re.M)


def machine_paths(m: MachineSpec) -> tuple[str, str]:
    return m.host_file, m.script


def machine_generation(live: dict[str, bytes], old: dict[str, bytes], new: dict[str, bytes], name: str,
                       old_m: MachineSpec | None, new_m: MachineSpec | None) -> str | None:
    """Which generation machine ``name``'s boot files are: "old", "new", or None (a mix)."""
    paths = set()
    for m in (old_m, new_m):
        if m is not None:
            paths.update(machine_paths(m))
    mine = {p: live.get(p) for p in paths}
    if mine == {p: old.get(p) for p in paths}:
        return "old"
    if mine == {p: new.get(p) for p in paths}:
        return "new"
    return None


def pxe_problems(world_files: tuple[dict, dict], live: dict[str, bytes], old_ms: dict[str, MachineSpec],
                 new_ms: dict[str, MachineSpec], nas: dict, spec: StorageSpec, *,
                 complete_new: set[str]) -> tuple[list[str], dict[str, str]]:
    """DHCP serves one complete generation per machine and one set of shared files; every live script
    boots a target that exists; a machine whose storage is not done keeps its old files."""
    old, new = world_files
    problems: list[str] = []
    gens: dict[str, str] = {}
    per_machine = set()
    for name in sorted(set(old_ms) | set(new_ms)):
        om, nm = old_ms.get(name), new_ms.get(name)
        for m in (om, nm):
            if m is not None:
                per_machine.update(machine_paths(m))
        g = machine_generation(live, old, new, name, om, nm)
        if g is None:
            problems.append(f"{name}: boot files are a mix of generations "
                            f"({', '.join(sorted(p for m in (om, nm) if m for p in machine_paths(m)))})")
            continue
        gens[name] = g
        if g == "new" and nm is not None and name not in complete_new:
            problems.append(f"{name}: its storage is not complete but its new boot files were pushed")
    for rel in sorted((set(old) | set(new) | set(live)) - per_machine):
        if live.get(rel) not in (old.get(rel), new.get(rel)):
            what = "appeared" if rel not in old and rel not in new else "is neither the old nor the new version"
            problems.append(f"pxe file {rel} {what}")
    problems += live_config_problems(live, nas, spec)
    return problems, gens


def live_config_problems(live: dict[str, bytes], nas: dict, spec: StorageSpec) -> list[str]:
    """Every host line's script exists; every script boots an existing, complete target that accepts
    its credentials; `dnsmasq --test` passes on the live configuration."""
    problems: list[str] = []
    for rel, data in live.items():
        if rel.startswith("hosts/"):
            for line in data.decode(errors="replace").splitlines():
                if line.strip() and not line.startswith("#"):
                    mac = line.split(",", 1)[0].strip().lower()
                    script = "tftp/" + mac.replace(":", "-") + ".ipxe"
                    if script not in live:
                        problems.append(f"{rel} names {mac} but {script} does not exist")
        if rel.startswith("tftp/") and rel.endswith(".ipxe") and rel.count("/") == 1:
            text = data.decode(errors="replace")
            m = _ROOT_RE.search(text)
            if m is None:
                continue
            problems += [f"{rel}: {p}" for p in script_target_problems(text, m.group(1), nas, spec)]
    return problems + dnsmasq_test(live)


def script_target_problems(text: str, iqn: str, nas: dict, spec: StorageSpec) -> list[str]:
    tables = nas["tables"]
    name = iqn.split(":", 1)[1] if ":" in iqn else iqn
    targets = [t for t in tables["target"] if t["name"] == name]
    if len(targets) != 1:
        return [f"boots target {name}, which exists {len(targets)} times on the NAS"]
    t = targets[0]
    out = []
    maps = [te for te in tables["targetextent"] if te["target"] == t["id"]]
    ext_ids = {te["extent"] for te in maps}
    extents = [e for e in tables["extent"] if e["id"] in ext_ids]
    if not extents or not all(e["path"].removeprefix("zvol/") in nas["datasets"] for e in extents):
        out.append(f"target {name} has no disk behind it")
    user, pw, ini = _USER_RE.search(text), _PASS_RE.search(text), _IQN_RE.search(text)
    groups = t.get("groups") or []
    if user and pw:
        tags = {g.get("auth") for g in groups if g.get("authmethod") == "CHAP"}
        rows = [a for a in tables["auth"] if a["tag"] in tags]
        if not any(a["user"] == user.group(1) and a["secret"] == pw.group(1) for a in rows):
            out.append(f"target {name} does not accept the script's CHAP credentials")
    if ini:
        gids = {g.get("initiator") for g in groups}
        allowed = [i for i in tables["initiator"] if i["id"] in gids]
        if not any(ini.group(1) in (i.get("initiators") or []) or not i.get("initiators") for i in allowed):
            out.append(f"target {name} does not admit initiator {ini.group(1)}")
    return out


def dnsmasq_test(live: dict[str, bytes]) -> list[str]:
    """`dnsmasq --test` over the live drop-ins plus every live host line (hostsdir isn't read by --test)."""
    if DNSMASQ is None:
        return []
    with tempfile.TemporaryDirectory(prefix="fm-dnsmasq-") as d:
        lines = []
        for rel, data in sorted(live.items()):
            if rel.startswith("dnsmasq.d/") and rel.endswith(".conf") and not Path(rel).name.startswith("."):
                p = Path(d, Path(rel).name)
                p.write_bytes(data)
                lines.append(f"conf-file={p}")
            elif rel.startswith("hosts/") and not Path(rel).name.startswith("."):
                for ln in data.decode(errors="replace").splitlines():
                    if ln.strip() and not ln.lstrip().startswith("#"):
                        lines.append(f"dhcp-host={ln.strip()}")
        if not any(ln.startswith("conf-file=") for ln in lines):
            return []
        conf = Path(d, "test.conf")
        conf.write_text("\n".join(lines) + "\n")
        r = subprocess.run([DNSMASQ, "--test", f"--conf-file={conf}"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            return [f"dnsmasq --test fails on the live config: {(r.stdout + r.stderr).strip()[:300]}"]
    return []


# --------------------------------------------------------------------------------------- the NAS

def nas_state(sim) -> dict:
    return sim.dump_state()


def credential_problems(nas: dict, specs: list[StorageSpec]) -> list[str]:
    """Never: two targets sharing an auth tag, or a target whose auth group holds another machine's
    credential (anytime, also right after a fault)."""
    tables = nas["tables"]
    owner = {}
    for spec in specs:
        for m in spec.machines.values():
            owner[spec.target(m.name)] = m
    by_tag: dict[Any, list[dict]] = {}
    for a in tables["auth"]:
        by_tag.setdefault(a["tag"], []).append(a)
    users = {}
    problems = []
    for t in tables["target"]:
        for g in t.get("groups") or []:
            if g.get("authmethod") != "CHAP" and g.get("auth") is None:
                continue
            tag = g.get("auth")
            users.setdefault(tag, []).append(t["name"])
            m = owner.get(t["name"])
            for a in by_tag.get(tag, []):
                if m is not None and (a["user"] != m.name or a["secret"] != m.secret):
                    problems.append(f"target {t['name']} accepts the credential of CHAP user {a['user']!r} "
                                    f"(auth tag {tag})")
    for tag, names in users.items():
        if len(names) > 1:
            problems.append(f"auth tag {tag} is shared by targets {', '.join(sorted(names))}")
    for tag, rows in by_tag.items():
        if len(rows) > 1:
            problems.append(f"{len(rows)} auth rows share tag {tag} (users "
                            f"{', '.join(sorted(r['user'] for r in rows))})")
    return problems


def converged_problems(nas: dict, specs: list[StorageSpec]) -> list[str]:
    """After a rerun: exactly one of each object per machine, nothing else (no duplicate, no orphan)."""
    t = nas["tables"]
    problems = credential_problems(nas, specs)
    want_zvols = {s.zvol(m) for s in specs for m in s.machines}
    parents = {s.parent for s in specs}
    zvols = {n for n, d in nas["datasets"].items() if d.get("type") == "VOLUME"
             and any(n.startswith(p + "/") for p in parents)}
    # The net under a destroyed disk (ADR 0006) keeps it as <zvol>.netprov-retired-<stamp>: expected for a
    # removed machine, never for one that is kept (the scenario grows disks, it replaces none).
    retired = {n for n in zvols if ".netprov-retired-" in n}
    zvols -= retired
    wrongly_retired = sorted(n for n in retired if n.split(".netprov-retired-")[0] in want_zvols)
    if wrongly_retired:
        problems.append(f"zvols of kept machines were retired: {wrongly_retired}")
    if zvols != want_zvols:
        problems.append(f"zvols: extra {sorted(zvols - want_zvols)}, missing {sorted(want_zvols - zvols)}")

    def count(kind: str, rows: list, key) -> None:
        seen: dict = {}
        for r in rows:
            seen.setdefault(key(r), []).append(r)
        want = {(s.target(m) if kind in ("target", "extent") else s.zvol(m)) for s in specs for m in s.machines}
        for k, rs in sorted(seen.items(), key=lambda kv: str(kv[0])):
            if k not in want:
                problems.append(f"orphan {kind} {k!r} ({len(rs)})")
            elif len(rs) > 1:
                problems.append(f"duplicate {kind} {k!r} ({len(rs)})")
        for k in sorted(want - set(seen)):
            problems.append(f"missing {kind} {k!r}")

    count("extent", t["extent"], lambda e: e["name"])
    count("target", t["target"], lambda x: x["name"])
    # initiator groups: netprov marks each with its zvol in the comment
    count("initiator", t["initiator"],
          lambda i: (re.search(r"zvol=(\S+)", i.get("comment") or "") or [None, i.get("comment")])[1])
    listens: dict = {}
    for portal in t["portal"]:
        key = json.dumps(sorted((x.get("ip"), x.get("port")) for x in portal.get("listen") or []))
        listens.setdefault(key, []).append(portal["id"])
    problems += [f"duplicate portal listening on {k} ({len(ids)})" for k, ids in listens.items() if len(ids) > 1]
    ext_by_id = {e["id"]: e for e in t["extent"]}
    tgt_by_id = {x["id"]: x for x in t["target"]}
    maps: dict = {}
    for te in t["targetextent"]:
        tgt = tgt_by_id.get(te["target"])
        ext = ext_by_id.get(te["extent"])
        if tgt is None or ext is None:
            problems.append(f"orphan targetextent {te['id']} (target {te['target']}, extent {te['extent']})")
            continue
        maps.setdefault(tgt["name"], []).append(ext["name"])
    for s in specs:
        for m in s.machines:
            got = maps.get(s.target(m), [])
            if got != [s.target(m)]:
                problems.append(f"target {s.target(m)} maps extents {got}")
    chap = {s.target(m.name): m for s in specs for m in s.machines.values() if m.chap_env}
    used = {}
    for x in t["target"]:
        for g in x.get("groups") or []:
            if g.get("auth") is not None:
                used.setdefault(g["auth"], []).append(x["name"])
    for a in t["auth"]:
        if a["tag"] not in used:
            problems.append(f"orphan auth row {a['id']} (tag {a['tag']}, user {a['user']!r}): no target uses it")
    if len(t["auth"]) != len(chap):
        problems.append(f"{len(t['auth'])} auth rows for {len(chap)} CHAP machines")
    for name, m in chap.items():
        x = next((x for x in t["target"] if x["name"] == name), None)
        if x is not None and not any(g.get("authmethod") == "CHAP" and g.get("auth") is not None
                                     for g in x.get("groups") or []):
            problems.append(f"target {name} does not require CHAP")
    return problems


def storage_complete(nas: dict, spec: StorageSpec) -> set[str]:
    """The machines whose whole chain (zvol at its size, extent, initiator, auth, target, mapping) is on
    the NAS as ``spec`` wants it."""
    t = nas["tables"]
    done = set()
    for m in spec.machines.values():
        z = nas["datasets"].get(spec.zvol(m.name))
        if z is None or z.get("type") != "VOLUME" or int(z.get("volsize") or 0) < m.size_mib * MIB:
            continue
        exts = [e for e in t["extent"] if e["path"] == "zvol/" + spec.zvol(m.name)]
        tgts = [x for x in t["target"] if x["name"] == spec.target(m.name)]
        if len(exts) != 1 or len(tgts) != 1:
            continue
        if not any(te["target"] == tgts[0]["id"] and te["extent"] == exts[0]["id"] for te in t["targetextent"]):
            continue
        groups = tgts[0].get("groups") or []
        iqn = f"{spec.initiator_basename}:{m.name}"
        gids = {g.get("initiator") for g in groups}
        if not any(i["id"] in gids and iqn in (i.get("initiators") or []) for i in t["initiator"]):
            continue
        if m.chap_env:
            tags = {g.get("auth") for g in groups if g.get("authmethod") == "CHAP"}
            if not any(a["tag"] in tags and a["user"] == m.name and a["secret"] == m.secret for a in t["auth"]):
                continue
        done.add(m.name)
    return done


# --------------------------------------------------------------------------------------- output checks

_STATUS_PREFIXES = ("Done:", "Converged", "Nothing to do", "Plan:", "storage:", "pxe:")


def output_problems(run: Run, *, expect_code: tuple[int, ...] = (1,), must_mention: str | None = None,
                    api_key: str | None = None, one_line: bool = True) -> list[str]:
    """A failed command: exit non-zero, no traceback, it ends with its error: the last line is the error
    (``one_line``), or, for an error quoting a server's output (dnsmasq's complaint), nothing but that
    quote follows it."""
    problems = []
    if run.traceback or "Traceback (most recent call last)" in run.text:
        last = (run.traceback or run.text).strip().splitlines()[-1]
        problems.append(f"traceback: {last[:200]}")
    if run.code not in expect_code:
        problems.append(f"exit {run.code} (expected {' or '.join(map(str, expect_code))})")
    lines = [ln for ln in run.err.splitlines() if ln.strip()]
    errs = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
    if run.code != 0:
        if not errs:
            problems.append(f"no error line; last line: {lines[-1][:200] if lines else '(nothing)'}")
        elif lines and not lines[-1].startswith("error:"):
            after = lines[errs[-1] + 1:]
            bad = [ln for ln in after if ln.startswith(_STATUS_PREFIXES)]
            if bad:
                problems.append(f"output goes on after the error: {bad[-1][:200]}")
            elif one_line:
                problems.append(f"the last line is not the error (a multi-line message): {lines[-1][:200]}")
    if must_mention and must_mention not in "\n".join(lines[i] for i in errs):
        shown = lines[errs[-1]][:200] if errs else "(no error line)"
        problems.append(f"the injected failure is not reported (last error: {shown})")
    return problems + secret_problems(run, api_key)


def secret_problems(run: Run, api_key: str | None = None) -> list[str]:
    leaked = [k for k, v in SECRETS.items() if v in run.text]
    if api_key and api_key in run.text:
        leaked.append("the NAS API key")
    return [f"secret leaked in output of `{' '.join(run.args[:2])}`: {', '.join(leaked)}"] if leaked else []


# --------------------------------------------------------------------------------------- a cell

@dataclass
class CellResult:
    """What one cell observed. ``problems`` empty = the cell passes."""

    name: str
    fault_fired: bool = False
    problems: list[str] = field(default_factory=list)
    rerun_converged: bool = False
    lost: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    tracebacks: int = 0
    secrets_leaked: int = 0
    detail: str = ""          # the failed apply's last stderr line, for the report
    reused_rerun: str = ""    # the earlier cell whose rerun started from the very same state
    seconds: float = 0.0

    def add(self, where: str, problems: list[str]) -> None:
        self.problems += [f"{where}: {p}" for p in problems]

    def count_runs(self, *runs: Run, api_key: str | None = None) -> None:
        self.tracebacks += sum(1 for r in runs if r.traceback or "Traceback (most recent" in r.text)
        self.secrets_leaked += sum(1 for r in runs if secret_problems(r, api_key))

    def to_json(self) -> dict:
        return {"name": self.name, "fault_fired": self.fault_fired, "problems": self.problems,
                "rerun_converged": self.rerun_converged, "lost": self.lost, "orphans": self.orphans,
                "tracebacks": self.tracebacks, "secrets_leaked": self.secrets_leaked, "detail": self.detail,
                "reused_rerun": self.reused_rerun,
                "seconds": round(self.seconds, 3)}

    def message(self) -> str:
        return f"{self.name}: {len(self.problems)} problem(s)\n  " + "\n  ".join(self.problems) + (
            f"\n  (failed apply's last line: {self.detail})" if self.detail else "")


def check_after_fault(world: World, res: CellResult, failed: Run, *, must_mention: str | None = None,
                      expect_code: tuple[int, ...] = (1,), one_line: bool = True) -> None:
    res.detail = (failed.err.strip().splitlines() or [""])[-1][:300]
    res.count_runs(failed, api_key=world.sim.api_key)
    res.add("failed apply", output_problems(failed, expect_code=expect_code, must_mention=must_mention,
                                            api_key=world.sim.api_key, one_line=one_line))
    nas = nas_state(world.sim)
    res.add("NAS after the fault", credential_problems(nas, [world.storage]))
    live = read_tree(world.pxe_dir)
    probs, _ = pxe_problems((world.files_a, world.files_b), live, world.old_ms, world.new_ms, nas, world.storage,
                            complete_new=storage_complete(nas, world.storage))
    res.add("PXE after the fault", probs)
    res.lost += lost_zvols(world.sim, world.kept_zvols())


def state_key(world: World) -> str:
    """What a rerun starts from: the NAS (less random serials and creation times) and every file under the
    PXE directory (temporaries, modes and the pending-activation record too). netprov and the simulator
    are deterministic, so two cells that leave the same state get the same rerun."""
    import hashlib

    nas = world.sim.dump_state()
    for d in nas["datasets"].values():
        d.pop("creation", None)
    for e in nas["tables"].get("extent", []):
        e.pop("serial", None)
        e.pop("naa", None)
    key = {"nas": {k: nas[k] for k in ("datasets", "snapshots", "tables", "global", "services")},
           "files": {rel: [hashlib.sha256(b).hexdigest(), mode, gid]
                     for rel, (b, mode, gid) in snapshot_tree(world.pxe_dir).items()},
           "pending": Path(str(world.pxe.lock_path) + ".pending").exists()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def rerun_and_check(world: World, res: CellResult) -> None:
    """Rerun apply, then plan --detailed-exitcode; check the NAS and the files. A cell that left exactly
    the state an earlier cell left reuses that cell's rerun (same start, same deterministic run);
    NETPROV_FAULT_MATRIX_MEMO=0 reruns every time."""
    world.clear_faults()
    use_memo = os.environ.get("NETPROV_FAULT_MATRIX_MEMO", "1") != "0"
    key = state_key(world) if use_memo else None
    memo = world.rerun_memo.get(key) if key else None
    if memo is None:
        sub = CellResult(res.name)
        _rerun(world, sub)
        sub.lost = [x for x in lost_zvols(world.sim, world.kept_zvols()) if x not in res.lost]
        memo = (sub.problems, sub.orphans, sub.rerun_converged, sub.tracebacks, sub.secrets_leaked, sub.lost,
                res.name)
        if key:
            world.rerun_memo[key] = memo
    else:
        res.reused_rerun = memo[-1]
    problems, orphans, converged, tbs, leaks, lost, _ = memo
    res.problems += problems
    res.orphans += orphans
    res.rerun_converged = converged
    res.tracebacks += tbs
    res.secrets_leaked += leaks
    res.lost += lost
    if res.lost:
        res.add("data", res.lost)


def _rerun(world: World, res: CellResult) -> None:
    again = world.apply_new(quiet=True)
    plan = world.cli("plan", "--detailed-exitcode", str(world.inv_new))
    res.count_runs(again, plan, api_key=world.sim.api_key)
    if again.code != 0:
        res.add("rerun", [f"apply exited {again.code}: {(again.err.strip().splitlines() or [''])[-1][:300]}"])
    if plan.code != 0:
        res.add("rerun", [f"plan --detailed-exitcode exited {plan.code}"])
    for r in (again, plan):
        if r.traceback:
            res.add("rerun", [f"traceback: {r.traceback.strip().splitlines()[-1][:200]}"])
        res.add("rerun", secret_problems(r, world.sim.api_key))
    nas = nas_state(world.sim)
    conv = converged_problems(nas, [world.storage])
    res.orphans += [p for p in conv if p.startswith(("orphan", "duplicate")) or "share" in p]
    res.add("NAS after the rerun", conv)
    live = read_tree(world.pxe_dir)
    if live != world.files_b:
        diff = sorted(p for p in set(live) | set(world.files_b) if live.get(p) != world.files_b.get(p))
        res.add("PXE after the rerun", [f"files differ from generation B: {', '.join(diff[:6])}"])
    res.add("PXE after the rerun", dnsmasq_test(live))
    res.rerun_converged = again.code == 0 and plan.code == 0 and not conv


NAS_FAULTS = ("fail", "drop", "lose")


def nas_fault_cell(world: World, fault: str, k: int) -> CellResult:
    """NAS call ``k`` of ``apply`` (A -> B) fails / is never answered (connection dropped before it runs) /
    runs but its reply is lost (then the connection drops)."""
    t0 = time.monotonic()
    res = CellResult(f"nas-{world.profile}-{fault}-{k:02d}")
    world.reset()
    knobs = world.sim.knobs
    if fault == "fail":
        knobs.fail_call = (k, 16, INJECTED_MESSAGE)      # EBUSY
    elif fault == "drop":
        knobs.drop_at = k
    elif fault == "lose":
        knobs.lose_reply_at = k
    else:
        raise ValueError(fault)
    before = world.sim._calls_total
    failed = world.apply_new()
    made = world.sim._calls_total - before
    res.fault_fired = {"fail": knobs.fail_call is None, "drop": knobs.drop_at is None,
                       "lose": knobs.lose_reply_at is None}[fault]
    world.clear_faults()
    if not res.fault_fired:
        res.add("harness", [f"the fault was not injected: apply made only {made} NAS calls "
                            f"(the clean apply made {world.calls})"])
    check_after_fault(world, res, failed, must_mention=INJECTED if fault == "fail" else None)
    rerun_and_check(world, res)
    res.seconds = time.monotonic() - t0
    return res


def cell_report(results: list[CellResult]) -> dict[str, int]:
    """The issue's closing table."""
    return {
        "faults injected": sum(r.fault_fired for r in results),
        "reruns converged": sum(r.rerun_converged for r in results),
        "objects lost": sum(len(r.lost) for r in results),
        "orphans": sum(len(r.orphans) for r in results),
        "tracebacks": sum(r.tracebacks for r in results),
        "secrets leaked": sum(r.secrets_leaked for r in results),
    }


def save_results(path: Path, results: list[CellResult]) -> None:
    path.write_text(json.dumps([r.to_json() for r in results], indent=1))


if __name__ == "__main__":  # pragma: no cover - quick manual run: python -m tests.faults.matrix
    w = World(Path(tempfile.mkdtemp(prefix="fm-")), sys.argv[1] if len(sys.argv) > 1 else "25.04")
    print("clean apply of B:", w.calls, "NAS calls")
    w.close()
