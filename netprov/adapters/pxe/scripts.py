"""The shell scripts a push runs on the PXE server: take the lock, stage + test, commit + activate.

Pure text builders (the commit script is one compound command, so a script cut short in transit runs none
of it); they run nothing and read nothing. ``push.py`` sends them; the read's walk script is in
``manifest.py``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from netprov.adapters.pxe.fileops import Ops
from netprov.adapters.pxe.pxe_settings import PxeSettings
from netprov.core.fileplan import Activation
from netprov.core.plan import Action
from netprov.errors import PathConfinementError

q = shlex.quote


def sh_command(script: str, args: Iterable[str]) -> str:
    """``sh -c <script> netprov <args>``, every part quoted."""
    return "sh -c " + q(script) + " netprov " + " ".join(q(a) for a in args)


def status_path(lock_path: str) -> str:
    """Where the commit script records its outcome (next to the lock)."""
    return lock_path + ".last"


def wrap(cmd: str, sudo: bool, user: str) -> str:
    if sudo and user != "root":
        return f"sudo -n sh -c {q(cmd)}"
    return cmd


LOCK = r"""
lock=$1; tok=$2; hb=$3; shift 3
command -v flock >/dev/null 2>&1 || { echo "NETPROV-LOCKFAIL flock(1) is not installed"; exit 74; }
mkdir -p -- "$(dirname -- "$lock")" 2>/dev/null
if ! exec 9>>"$lock"; then echo "NETPROV-LOCKFAIL cannot open $lock"; exit 74; fi
if ! flock -n 9; then echo NETPROV-LOCKED; exit 75; fi
# Commit outcomes ("<token> <state>" lines, see _commit_script): keep the last few.
if [ -f "$lock.last" ]; then tail -n 20 "$lock.last" > "$lock.last.tmp" 2>/dev/null && mv -f "$lock.last.tmp" "$lock.last"; fi
for r; do
  if [ -d "$r" ]; then find "$r" -name '.netprov.*' ! -type d -exec rm -f -- {} + 2>/dev/null; fi
done
echo NETPROV-LOCK-OK
# Hold the lock while netprov's heartbeat bytes arrive. Silence for $hb s (a blackholed client, whose
# connection this server may not notice for hours) or EOF lets go, once our commit is not running here.
command -v timeout >/dev/null 2>&1 && command -v dd >/dev/null 2>&1 || exec cat >/dev/null
while :; do
  n=$(timeout "$hb" dd bs=1 count=1 2>/dev/null | wc -c)
  [ $((n + 0)) -gt 0 ] && continue
  i=0; while [ $i -lt 3600 ] && [ "$(grep "^$tok " "$lock.last" 2>/dev/null | tail -n 1)" = "$tok running" ]; do
    sleep 1; i=$((i+1)); done
  exit 0
