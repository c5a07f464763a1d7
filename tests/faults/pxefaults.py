"""PXE-side faults through a real sshd: a hook script sits in front of every SSH command (a forced
``command=`` in authorized_keys), of ``test_command`` and of the restart/reload commands.

The hook reads the current fault from ``<lab>/fault`` and, at the right moment, kills its own sshd
session (SIGKILL to every sshd process between itself and the listening daemon): the TCP connection
drops at once, as when the link dies, while the commands already running on the server go on.

    stage        the staging upload (the command running ``tar -x``) loses its connection
    test-kill    the connection dies while ``dnsmasq --test`` runs
    commit       the commit script arrived whole; the connection dies before it runs (it then runs)
    commit-cut   the connection dies while the commit script is arriving, in its list of file moves (the
                 server's ``sh -s`` then sees end of input and runs what it got)
    restart-kill the connection dies while dnsmasq restarts
    test-fail    ``dnsmasq --test`` rejects the configuration
    restart-fail the restart fails once (the rollback's restart with the old files works); its output
                 quotes a line of a boot script, as verbose service output can
    restart-down every restart fails: DHCP is down
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.faults import matrix as fm

PXE_FAULTS = ("stage", "test-kill", "commit", "commit-cut", "restart-kill", "test-fail", "restart-fail",
              "restart-down")

HOOK = r"""#!/bin/sh
# fault-matrix hook: $1 = where it sits (ssh | test | activate), the rest is the real command.
LAB=__LAB__
LISTENER=__LISTENER__
where=$1; shift
mode=$(cat "$LAB/fault" 2>/dev/null)

kill_session() {
  pids=""
  p=$$
  while [ "$p" -gt 1 ] && [ "$p" != "$LISTENER" ]; do
    case $(cat /proc/$p/comm 2>/dev/null) in sshd*) pids="$pids $p" ;; esac
    p=$(sed 's/.*) //' /proc/$p/stat | cut -d' ' -f2)
  done
  echo "$mode" >> "$LAB/fired"
  [ -n "$pids" ] && kill -9 $pids
}

case $where in
ssh)
  cmd=$SSH_ORIGINAL_COMMAND
  case "$mode:$cmd" in
    stage:*"tar -x"*)
      head -c 1024 > /dev/null
      kill_session; touch "$LAB/done"; exit 0 ;;
    commit:"sh -s")
      cat > "$LAB/commit.sh"
      kill_session
      sh "$LAB/commit.sh" > "$LAB/commit.out" 2>&1
      touch "$LAB/done"; exit 0 ;;
    commit-cut:"sh -s")
      cat > "$LAB/commit.full"
      # the cut falls inside the list of file moves, right after the first host file's move
      awk '{print} /^batch <</ {h = 1} h && /^R\t.*\/hosts\// {exit}' "$LAB/commit.full" > "$LAB/commit.sh"
      kill_session
      sh "$LAB/commit.sh" > "$LAB/commit.out" 2>&1
      touch "$LAB/done"; exit 0 ;;
  esac
  exec sh -c "$cmd" ;;
test)
  case $mode in
    test-kill) kill_session; "$@"; rc=$?; touch "$LAB/done"; exit $rc ;;
    test-fail) echo "$mode" >> "$LAB/fired"; touch "$LAB/done"
               echo "dnsmasq: unknown option dhcp-fault-matrix"; exit 1 ;;
  esac
  exec "$@" ;;
activate)
  case $mode in
    restart-kill) kill_session; "$@"; rc=$?; touch "$LAB/done"; exit $rc ;;
    restart-fail|restart-down)
      n=$(cat "$LAB/activations" 2>/dev/null || echo 0); echo $((n + 1)) > "$LAB/activations"
      if [ "$mode" = restart-down ] || [ "$n" = 0 ]; then
        echo "dnsmasq: failed to start: junk found in $(grep -h '^set password' "$LAB"/pxe/tftp/*.ipxe | head -n 1)"
        echo "dnsmasq: FAILED to start up"
        touch "$LAB/done"; exit 1
      fi
      touch "$LAB/done"; exec "$@" ;;
  esac
  exec "$@" ;;
esac
echo "fault hook: unknown place $where" >&2
exit 99
"""


class PxeLab:
    """A World whose PXE server is reached over a real sshd with the hook in front of everything."""

    def __init__(self, base: Path, sshd) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.sshd = sshd
        self.hook = self.base / "hook.sh"
        self.hook.write_text(HOOK.replace("__LAB__", str(self.base)).replace("__LISTENER__", str(sshd.pid)))
        self.hook.chmod(0o755)
        pub = Path(sshd.identity_file + ".pub").read_text().strip()
        Path(sshd.dir, "authorized_keys").write_text(f'command="{self.hook} ssh",no-pty {pub}\n')
        self.set_fault("")
        self.world = fm.World(self.base, "25.04", ssh=sshd, hook=self.hook)

    def set_fault(self, mode: str) -> None:
        for name in ("fired", "done", "activations", "commit.sh", "commit.full", "commit.out") if mode else ():
            (self.base / name).unlink(missing_ok=True)
        (self.base / "fault").write_text(mode)

    def settle(self, *, pending_cleared: bool = True, timeout: float = 15.0) -> bool:
        """Wait until the server side has finished what the dead connection left running (the commit
        script removes the pending-activation record last, unless DHCP is down)."""
        pending = Path(str(self.world.pxe.lock_path) + ".pending")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.base / "done").exists() and not (pending_cleared and pending.exists()):
                time.sleep(0.1)   # the last commands after the marker (clean-up, echo)
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.world.close()


def pxe_fault_cell(lab: PxeLab, mode: str) -> fm.CellResult:
    t0 = time.monotonic()
    w = lab.world
    res = fm.CellResult(f"pxe-{mode}")
    w.reset()
    lab.set_fault(mode)
    failed = w.apply_new()
    res.fault_fired = (lab.base / "fired").exists() or (lab.base / "done").exists()
    if not lab.settle(pending_cleared=mode not in ("restart-down", "commit-cut")):
        res.add("harness", ["the fault hook did not finish (was the fault injected?)"])
    lab.set_fault("")
    if not res.fault_fired:
        res.add("harness", ["the fault was not injected"])
    # The connection dies after the whole commit script arrived: the server finishes the commit, and
    # netprov reconnects, reads the commit's recorded outcome and counts the apply as done (exit 0) when it
    # succeeded. Exit 0 is then only right if the live files are exactly the new generation.
    recovered = mode in ("commit", "restart-kill")
    fm.check_after_fault(w, res, failed, one_line=False, expect_code=(0, 1) if recovered else (1,))
    if recovered and failed.code == 0:
        live = fm.read_tree(w.pxe_dir)
        if live != w.files_b:
            changed = sorted(p for p in set(live) | set(w.files_b) if live.get(p) != w.files_b.get(p))
            res.add("PXE after the fault", [f"apply said done, but the live files are not the new generation: "
                                            f"{', '.join(changed[:6])}"])
    if mode in ("test-fail", "restart-fail", "restart-down", "stage", "test-kill"):
        # Nothing may have gone live: every machine still has its old files.
        live = fm.read_tree(w.pxe_dir)
        if live != w.files_a:
            changed = sorted(p for p in set(live) | set(w.files_a) if live.get(p) != w.files_a.get(p))
            res.add("PXE after the fault", [f"live files changed although nothing was activated: "
                                            f"{', '.join(changed[:6])}"])
    fm.rerun_and_check(w, res)
    res.seconds = time.monotonic() - t0
    return res
