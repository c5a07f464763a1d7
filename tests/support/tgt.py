"""A private tgtd (Linux SCSI target framework) standing in for TrueNAS's iSCSI target.

tgtd runs in the lab's server namespace, listening only on the portal address given, with its
management socket under the lab's work directory (``TGT_IPC_SOCKET`` + a private control port),
so it never talks to (or is confused with) a host tgtd from the ``tgt`` package.

Mapping used by :meth:`Tgtd.configure`, one :class:`Target` per iSCSI target:

* target IQN -> ``tgtadm --op new --mode target --targetname IQN``;
* the disk -> a logical unit backed by an image file (``extra_luns`` for more). **tgt reserves LUN 0
  for its controller**, so the disk is LUN 1 (iPXE URI ``iscsi:<ip>:::1:<iqn>``); TrueNAS would put
  it at LUN 0; ``readonly`` -> ``--params readonly=1``;
* allowed initiators -> ``--op bind --initiator-name IQN`` for each. tgt admits a login when the
  address ACL *or* the name ACL matches, and an empty address ACL matches nobody, so a target with
  names gets no address binding at all; an empty tuple means "any initiator" (TrueNAS: a target
  without an initiator group, or a group with no names) and binds ``--initiator-address ALL``;
* CHAP -> an account (``--mode account --op new``) bound to the target (``extra_accounts`` for
  more); ``mutual`` adds an outgoing account (``--outgoing``) for mutual CHAP. Accounts are global
  in tgtd: the same user bound to two targets has one secret (the last one given).

tgtd ignores SIGTERM: :meth:`Tgtd.stop` deletes the targets, then ``--mode system --op delete``,
and SIGKILLs the PID if it is still there after that.

Changing a running tgtd: :meth:`Tgtd.configure` replaces everything (every session drops);
:meth:`Tgtd.sync` is incremental, like a NAS applying a config change: a target whose
:class:`Target` value is unchanged is left alone (its logged-in sessions stay), a changed one is
deleted and re-created, a new one added, a vanished one deleted. An account whose secret is
unchanged is reused, not re-created (re-creating a tgt account unbinds it from every target).

Public API: :class:`Target`, :class:`Tgtd` (``start``, ``configure``, ``sync``, ``add_target``,
``remove_target``, ``targets``, ``show``, ``connected_initiators``, ``log_text``, ``stop``),
:class:`SyncResult`, :func:`missing`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def missing() -> list[str]:
    """Binaries this module needs that are not installed."""
    return [b for b in ("tgtd", "tgtadm") if shutil.which(b) is None]


@dataclass(frozen=True)
class Target:
    """One iSCSI target as the lab's tgtd should serve it."""

    iqn: str
    backing: Path
    lun: int = 1
    initiators: tuple[str, ...] = ()           # empty: any initiator
    chap: tuple[str, str] | None = None        # (user, secret): forward (incoming) CHAP
    mutual: tuple[str, str] | None = None      # (user, secret): the target's own (outgoing) CHAP
    readonly: bool = False
    extra_luns: tuple[tuple[int, Path, bool], ...] = ()    # more (lun, backing, readonly) on this target
    extra_accounts: tuple[tuple[str, str], ...] = ()       # more incoming CHAP accounts


class TgtError(RuntimeError):
    pass


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`Tgtd.sync` did, by target IQN."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