done
"""


def stage_script(ops: Ops, s: PxeSettings, user: str) -> tuple[str, bool]:
    writes = ops.writes
    temps = [o.tmp for o in writes]
    L = ["set -u", 'TC=""',
         "cleanup() { rm -f -- " + " ".join(q(t) for t in temps) + ' "$0"; [ -n "$TC" ] && rm -f -- "$TC"; }',
         "fail() { cleanup; exit $1; }"]
    # 1. the plan's view of the live files must still hold (stale plan check)
    absent = [o.live for o in ops.ops if o.action == Action.CREATE and o.change is not None]
    present = [(o.change.payload.before_sha256, o.live) for o in ops.ops
               if o.change is not None and o.action in (Action.UPDATE, Action.DELETE)]
    for p in absent:
        L.append(f"if [ -e {q(p)} ] || [ -L {q(p)} ]; then echo NETPROV-STALE {q(p)} appeared; fail 66; fi")
    if present:
        ck = "".join(f"{h}  {p}\n" for h, p in present)
        L.append("CK=$(mktemp) || fail 69")
        L.append(f"printf '%s' {q(ck)} > \"$CK\"")
        L.append('if ! r=$(sha256sum -c "$CK" 2>&1); then rm -f "$CK"; echo NETPROV-STALE; '
                 'printf "%s\\n" "$r" | grep -v ": OK$"; fail 66; fi')
        L.append('rm -f "$CK"')
    # 2. binaries, modes, group
    for o in writes:
        if o.content is None and o.source:
            L.append(f"cp -- {q(o.source)} {q(o.tmp)} || fail 67")
    by_mode: dict[int, list[str]] = {}
    for o in writes:
        by_mode.setdefault(o.mode, []).append(o.tmp)
    for mode, paths in sorted(by_mode.items()):
        L.append(f"chmod {mode:o} -- " + " ".join(q(p) for p in paths) + " || fail 67")
    secret = [o.tmp for o in writes if o.secret]
    if secret:
        g = q(s.secret_group)
        L.append(f"if grep -q '^'{g}':' /etc/group 2>/dev/null; then chgrp {g} -- "
                 + " ".join(q(p) for p in secret) + " || fail 67; fi")
    # 3. validation
    validated = False
    if ops.validate:
        validated = True
        L.append("TC=$(mktemp) || fail 69")
        L.append("{ :")
        if ops.conf_files:
            L.append("printf 'conf-file=%s\\n' " + " ".join(q(p) for p in ops.conf_files))
        for p in ops.hosts_files:
            L.append(f"printf '# netprov-source: %s\\n' {q(p)}; "
                     f"sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' -e 's/^/dhcp-host=/' {q(p)}")
        L.append('} > "$TC" || fail 69')
        L.append('chmod 644 "$TC"')
        # The test command gets the config path as $1 of its own shell (survives sudo's env reset).
        test = s.test_command.format(conf='"$1"', dnsmasq=q(s.dnsmasq))
        runner = ("sudo -n " if s.sudo and user != "root" else "") + f"sh -c {q(test)} netprov-test \"$TC\""
        L.append(f"if out=$( ( {runner} ) 2>&1 </dev/null ); then :; else rc=$?; "
                 'echo "NETPROV-TEST-FAILED $rc"; printf "%s\\n" "$out"; echo NETPROV-TEST-CONF; '
                 'cat "$TC"; fail 65; fi')
        L.append('rm -f -- "$TC"; TC=""')
    L.append('rm -f -- "$0"')
    L.append("echo NETPROV-STAGED")
    return "\n".join(L) + "\n", validated


# Batch file operations, one line each: "L<TAB>live<TAB>bak" (hard-link backup of live, copy if
# links are not possible; skipped when live is absent), "R<TAB>from<TAB>to" (atomic rename; skipped
# for a DELETE whose live file is already gone: "r"). Paths never contain TAB or newline (confine).
# perl (Essential on Debian/Ubuntu) does them in one process; otherwise a POSIX sh loop runs one
# ln/mv per file. Either stops at the first failure with a non-zero exit.
BATCH = r"""
batch() {
  if command -v perl >/dev/null 2>&1; then
    perl -e 'while (<STDIN>) { chomp; my ($op, $a, $b) = split /\t/, $_, 3;
      if ($op eq "L") { next unless -e $a; unlink $b; link($a, $b) or system("cp", "-p", "--", $a, $b) == 0
          or die "backup $a: $!\n" }
      elsif ($op eq "R") { rename($a, $b) or die "rename $a -> $b: $!\n" }
      elsif ($op eq "r") { next unless -e $a || -l $a; rename($a, $b) or die "rename $a -> $b: $!\n" }
      else { die "bad op $op\n" } }'
  else
    while IFS='	' read -r op a b; do
      case $op in
        L) if [ -e "$a" ]; then ln -f -- "$a" "$b" 2>/dev/null || cp -p -- "$a" "$b" || return 1; fi ;;
        R) mv -f -- "$a" "$b" || return 1 ;;
        r) if [ -e "$a" ] || [ -L "$a" ]; then mv -f -- "$a" "$b" || return 1; fi ;;
        *) return 1 ;;
      esac
    done
  fi
}
"""


def commit_script(ops: Ops, activation: Activation, s: PxeSettings, user: str) -> str:
    pending = s.lock_path + ".pending"
    # The outcome goes to a status file too ("<token> running|done|rolled-back|down|commit-failed"):
    # if the connection is lost, netprov reconnects and reads what really happened.
    L = ["trap '' HUP PIPE", "set -u", f"P={q(pending)}", f"S={q(status_path(s.lock_path))}",
         f"st() {{ printf '%s %s\\n' {ops.token} \"$1\" >> \"$S\" 2>/dev/null; :; }}", "st running", BATCH]
    undo, batch, baks = [], [], []
    for o in ops.ops:
        live, tmp, bak = q(o.live), q(o.tmp), q(o.bak)
        if o.action == Action.CREATE:
            batch.append(f"R\t{o.tmp}\t{o.live}")
            undo.append(f"[ -e {tmp} ] || rm -f -- {live}")
        elif o.action == Action.UPDATE:
            batch.append(f"L\t{o.live}\t{o.bak}")
            batch.append(f"R\t{o.tmp}\t{o.live}")
            undo.append(f"if [ -e {bak} ]; then mv -f -- {bak} {live}; elif [ ! -e {tmp} ]; then "
                        f"rm -f -- {live}; fi")
            baks.append(bak)
        elif o.action == Action.DELETE:
            batch.append(f"r\t{o.live}\t{o.bak}")
            undo.append(f"if [ -e {bak} ]; then mv -f -- {bak} {live}; fi")
            baks.append(bak)
    temps = [q(o.tmp) for o in ops.ops if o.action in (Action.CREATE, Action.UPDATE)]
    L.append("undo() {\n" + "\n".join(undo or [":"]) + "\n}")
    L.append("clean() { rm -f -- " + " ".join(temps + baks) + " 2>/dev/null; :; }")
    L.append("F() { undo; clean; rm -f -- \"$P\"; st commit-failed; echo NETPROV-COMMIT-FAILED; exit 72; }")
    if activation != Activation.NONE:
        L.append(f"printf '%s\\n' {activation.value} > \"$P\" 2>/dev/null")
    if batch:
        for line in batch:
            if "NETPROV_OPS" in line or "\n" in line:
                raise PathConfinementError(f"unexpected path in {line!r}")
        L.append("batch <<'NETPROV_OPS' || F\n" + "\n".join(batch) + "\nNETPROV_OPS")
    if activation != Activation.NONE:
        cmd = s.restart_command if activation == Activation.RESTART else s.reload_command
        act = wrap(cmd, s.sudo, user)
        L.append(f"if out=$( ( {act} ) 2>&1 </dev/null ); then :; else rc=$?\n"
                 "  undo\n"
                 '  echo "NETPROV-ACTIVATE-FAILED $rc"; echo NETPROV-OUTPUT; printf "%s\\n" "$out"; '
                 "echo NETPROV-END\n"
                 f"  if out2=$( ( {act} ) 2>&1 </dev/null ); then clean; rm -f -- \"$P\"; "
                 "st rolled-back; echo NETPROV-ROLLED-BACK; exit 73\n"
                 '  else rc2=$?; st down; echo "NETPROV-DOWN $rc2"; printf "%s\\n" "$out2"; clean; exit 74; fi\n'
                 "fi")
    L.append('clean; rm -f -- "$P" 2>/dev/null; st done; echo NETPROV-DONE')
    # One compound command: sh parses all of it before running any, so a script cut short in
    # transit (connection lost while sending it) is a syntax error that changes nothing.
    return "{\n" + "\n".join(L) + "\n}\n"
