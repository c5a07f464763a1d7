"""A boot lab driven by `netprov apply`: the chain the e2e cases prove, as one object.

    world = NetprovWorld(workdir, mode="full").start()     # lab + sshd + TrueNAS simulator
    world.apply({"alpha": {"mac": "52:54:00:99:03:0a", "ip": "10.99.0.50"}})
    vm = world.lab.vm("alpha", "52:54:00:99:03:0a")
    world.boot_ok(vm)
    world.close()

* **netprov** runs as a user runs it: ``python -m netprov apply --auto-approve <inventory>`` in a
  subprocess, against the simulator (zvols, extents, initiator groups, CHAP, targets, LUN mappings)
  and the PXE server reached over SSH (a real sshd on 127.0.0.1 whose files ARE the lab's: the
  inventory's ``tftp_root`` / ``dnsmasq_dir`` / ``hosts_dir`` are the lab's :class:`PxeTree`). Its
  ``test_command`` is ``dnsmasq --test``, its ``restart_command`` / ``reload_command`` restart /
  SIGHUP the lab's real dnsmasq (:class:`tests.support.dnsmasq.Dnsmasq`). Nothing netprov writes
  is edited afterwards: a case that needs a "wrong" script gets it through a user-facing inventory
  feature (``extra.ipxe`` lines, a ``templates:`` override folder).
* **The storage side** is then served by tgtd through :mod:`tests.support.tgt_bridge`, reading the
  simulator with a *read-only* API key (``SHARING_ISCSI_READ``: CHAP secrets come back redacted, as
  on a real NAS) and taking the secrets from ``NETPROV_E2E_CHAP_<USER>``-style values
  (:func:`tests.support.tgt_bridge.secrets_from_env`) the test knows. The bridge is incremental, so
  a second apply leaves running machines' sessions alone.
* The inventory maps the disk at ``storage.lun: 1`` (tgt reserves LUN 0); every machine script
  netprov renders names LUN 1, and the bridge asserts the NAS mapped LUN 1.

Public API: :class:`NetprovWorld` (``start``, ``inventory_text``, ``apply``, ``boot_ok``,
``boot_fails``, ``script``, ``close``), :func:`target_iqn`, :func:`initiator_iqn`,
:func:`root_path` and the constants below.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import bootlab, tgt_bridge
from tests.support.bootlab import PxeTree
from tests.support.diskimage import MARKER_PREFIX, marker

NAS_BASENAME = "iqn.2005-10.org.freenas.ctl"   # the simulator's iscsi.global basename
INITIATOR_BASE = "iqn.2026-11.lab.netprov"
PARENT = "tank/netprov"
FAILED = r"netprov: FAILED to boot"
UNKNOWN = r"not in the inventory"
# iPXE's iSCSI login errors. A wrong CHAP secret: iPXE's EACCES/EPERM ("Permission denied",
# "Operation not permitted"); tgt refuses an initiator outside the target's ACL as if the target did not
# exist (login status "not found"), which iPXE reports as "No such device (2c0d603b)".
PERMISSION_ERROR = r"Operation not permitted|Permission denied|410d613c|0x430d6601"
REFUSED_ERROR = PERMISSION_ERROR + r"|No such device|2c0d603b"
BIOS_TIMEOUT = 90.0    # generous: several TCG VMs share 2 cores (alone a BIOS boot takes ~5 s)
UEFI_TIMEOUT = 150.0   # alone ~15 s under TCG


def _q(s: object) -> str:
    return json.dumps(str(s))  # a JSON string is a YAML double-quoted scalar


def target_iqn(machine: str) -> str:
    return f"{NAS_BASENAME}:{machine}"


def initiator_iqn(machine: str) -> str:
    return f"{INITIATOR_BASE}:{machine}"


def root_path(machine: str) -> str:
    """What netprov renders as ``netprov-root`` for ``machine`` (portal port 3260, LUN 1)."""
    return f"iscsi:{bootlab.SERVER_IP}:::1:{target_iqn(machine)}"


class NetprovWorld:
    """One lab (``mode`` ``full``: netprov's dnsmasq leases addresses; ``proxy``: a router's dnsmasq
    does, netprov's answers proxy-DHCP), one sshd, one TrueNAS simulator. Close it (idempotent)."""

    def __init__(self, workdir: Path | str, mode: str = "full", dnsmasq_extra: tuple[str, ...] = (),
                 http: bool = False):
        """``dnsmasq_extra``: lines for the lab-owned main file of the PXE server's dnsmasq (e.g.
        ``no-dhcpv4-interface=lan0``: it then serves TFTP only); ``http``: also run a web server in
        the server namespace (:attr:`http`, docroot ``<workdir>/www``) for the inventory's ``http``
        setting (:meth:`http_settings`)."""
        self.workdir = Path(workdir)
        self.mode = mode
        self.dnsmasq_extra = tuple(dnsmasq_extra)
        self.want_http = http
        self.http = None
        self.lab: bootlab.BootLab | None = None
        self.tree: PxeTree | None = None
        self.sshd = None
        self.sim = None
        self.env: dict[str, str] = {}
        self.secrets: dict[str, str] = {}     # CHAP user -> secret the NAS holds (what tgt wants)
        self.applies: list[str] = []          # netprov's output of each apply
        self.reports: list[tgt_bridge.BridgeReport] = []
        self._ro_key: str | None = None
        self._rpc = None

    # ---- setup ----------------------------------------------------------------------------
    def start(self) -> NetprovWorld:
        from netprov.adapters.truenas import rpc
        import truenas_sim as sim_mod
        from tests.support.sshd import SshServer

        self._rpc = rpc
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.lab = bootlab.BootLab(self.workdir / "lab", mode=self.mode).start()
            self.tree = PxeTree.create(self.lab.workdir / "pxe")
            # dnsmasq on an empty drop-in dir: netprov's first apply writes netprov.conf and restarts it.
            self.lab.serve(self.tree, targets=[], extra_lines=self.dnsmasq_extra)
            if self.want_http:
                from tests.support.httpd import Httpd

                www = self.lab.workdir / "www"
                (www / "netprov").mkdir(parents=True, exist_ok=True)
                www.chmod(0o755)
                (www / "netprov").chmod(0o755)
                self.http = Httpd.start(self.lab.ns_srv, bootlab.SERVER_IP, www, self.lab.workdir / "httpd")
            self.sshd = self._start_sshd(SshServer)
            self.sim = sim_mod.Simulator(profile="25.04").start()
            with rpc.TrueNASClient.connect(self.sim.url, rpc.Credentials(api_key=self.sim.api_key)) as c:
                c.call("pool.dataset.create", {"name": PARENT, "type": "FILESYSTEM"})
            # The bridge reads with a read-only key, like a monitoring user: secrets come back redacted.
            self._ro_key = self.sim.add_api_key(roles=["SHARING_ISCSI_READ"])
            self.env = {**os.environ, "E2E_NAS_KEY": self.sim.api_key, "NO_COLOR": "1",
                        "HOME": str(self.workdir)}
        except BaseException:
            self.close()
            raise
        return self

    def _start_sshd(self, server_cls, attempts: int = 3):
        """sshd on a free loopback port, checked to be OURS: ``free_port()`` closes its probe
        socket before sshd binds, so on a busy machine another test's sshd can take the port in
        between, answer the readiness probe with its own banner, and make `netprov apply` fail
        on a host-key mismatch. A key-authenticated ``ssh ... true`` with this server's
        known_hosts proves who answers; otherwise start again."""
        last = ""
        for n in range(attempts):
            srv = server_cls.start(self.workdir / f"sshd{n or ''}")
            r = subprocess.run(
                ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={srv.known_hosts}",
                 "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", "-i", srv.identity_file,
                 "-p", str(srv.port), f"{srv.user}@127.0.0.1", "true"],
                check=False, capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(self.workdir)})
            if r.returncode == 0:
                return srv
            last = r.stderr.strip()
            srv.stop()
        raise RuntimeError(f"could not start a private sshd on loopback: {last}")

    def close(self) -> None:
        """Stop the simulator, sshd and the lab (every process by its PID, every namespace deleted).
        The closed lab stays readable (logs) for post-mortems."""
        for stop in (self.sim and self.sim.stop, self.sshd and self.sshd.stop, self.http and self.http.stop,
                     self.lab and self.lab.close):
            if stop:
                try:
                    stop()
                except Exception:  # noqa: BLE001, S110 - cleanup goes on whatever failed
                    pass
        self.sim = self.sshd = None

    def http_settings(self) -> dict:
        """The inventory's ``pxe_servers.pxe.http`` for this world's web server: scripts go to
        ``<docroot>/netprov``, machines fetch them from ``http://<server>/netprov``."""
        assert self.http is not None, "NetprovWorld(..., http=True)"
        return {"root": str(self.http.docroot / "netprov"), "base_url": f"{self.http.url}/netprov"}

    # ---- netprov --------------------------------------------------------------------------
    def inventory_text(self, machines: dict[str, dict], *, templates: str | None = None,
                       server: dict | None = None) -> str:
        """The e2e inventory. ``machines``: name -> MachineSpec fields (JSON-able; ``chap`` may be
        ``{"secret": "..."}``, turned into ``secret_env`` + an environment variable);
        ``server``: extra/overriding pxe_servers.pxe fields."""
        assert self.lab is not None and self.tree is not None and self.sshd is not None
        dm, tree, sshd = self.lab.dnsmasq, self.tree, self.sshd
        pxe: dict = {
            "ssh": {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                    "identity_file": sshd.identity_file, "known_hosts": sshd.known_hosts, "sudo": False},
            "mode": "dhcp" if self.mode == "full" else "proxy",
            "interface": bootlab.SERVER_IF,
            "address": bootlab.SERVER_IP,
            "subnet": f"{bootlab.SUBNET}.0/24",
            "tftp_root": str(tree.tftp_root),
            "dnsmasq_dir": str(tree.conf_dir),
            "hosts_dir": str(tree.hosts_dir),
            "ipxe": {"source": str(bootlab.IPXE_DIR)},
            "log_dhcp": True,
            "unknown": "exit",
            "on_failure": "exit",
            "sanboot_attempts": 2,
            "retry_delay": 1,
            "test_command": "dnsmasq --test --conf-file={conf}",
            "reload_command": dm.reload_command,
            "restart_command": dm.restart_command,
            # One lock per world: every world's "PXE server" is this host, and the default
            # /run/lock/netprov.lock would make applies of concurrent worlds (another test run,
            # another worktree) refuse each other ("another netprov apply holds the lock").
            "lock_path": str(self.workdir / "netprov.lock"),
        }
        if self.mode == "full":
            pxe["range"] = {"start": bootlab.DHCP_RANGE[0], "end": bootlab.DHCP_RANGE[1]}
        pxe.update(server or {})
        specs = {}
        for name, spec in machines.items():
            spec = dict(spec)
            chap = spec.get("chap")
            if isinstance(chap, dict) and "secret" in chap:
                var = f"E2E_CHAP_{name.upper()}"
                self.env[var] = chap["secret"]
                self.secrets[chap.get("username", name)] = chap["secret"]
                spec["chap"] = {**{k: v for k, v in chap.items() if k != "secret"}, "secret_env": var}
            specs[name] = spec
        inv = {
            "version": 1,
            "storage": {"nas": {
                "url": self.sim.url, "api_key_env": "E2E_NAS_KEY", "parent": PARENT,
                "portal": f"{bootlab.SERVER_IP}:3260", "initiator_basename": INITIATOR_BASE, "lun": 1}},
            "pxe_servers": {"pxe": pxe},
            "defaults": {"storage": "nas", "pxe_server": "pxe", "disk": {"size": "16M"}},
            "machines": specs,
        }
        if templates is not None:
            inv["templates"] = templates
        return json.dumps(inv, indent=2) + "\n"  # JSON is YAML

    def apply(self, machines: dict[str, dict], *, templates: str | None = None,
              server: dict | None = None) -> str:
        """Write the inventory, run ``netprov apply --auto-approve`` (must succeed), bridge the
        NAS's new state to tgtd. Returns netprov's output."""
        assert self.lab is not None and self.sim is not None
        n = len(self.applies) + 1
        inv = self.workdir / "inventory.yaml"
        inv.write_text(self.inventory_text(machines, templates=templates, server=server))
        (self.workdir / f"inventory-{n}.yaml").write_text(inv.read_text())
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "netprov", "apply", "--auto-approve", str(inv)],
                           check=False, capture_output=True, text=True, env=self.env, cwd=self.workdir,
                           timeout=180)
        out = r.stdout + r.stderr
        (self.workdir / f"apply-{n}.log").write_text(out)
        assert r.returncode == 0, f"netprov apply #{n} failed ({r.returncode}):\n{out}"
        self.applies.append(out)
        rpc = self._rpc
        with rpc.TrueNASClient.connect(self.sim.url, rpc.Credentials(api_key=self._ro_key)) as c:
            state = tgt_bridge.nas_state(c)
        # As on a real NAS, a read-only key sees CHAP secrets redacted: tgt gets them from the test.
        assert all(a["secret"] == tgt_bridge.REDACTED for a in state["auths"]), state["auths"]
        env = {f"NETPROV_E2E_CHAP_{re.sub(r'[^A-Z0-9]', '_', u.upper())}": s for u, s in self.secrets.items()}
        report = tgt_bridge.configure(self.lab.tgt, state, self.workdir / "zvols",
                                      secrets=tgt_bridge.secrets_from_env(environ=env))
        self.reports.append(report)
        assert report.luns and all(lun.tgt_lun == 1 and lun.nas_lunid == 1 for lun in report.luns), report.luns
        print(f"apply #{n}: netprov {time.monotonic() - t0:.1f}s (incl. bridge); tgt {report.sync}")
        return out

    def script(self, mac: str) -> str:
        """The machine script netprov pushed for ``mac`` (read, never edited)."""
        assert self.tree is not None
        return (self.tree.tftp_root / f"{mac.lower().replace(':', '-')}.ipxe").read_text()

    # ---- booting --------------------------------------------------------------------------
    @staticmethod
    def boot_ok(vm, timeout: float | None = None) -> float:
        """Wait for the disk's marker (failing fast on netprov's failure / unknown messages)."""
        timeout = timeout or (UEFI_TIMEOUT if vm.firmware.startswith("uefi") else BIOS_TIMEOUT)
        if not hasattr(vm, "booted_in"):
            vm.wait_for(re.escape(marker(vm.name)), fail=[FAILED, UNKNOWN], timeout=timeout)
            vm.booted_in = vm.elapsed()
            print(f"{vm.name} ({vm.firmware}, {vm.lab.mode}) booted in {vm.booted_in:.1f}s")
        return vm.booted_in

    @staticmethod
    def boot_fails(vm, timeout: float | None = None) -> str:
        """Wait for netprov's readable failure message (failing fast if any disk boots); return
        the serial text."""
        timeout = timeout or (UEFI_TIMEOUT if vm.firmware.startswith("uefi") else BIOS_TIMEOUT)
        vm.wait_for(f"{FAILED} {re.escape(vm.name)}", fail=[re.escape(MARKER_PREFIX)], timeout=timeout)
        return vm.serial_text()