class Tgtd:
    """A tgtd process in network namespace ``netns`` (None: the current one)."""

    def __init__(self, workdir: Path, portal_ip: str, netns: str | None = None, port: int = 3260):
        self.workdir = Path(workdir)
        self.portal_ip = portal_ip
        self.port = port
        self.netns = netns
        self.control_port = 2000 + (os.getpid() * 7 + id(self) // 16) % 30000  # tgtd accepts up to 32767
        self.sock_prefix = str(self.workdir / "tgtd.sock")
        self.log_path = self.workdir / "tgtd.log"
        self.proc: subprocess.Popen | None = None
        self._tids: dict[str, int] = {}
        self._targets: dict[str, Target] = {}
        self._accounts: dict[str, str] = {}  # user -> secret
        self._next_tid = 1

    # ---- process ------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        return {**os.environ, "TGT_IPC_SOCKET": self.sock_prefix}

    def _ns(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self, timeout: float = 10.0) -> Tgtd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._ns(), "tgtd", "-f", "-C", str(self.control_port),
                 "--iscsi", f"portal={self.portal_ip}:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TgtError(f"tgtd exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            r = subprocess.run(self._adm("--mode", "system", "--op", "show"), check=False,
                               capture_output=True, text=True, env=self._env())
            if r.returncode == 0:
                return self
            time.sleep(0.05)
        raise TgtError(f"tgtd did not answer on its management socket: {self.log_text()[-2000:]}")

    def _adm(self, *args: str) -> list[str]:
        return ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args]

    def adm(self, *args: str, check: bool = True) -> str:
        """Run one ``tgtadm`` command against this tgtd; return its stdout."""
        r = subprocess.run(self._adm(*args), check=False, capture_output=True, text=True, env=self._env())
        if check and r.returncode != 0:
            raise TgtError(f"tgtadm {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Delete all targets, ask tgtd to exit, SIGKILL it if needed. Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for iqn in list(self._tids):
                try:
                    self.remove_target(iqn)
                except TgtError:
                    pass
            subprocess.run(self._adm("--mode", "system", "--op", "delete"), check=False,
                           capture_output=True, env=self._env())
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self.proc = None

    # ---- configuration ------------------------------------------------------------------
    def configure(self, targets: list[Target] | tuple[Target, ...]) -> None:
        """Serve exactly ``targets`` (previous ones are removed, their sessions dropped)."""
        for iqn in list(self._tids):
            self.remove_target(iqn)
        for t in targets:
            self.add_target(t)

    def sync(self, targets: list[Target] | tuple[Target, ...]) -> SyncResult:
        """Serve exactly ``targets``, touching only what changed: unchanged targets keep their
        sessions; changed ones are re-created; vanished ones deleted (``--force``)."""
        wanted = {t.iqn: t for t in targets}
        if len(wanted) != len(targets):
            raise TgtError("two targets with the same IQN")
        removed = [iqn for iqn in self._tids if iqn not in wanted]
        changed = [iqn for iqn, t in wanted.items() if iqn in self._targets and self._targets[iqn] != t]
        unchanged = [iqn for iqn, t in wanted.items() if self._targets.get(iqn) == t]
        added = [iqn for iqn in wanted if iqn not in self._tids]
        for iqn in removed + changed:
            self.remove_target(iqn)
        for iqn in changed + added:
            self.add_target(wanted[iqn])
        return SyncResult(tuple(added), tuple(changed), tuple(removed), tuple(unchanged))

    @property
    def targets(self) -> dict[str, Target]:
        """The targets served now, by IQN."""
        return dict(self._targets)

    def add_target(self, t: Target) -> int:
        if t.iqn in self._tids:
            raise TgtError(f"target {t.iqn} already configured")
        if t.lun == 0:
            raise TgtError("tgt reserves LUN 0 for its controller: use LUN >= 1")
        tid = self._next_tid
        self._next_tid += 1
        self.adm("--mode", "target", "--op", "new", "--tid", str(tid), "--targetname", t.iqn)
        self._tids[t.iqn] = tid
        self._targets[t.iqn] = t
        for lun, backing, ro in ((t.lun, t.backing, t.readonly), *t.extra_luns):
            if lun == 0:
                raise TgtError("tgt reserves LUN 0 for its controller: use LUN >= 1")
            self.adm("--mode", "logicalunit", "--op", "new", "--tid", str(tid), "--lun", str(lun),
                     "--backing-store", str(backing))
            if ro:
                self.adm("--mode", "logicalunit", "--op", "update", "--tid", str(tid), "--lun", str(lun),
                         "--params", "readonly=1")
        # tgt admits a login when the address ACL OR the name ACL matches (an empty name ACL
        # matches everyone, an empty address ACL no one): so bind "ALL" addresses only when no
        # initiator names restrict the target, else a name binding would restrict nothing.
        if t.initiators:
            for name in t.initiators:
                self.adm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-name", name)
        else:
            self.adm("--mode", "target", "--op", "bind", "--tid", str(tid), "--initiator-address", "ALL")
        for cred in (t.chap, *t.extra_accounts) if t.chap else t.extra_accounts:
            self._account(cred)
            self.adm("--mode", "account", "--op", "bind", "--tid", str(tid), "--user", cred[0])
        if t.mutual:
            self._account(t.mutual)
            self.adm("--mode", "account", "--op", "bind", "--tid", str(tid), "--user", t.mutual[0],
                     "--outgoing")
        return tid

    def _account(self, cred: tuple[str, str]) -> None:
        user, secret = cred
        if self._accounts.get(user) == secret:
            return  # re-creating it would unbind it from every target it serves
        if user in self._accounts:
            self.adm("--mode", "account", "--op", "delete", "--user", user)
        self.adm("--mode", "account", "--op", "new", "--user", user, "--password", secret)
        self._accounts[user] = secret

    def remove_target(self, iqn: str) -> None:
        tid = self._tids.pop(iqn)
        self._targets.pop(iqn, None)
        self.adm("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))

    def tid(self, iqn: str) -> int:
        return self._tids[iqn]

    # ---- inspection ---------------------------------------------------------------------
    def show(self) -> str:
        """``tgtadm --mode target --op show`` output (targets, I_T nexus, LUNs, ACLs, accounts)."""
        return self.adm("--mode", "target", "--op", "show")

    def connected_initiators(self, iqn: str) -> list[str]:
        """Initiator IQNs with an I_T nexus (a logged-in session) on target ``iqn``."""
        out = self.show()
        names: list[str] = []
        current = None
        for line in out.splitlines():
            m = re.match(r"Target \d+: (\S+)", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"\s+Initiator: (\S+)", line)
            if m and current == iqn:
                names.append(m.group(1))
        return names
