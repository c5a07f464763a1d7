"""A PXE server reached over SSH: read what it holds, push and activate boot files.

This host may run a LAN's only DHCP server, so every write follows
write → validate → move (style §2.3):

1. ``read_manifest`` — ONE round trip: a POSIX-sh walk of every root printing
   type, mode, size, sha256 and whether the netprov header is in the first three
   lines, plus the sha256 of each binary source and any unfinished activation.
   The same round trip checks what apply will need (commands such as ``flock``,
   ``sha256sum``, ``tar`` and the test/restart binaries; a writable lock directory
   and roots) and that no root has a symlink on its path (refused at once); the
   manifest's ``preflight`` says what is missing, and a plan with changes for a
   server that is not ready is refused (``fileplan.check_ready``), so apply stops
   before any change anywhere. ``read(desired)`` adds the binaries' sources and,
   when files differ or go away, a second round trip for their old text (diffs).
2. ``apply(changes)``: this server's part of a plan (files and activation):
   a. lock (one channel that holds ``flock -n`` on ``lock_path`` for the whole apply;
      a second apply fails at once with a clear message; the lock dies with the
      connection or a few missed heartbeats after it went silent) and remove stale
      temporaries of earlier, interrupted applies;
   b. stage (one round trip): mkdir the roots/parents, refuse symlinked parents,
      stream one tar of every changed file under dot-prefixed temporary names in the
      target directory (dnsmasq's conf-dir and hostsdir skip dot files), set modes
      (secret files 0640, group ``dnsmasq`` if it exists), copy binaries from their
      source, re-check the plan's "before" hashes (stale plan → StalePlanError), then
      build a test config (new drop-ins + every host line inlined as ``dhcp-host=``,
      since ``dnsmasq --test`` skips hostsdir files) and run ``test_command``. Failure
      → temporaries removed, nothing live touched, PushError with dnsmasq's message;
   c. commit + activate (one round trip, a server-side script immune to SIGHUP/SIGPIPE
      so a dropped connection cannot stop it half-way): hard-link backups, atomic
      renames, deletes as renames to backups, then restart (config changed) or
      reload/SIGHUP (hosts changed). If activation fails the backups are restored and
      the command re-run with the old files: PushError says it was rolled back (or, if
      even that failed, that DHCP is DOWN).
   A connection lost before (c) leaves every live file intact (temporaries are never live).
   Every step has a deadline (``command_timeout``; connecting: ``connect_timeout``) and
   keepalives find a silent server; a commit whose answer was lost is checked again over
   a new connection (the script records its outcome next to the lock) and reported as
   it really ended. Server output is always shown through ``mask_secrets``.

Every remote path is built by ``confine`` (netprov.core.fileplan), the one path gate.
"""

from __future__ import annotations

import io
import posixpath
import re
import secrets as _secrets
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Self

from netprov.adapters.pxe.ssh import SshConnection, SshDeadline, collect, connect, keepalive_interval
from netprov.core.bootfiles import HEADER_MARKER, BootFile, Kind, Root
from netprov.core.dnsmasq import SECRET_GROUP
from netprov.core.fileplan import (
    OWNED_RECORD,
    TEMP_PREFIX,
    Activation,
    FilePayload,
    RemoteEntry,
    RemoteManifest,
    activation_of,
    confine,
    effective_mode,
    text_wanted,
)
from netprov.core.plan import Action, Change
from netprov.core.secrets import mask_secrets
from netprov.core.text import one_line
from netprov.errors import ConnectError, NetprovError, PathConfinementError, PushError, StalePlanError

__all__ = ["PushReport", "PxeHost", "PxeSettings", "confine"]

Progress = Callable[[str, "Change | None"], None]


@dataclass(frozen=True)
class PxeSettings:
    """How to reach one PXE server and drive its dnsmasq. Plain values only.

    Commands are run by ``sh -c`` on the server; with ``sudo=True`` and a non-root
    user they are wrapped as ``sudo -n sh -c '<command>'``. ``test_command`` may use
    ``{conf}`` (the generated test config) and ``{dnsmasq}``.
    """

    host: str
    roots: Mapping[Root, str]
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    ssh_config: str | None = None
    dnsmasq: str = "dnsmasq"
    test_command: str = "{dnsmasq} --test --conf-file={conf}"
    reload_command: str = "systemctl reload dnsmasq"
    restart_command: str = "systemctl restart dnsmasq"
    sudo: bool = False
    lock_path: str = "/run/lock/netprov.lock"
    secret_group: str = SECRET_GROUP
    flavor: str = "dnsmasq"            # "pihole": the read also checks Pi-hole reads the drop-in (docs/pihole.md)
    pihole_toml: str = "/etc/pihole/pihole.toml"
    server: str | None = None          # the BootFile.server name; defaults to host
    connect_timeout: float = 15.0      # connecting + logging in; also how long an unanswered peer is kept
    command_timeout: float = 300.0     # the deadline of each later step (read, lock, upload, commit)
    keepalive: float | None = None     # SSH keepalive interval; default min(10, connect_timeout / 3)

    @property
    def dnsmasq_dir_hint(self) -> str:
        return self.roots.get(Root.DNSMASQ, "/etc/dnsmasq.d") if self.roots else "/etc/dnsmasq.d"

    @property
    def server_name(self) -> str:
        return self.server or self.host


@dataclass(frozen=True)
class PushReport:
    server: str
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    activation: Activation = Activation.NONE
    validated: bool = False
    round_trips: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    output: str = field(default="", repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted or self.activation != Activation.NONE)


q = shlex.quote

# ----------------------------------------------------------------------------- remote scripts

_WALK = r"""
lock=$1; shift
if [ -r "$lock.pending" ]; then printf 'P|%s\n' "$(head -n 1 "$lock.pending")"; fi
# Preflight: what apply will need, so a missing piece is a plan-time error, before any change.
# C|tool: command missing; W|what|path: cannot be written (nearest existing ancestor when absent);
# L|root|link|real: a symlink on a root's path.
writable() {
  p=$1
  while [ ! -e "$p" ] && [ ! -L "$p" ]; do p=$(dirname -- "$p"); done
  [ -d "$p" ] && [ -w "$p" ] && [ -x "$p" ]
}
# (sbin directories too: dnsmasq and the like run under sudo, whose PATH has them)
while [ $# -gt 0 ]; do
  a=$1; shift
  [ "$a" = "--roots" ] && break
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$a" >/dev/null 2>&1 || printf 'C|%s\n' "$a"
done
lockdir=$(dirname -- "$lock")
if ! writable "$lockdir"; then printf 'W|lock directory|%s\n' "$lockdir"
elif [ -e "$lock" ] && [ ! -w "$lock" ]; then printf 'W|lock file|%s\n' "$lock"; fi
# Pi-hole flavour: will pihole-FTL read the drop-in? v6 (pihole.toml present) only with
# [misc] etc_dnsmasq_d = true; v5 always reads /etc/dnsmasq.d. Q|v6|<value or unset or unreadable>; Q|v5|
if [ -n "${PIHOLE_TOML:-}" ]; then
  if [ -e "$PIHOLE_TOML" ]; then
    if t=$(cat -- "$PIHOLE_TOML" 2>/dev/null || $PIHOLE_SUDO cat -- "$PIHOLE_TOML" 2>/dev/null </dev/null); then
      v=$(printf '%s\n' "$t" | awk '/^[[:space:]]*\[/ { sec = $0; gsub(/[][[:space:]]/, "", sec); next }
        sec == "misc" && /^[[:space:]]*etc_dnsmasq_d[[:space:]]*=/ {
          sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]#].*$/, ""); print; exit }')
      printf 'Q|v6|%s\n' "${v:-unset}"
    else printf 'Q|v6|unreadable\n'; fi
  else printf 'Q|v5|\n'; fi
fi
set -f
while [ $# -gt 0 ]; do
  a=$1; shift
  [ "$a" = "--sources" ] && break
  name=${a%%=*}; dir=${a#*=}
  p=""; link=""; oldifs=$IFS; IFS=/
  for c in ${dir#/}; do
    p="$p/$c"
    if [ -L "$p" ]; then link=$p; break; fi
    [ -e "$p" ] || break
  done
  IFS=$oldifs
  if [ -n "$link" ]; then printf 'L|%s|%s|%s\n' "$name" "$link" "$(readlink -- "$link" 2>/dev/null)"; continue; fi
  writable "$dir" || printf 'W|%s|%s\n' "$name" "$dir"
  if [ ! -e "$dir" ]; then printf 'M|%s\n' "$name"; continue; fi
  if [ ! -d "$dir" ]; then printf 'B|%s\n' "$name"; continue; fi
  cd "$dir" || { printf 'B|%s\n' "$name"; continue; }
  printf 'R|%s\n' "$name"
  find . -mindepth 1 -exec stat -c 'S|%a|%s|%F|%n' {} + 2>/dev/null
  find . -type f -exec sha256sum {} + 2>/dev/null | sed 's/^/X|/'
  find . -type f -exec awk 'FNR<=3 && index($0, m) {print "H|" FILENAME; nextfile} FNR>=3 {nextfile}' m="$HDR" {} + 2>/dev/null
  if [ -f """ + OWNED_RECORD + r""" ]; then grep -v '^#' """ + OWNED_RECORD + r""" | sed 's/^/O|/'; fi
done
set +f
for s in "$@"; do
  if [ -f "$s" ] && [ -r "$s" ] && h=$(sha256sum < "$s"); then printf 'Y|%s|%s\n' "${h%% *}" "$s"
  else printf 'N|%s\n' "$s"; fi
done
echo 'END|'
"""

_FETCH = r"""
for f; do
  if [ -f "$f" ] && [ -r "$f" ]; then n=$(wc -c < "$f"); printf 'F|%s\n' $n; cat "$f"; else printf 'F|-1\n'; fi
done
"""

_LOCK = r"""
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

_STAT_TYPES = {"regular file": "file", "regular empty file": "file", "directory": "dir",
               "symbolic link": "symlink"}


def _wrap(cmd: str, sudo: bool, user: str) -> str:
    if sudo and user != "root":
        return f"sudo -n sh -c {q(cmd)}"
    return cmd


class PxeHost:
    """One PXE server. Opens a single SSH connection lazily; ``close()`` (or ``with``) ends it."""

    def __init__(self, settings: PxeSettings, *, connection: SshConnection | None = None) -> None:
        self.settings = settings
        self._conn = connection
        self.preflight: list[str] = []     # what the last read found missing for apply (see read_manifest)
        self._last: RemoteManifest | None = None   # what the last read saw (apply's view of unchanged files)
        for r, d in settings.roots.items():
            if not isinstance(d, str) or not d.startswith("/"):
                raise PathConfinementError(f"root {Root(r).value} = {d!r} must be an absolute path")

    # -- connection ----------------------------------------------------------------------
    @property
    def conn(self) -> SshConnection:
        if self._conn is not None and self._conn.lost:
            self._conn.close()      # a step lost it (deadline, dropped link): the next step reconnects
            self._conn = None
        if self._conn is None:
            s = self.settings
            self._conn = connect(s.host, port=s.port, user=s.user, identity_file=s.identity_file,
                                 known_hosts=s.known_hosts, accept_new_host_key=s.accept_new_host_key,
                                 ssh_config=s.ssh_config, timeout=s.connect_timeout, keepalive=s.keepalive)
        return self._conn

    @property
    def round_trips(self) -> int:
        return self._conn.round_trips if self._conn else 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _root_dir(self, root: Root, roots: Mapping[Root, str] | None = None) -> str:
        roots = roots if roots is not None else self.settings.roots
        try:
            return posixpath.normpath(roots[Root(root)])
        except KeyError:
            raise PathConfinementError(f"no directory configured for root {Root(root).value!r} "
                                       f"on {self.settings.server_name}") from None

    def _sh(self, script: str, args: Iterable[str]) -> str:
        return "sh -c " + q(script) + " netprov " + " ".join(q(a) for a in args)

    # -- read -----------------------------------------------------------------------------
    def _tools(self) -> list[str]:
        """Commands the server must have for apply (checked by the read round trip)."""
        s = self.settings
        tools = ["sh", "flock", "sha256sum", "stat", "find", "awk", "sed", "grep", "head", "wc", "cat", "tar",
                 "mktemp", "chmod", "cp", "mv", "ln", "rm", "mkdir", "dirname"]
        if s.sudo and self.conn.user != "root":
            tools.append("sudo")
        try:
            test = s.test_command.format(conf="x", dnsmasq=q(s.dnsmasq))
        except (KeyError, ValueError, IndexError):
            test = ""
        for cmd in (test, s.restart_command, s.reload_command):
            first = _first_word(cmd)
            if first and first not in tools:
                tools.append(first)
        return tools

    def read_manifest(self, roots: Mapping[Root, str] | Iterable[Root] | None = None, *,
                      sources: Iterable[str] = ()) -> RemoteManifest:
        """What the server holds under ``roots`` (default: all configured). ONE round trip.

        The same round trip checks what apply will need (commands, writable lock directory
        and roots, no symlink on a root's path); ``preflight`` holds what is wrong. A
        symlink on a root's path is refused here at once (PathConfinementError): netprov
        would otherwise read and write wherever it leads."""
        if roots is None:
            rootmap = {Root(r): self._root_dir(r) for r in self.settings.roots}
        elif isinstance(roots, Mapping):
            rootmap = {Root(r): posixpath.normpath(d) for r, d in roots.items()}
        else:
            rootmap = {Root(r): self._root_dir(r) for r in roots}
        for d in rootmap.values():
            confine(d, "x")  # validates the root itself
        srcs = sorted(set(sources))
        for s in srcs:
            if not s.startswith("/") or re.search(r"[\x00-\x1f\\]", s):
                raise PathConfinementError(f"binary source {s!r} must be an absolute path")
        server = self.settings.server_name
        args = [self.settings.lock_path, *self._tools(), "--roots"]
        args += [f"{r.value}={d}" for r, d in sorted(rootmap.items())]
        args += ["--sources", *srcs]
        env = f"HDR={q(HEADER_MARKER)}; export HDR; "
        if self.settings.flavor == "pihole":
            sudo = "sudo -n" if self.settings.sudo and self.conn.user != "root" else "false"
            env += f"PIHOLE_TOML={q(self.settings.pihole_toml)}; PIHOLE_SUDO={q(sudo)}; export PIHOLE_TOML PIHOLE_SUDO; "
        try:
            res = self.conn.run(env + self._sh(_WALK, args),
                                timeout=self.settings.command_timeout, what="reading the files it holds")
        except ConnectError as exc:
            raise PushError(f"reading files on {server} failed: {exc} (nothing was changed)") from None
        if "END|" not in res.out or res.rc != 0:
            raise PushError(f"reading files on {server} failed (exit {res.rc}; the answer was incomplete): "
                            f"{one_line(mask_secrets(res.err), 500)} (nothing was changed)")
        self.preflight = _preflight(server, rootmap, res.out) + _pihole_problems(self.settings, res.out)
        try:
            manifest = parse_manifest(server, rootmap, res.out)
        except (ValueError, KeyError, IndexError) as exc:
            raise PushError(f"reading files on {server}: the answer was garbled ({exc}); nothing was "
                            "changed, try again") from None
        self._last = replace(manifest, preflight=tuple(self.preflight))
        return self._last

    def fetch_text(self, paths: Iterable[tuple[Root, str]], roots: Mapping[Root, str] | None = None
                   ) -> dict[tuple[Root, str], bytes]:
        """Old contents of the given files (one round trip; none when ``paths`` is empty).
        An incomplete or garbled answer is a PushError."""
        keys = list(dict.fromkeys((Root(r), p) for r, p in paths))
        if not keys:
            return {}
        server = self.settings.server_name
        full = [confine(self._root_dir(r, roots), p) for r, p in keys]
        try:
            res = self.conn.run(self._sh(_FETCH, full), timeout=self.settings.command_timeout,
                                what="reading the old contents of changed files")
        except ConnectError as exc:
            raise PushError(f"reading files on {server} failed: {exc} (nothing was changed)") from None
        out, pos, texts = res.stdout, 0, {}
        bad = PushError(f"reading files on {server}: the answer was incomplete or garbled (exit {res.rc}); "
                        "nothing was changed, try again")
        for key in keys:
            nl = out.find(b"\n", pos)
            header = out[pos:nl].decode("ascii", "replace") if nl >= 0 else ""
            m = re.fullmatch(r"F\|(-1|\d{1,12})", header.strip())
            if m is None:
                raise bad
            n = int(m.group(1))
            pos = nl + 1
            if n >= 0:
                if pos + n > len(out):
                    raise bad
                texts[key] = bytes(out[pos:pos + n])
                pos += n
        if res.rc != 0:
            raise bad
        return texts

    def read(self, desired: Sequence[BootFile], *, diffs: bool = True, host_text: bool = False) -> RemoteManifest:
        """What the server holds, for planning ``desired``: one round trip (``read_manifest``, with the
        binaries' sources), and when diffs are wanted and files differ or go away, a second one
        fetching their old text. ``host_text``: fetch the text of every netprov host line file too (a
        ``state pull`` snapshot keeps it, so a ``--target`` plan from it can tell whose old-MAC script a
        file is). ``preflight`` on the result says what the server lacks for an apply."""
        sources = [f.source for f in desired if f.kind == Kind.BINARY and f.source]
        manifest = self.read_manifest(sources=sources)
        want = set(text_wanted(desired, manifest)) if diffs else set()
        if host_text:
            want |= {k for k, e in manifest.entries.items() if k[0] is Root.HOSTS and e.managed}
        if want:
            manifest = manifest.with_old_text(self.fetch_text(sorted(want, key=lambda k: (k[0].value, k[1]))))
            self._last = manifest
        return manifest

    def check_ready(self) -> None:
        """Raise the problems the last read found with what apply needs on the server."""
        if self.preflight:
            raise PushError(f"PXE server {self.settings.server_name} is not ready for netprov: "
                            + "; ".join(self.preflight) + " (nothing was changed)")

    # -- apply ----------------------------------------------------------------------------
    def apply(self, changes: Iterable[Change], progress: Progress | None = None, *,
              allow_conflicts: bool = False) -> PushReport:
        """Carry out this server's part of a plan (its file changes and activation; see module
        docstring), against what the last read saw of the files it does not change (ownership
        records, the config dnsmasq is tested with). Raises PushError, StalePlanError,
        PathConfinementError, ConnectError; never leaves a temporary file live."""
        t0 = time.monotonic()
        s = self.settings
        note = progress or (lambda event, change: None)
        changes = tuple(changes)
        strange = sorted({c.system for c in changes} - {f"pxe:{s.server_name}"})
        if strange:
            raise PushError(f"plan is for {', '.join(strange)}, this host is {s.server_name!r}")
        files = [c for c in changes if isinstance(c.payload, FilePayload)]
        conflicts = [c for c in files if c.refused]
        if conflicts and not allow_conflicts:
            raise PushError(f"{len(conflicts)} file(s) on {s.server_name} are in conflict and netprov "
                            "will not touch them: " + "; ".join(f"{c.address}: {c.refused}" for c in conflicts[:10]))
        manifest = self._last if self._last is not None else self.read_manifest()
        roots = {Root(r): posixpath.normpath(d) for r, d in (manifest.roots or s.roots).items()}
        activation = activation_of(changes)
        ops = _build_ops(files, manifest, roots, _secrets.token_hex(4))   # confines every path first
        rt0 = self.round_trips
        if not ops.changes and activation == Activation.NONE:
            return PushReport(s.server_name, seconds=time.monotonic() - t0)

        self.check_ready()
        secrets = tuple({x for c in files if c.payload.file is not None for x in c.payload.file.secrets})
        lock = self._lock(list(roots.values()), ops.token)
        note("lock", None)
        try:
            validated = False
            uploaded = 0
            if ops.changes:
                uploaded, validated = self._stage(ops, roots, note, secrets)
            note("commit", None)
            output = self._commit_and_activate(ops, activation, secrets)
        finally:
            self._last = None       # the files changed (or may have): plan again from a fresh read
            try:
                lock.close()
            except Exception:  # noqa: BLE001, S110 - the lock dies with the channel anyway
                pass
        note("done", None)
        done = lambda a: tuple(str(c.address) for c in ops.changes if c.action == a)
        return PushReport(s.server_name, done(Action.CREATE), done(Action.UPDATE), done(Action.DELETE),
                          activation, validated, self.round_trips - rt0, uploaded,
                          time.monotonic() - t0, output)

    def _lock(self, root_dirs: list[str], token: str = "-") -> _Lock:
        s = self.settings
        conn = self.conn
        beat = keepalive_interval(s.keepalive, s.connect_timeout)
        hold = max(2, int(beat * 4 + 0.999))
        lost = (f"the connection to {s.server_name} was lost while taking the lock {s.lock_path}; "
                "nothing was changed")
        try:
            with conn.deadline(s.command_timeout, "taking the lock"):
                ch = conn.open_channel(self._sh(_LOCK, [s.lock_path, token, str(hold), *root_dirs]),
                                       s.command_timeout)
                try:
                    line = ch.makefile("rb").readline().decode(errors="replace").strip()
                    # No answer at all: the channel ended; its exit status (-1: none) tells a dead
                    # connection from a server-side failure.
                    rc = ch.recv_exit_status() if not line else 0
                except BaseException:
                    ch.close()
                    raise
        except ConnectError as exc:
            raise PushError(f"{lost} ({exc})") from None
        if line == "NETPROV-LOCK-OK":
            return _Lock(ch, beat)
        if not line:
            ch.close()
            if rc < 0 or conn.lost or not _alive(conn):
                raise PushError(lost)
            raise PushError(f"could not take the lock {s.lock_path} on {s.server_name}: the lock command "
                            f"exited {rc} without a word; nothing was changed")
        ch.close()
        if line == "NETPROV-LOCKED":
            raise PushError(f"another netprov apply holds the lock {s.lock_path} on {s.server_name}; "
                            "wait for it to finish and run again (nothing was changed). An apply whose "
                            f"connection was lost lets go within {hold} s")
        raise PushError(f"could not take the lock {s.lock_path} on {s.server_name}: "
                        f"{one_line(mask_secrets(line.removeprefix('NETPROV-LOCKFAIL ')), 500)}; nothing was changed")

    def _stage(self, ops: _Ops, roots: Mapping[Root, str], note: Progress,
               secrets: tuple[str, ...] = ()) -> tuple[int, bool]:
        s = self.settings
        conn = self.conn
        script, validated = _stage_script(ops, s, conn.user)
        dirs = sorted(ops.dirs)
        checks = []
        for root_dir, rel in sorted(ops.rel_dirs):
            full = confine(root_dir, rel)
            checks.append(f'[ "$(cd -P -- {q(root_dir)} && pwd)/{rel}" = "$(cd -P -- {q(full)} && pwd)" ] '
                          f'|| {{ echo NETPROV-ESCAPE {q(full)}; exit 68; }}')
        mkdir = f"mkdir -p -- {' '.join(q(d) for d in dirs)} || exit 69" if dirs else ":"
        cmd = (f"umask 022; {mkdir}\n"
               + "\n".join(checks) + "\n"
               + f"tar -x -o -f - -C / || exit 70\nexec sh {q(ops.script_path)}")
        sent = 0
        state = ("nothing was committed: the live files are unchanged (any staged temporaries are "
                 "removed by the next apply)")
        try:
            with conn.deadline(s.command_timeout, "uploading and validating the new files"):
                ch = conn.open_channel(cmd, s.command_timeout)
                try:
                    writer = _ChannelWriter(ch)
                    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                        _add(tar, ops.script_path, script.encode(), 0o600)
                        for op in ops.writes:
                            if op.content is not None:
                                _add(tar, op.tmp, op.content, op.mode)
                            if op.change is not None:
                                note("upload", op.change)
                    sent = writer.sent
                    ch.shutdown_write()
                    res = collect(ch)
                finally:
                    ch.close()
        except SshDeadline as exc:
            raise PushError(f"{s.server_name} did not answer while uploading ({exc}); {state}") from None
        except (OSError, EOFError, ConnectError) as exc:
            raise PushError(f"connection to {s.server_name} lost while uploading ({exc}); {state}") from None
        except Exception as exc:
            if type(exc).__module__.startswith("paramiko"):
                raise PushError(f"connection to {s.server_name} lost while uploading ({exc}); {state}") from None
            raise
        if res.rc < 0:
            raise PushError(f"connection to {s.server_name} lost while uploading (no exit status); {state}")
        conn.bytes_sent += sent
        note("validate", None)
        out = res.out
        if res.rc == 0 and "NETPROV-STAGED" in out:
            return sent, validated
        if res.rc == 68:
            raise PathConfinementError(f"on {s.server_name}, a parent directory is a symlink leading out of "
                                       f"its root ({_after(out, 'NETPROV-ESCAPE')}); nothing was written")
        if res.rc == 66:
            raise StalePlanError(f"files on {s.server_name} changed since the plan was made "
                                 f"({mask_secrets(_stale_detail(out), secrets)}); plan again (nothing was changed)")
        if res.rc == 65 and re.search(r"^NETPROV-TEST-FAILED 12[67]$", out, re.M):
            said = one_line(out.split("NETPROV-TEST-FAILED", 1)[-1].partition("NETPROV-TEST-CONF")[0]
                            .split("\n", 1)[-1], 200)
            raise PushError(f"test_command {s.test_command!r} on {s.server_name}: a program it runs was not found "
                            f"(or is not executable): {mask_secrets(said, secrets) or 'exit 127'}; set "
                            f"test_command for this server (nothing was activated and live files are unchanged)")
        if res.rc == 65:
            raise PushError(f"dnsmasq rejected the new configuration on {s.server_name}; nothing was "
                            f"activated and live files are unchanged:\n"
                            + mask_secrets(_test_message(out, ops), secrets))
        raise PushError(f"staging files on {s.server_name} failed (exit {res.rc}); live files are unchanged:"
                        f"\n{mask_secrets((out + res.err).strip()[-2000:], secrets)}")

    def _commit_and_activate(self, ops: _Ops, activation: Activation, secrets: tuple[str, ...] = ()) -> str:
        s = self.settings
        script = _commit_script(ops, activation, s, self.conn.user)
        try:
            res = self.conn.run("sh -s", stdin=script.encode(), timeout=s.command_timeout,
                                what="committing the new files" + (" and activating dnsmasq" if activation
                                                                   != Activation.NONE else ""))
        except ConnectError as exc:
            return self._after_lost_commit(ops, activation, str(exc))
        out = res.out
        if res.rc == 0 and "NETPROV-DONE" in out:
            return out
        what = {Activation.RESTART: "restart", Activation.SIGHUP: "reload (SIGHUP)"}.get(activation, "")
        if "NETPROV-ROLLED-BACK" in out:
            raise PushError(f"dnsmasq {what} on {s.server_name} failed with the new files, so they were "
                            f"rolled back and dnsmasq was {what.split()[0]}ed again: DHCP is running the OLD "
                            "configuration. dnsmasq said:\n"
                            + mask_secrets(_after(out, "NETPROV-OUTPUT", multiline=True), secrets))
        if "NETPROV-DOWN" in out:
            raise PushError(f"dnsmasq {what} on {s.server_name} failed; the old files were restored but "
                            f"dnsmasq did not come back either: DHCP IS DOWN on {s.server_name}. Output:\n"
                            + mask_secrets(_after(out, "NETPROV-OUTPUT", multiline=True) + "\n"
                                           + _after(out, "NETPROV-DOWN", multiline=True), secrets))
        if "NETPROV-COMMIT-FAILED" in out:
            raise PushError(f"moving files into place on {s.server_name} failed and was rolled back; "
                            "nothing was activated:\n" + mask_secrets((out + res.err).strip()[-2000:], secrets))
        # No verdict from the script: find out what the server did before saying anything.
        return self._after_lost_commit(ops, activation, f"the commit command ended with exit {res.rc} and "
                                       f"no verdict: {one_line(mask_secrets(out + res.err, secrets), 300)}")

    def _after_lost_commit(self, ops: _Ops, activation: Activation, why: str) -> str:
        """The commit's answer was lost. The server-side script runs on (immune to SIGHUP) and
        records its outcome next to the lock; reconnect once and read it, then say what happened.
        Returns normally when the server finished the commit."""
        s = self.settings
        server = s.server_name
        status = _status_path(s.lock_path)
        token = ops.token
        polls = max(1, int(s.command_timeout / 0.5))
        mine = f"grep {q('^' + token + ' ')} {q(status)} 2>/dev/null | tail -n 1"
        probe = (f"i=0; while [ $i -lt {polls} ] && [ \"$({mine})\" = {q(token + ' running')} ]; do sleep 0.5; "
                 f"i=$((i+1)); done; {mine}; :")
        verdict = None
        try:
            if isinstance(self._conn, SshConnection) or self._conn is None:
                with connect(s.host, port=s.port, user=s.user, identity_file=s.identity_file,
                             known_hosts=s.known_hosts, accept_new_host_key=False, ssh_config=s.ssh_config,
                             timeout=s.connect_timeout, keepalive=s.keepalive) as conn2:
                    res = conn2.run(probe, timeout=s.command_timeout + 5, what="checking the commit's outcome")
            else:   # this machine (LocalConnection): nothing to reconnect
                res = self._conn.run(probe, timeout=s.command_timeout + 5, what="checking the commit's outcome")
            line = res.out.strip().splitlines()[-1] if res.out.strip() else ""
            tok, _, verdict = line.partition(" ")
            if tok != token:        # no line of ours: the script never ran
                verdict = "not-started"
        except NetprovError:
            verdict = None
        what = {Activation.RESTART: "restarted", Activation.SIGHUP: "reloaded"}.get(activation)
        lead = f"connection to {server} lost while committing ({why})"
        if verdict == "done":
            return (f"NETPROV-DONE (the connection was lost but {server} finished the commit"
                    + (f" and dnsmasq was {what}" if what else "") + ")")
        if verdict == "not-started":
            raise PushError(f"{lead}; checked again: the commit never started on {server}, so the upload was "
                            "staged but not committed: the live files are unchanged. Run netprov apply again")
        if verdict == "rolled-back":
            raise PushError(f"{lead}; checked again: dnsmasq failed with the new files on {server}, they were "
                            "rolled back and DHCP is running the OLD configuration")
        if verdict == "down":
            raise PushError(f"{lead}; checked again: dnsmasq failed on {server} and did not come back with the "
                            f"old files either: DHCP IS DOWN on {server}")
        if verdict == "commit-failed":
            raise PushError(f"{lead}; checked again: moving files into place on {server} failed and was rolled "
                            "back; nothing was activated")
        if verdict == "running":
            raise PushError(f"{lead}; checked again: the commit is still running on {server} (dnsmasq's "
                            "activation has not finished); run netprov plan once it has finished to see where it stands")
        raise PushError(f"{lead}; {server} could not be reached again to check, so the commit may or may "
                        "not have happened (the server finishes or rolls back on its own): run netprov plan "
                        "to see where it stands")


class _Lock:
    """The lock channel, fed a heartbeat byte every ``beat`` seconds (the server lets go after
    a few missed ones). ``close()`` stops it and ends the channel, releasing the lock."""

    def __init__(self, ch, beat: float) -> None:  # noqa: ANN001
        self.ch = ch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(beat,), daemon=True, name="netprov-lock")
        self._thread.start()

    def _run(self, beat: float) -> None:
        while not self._stop.wait(beat):
            try:
                self.ch.sendall(b".")
            except Exception:  # noqa: BLE001 - the connection is gone: the apply's own steps say so
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.ch.close()


def _alive(conn) -> bool:  # noqa: ANN001
    t = getattr(conn, "_client", None)
    t = t.get_transport() if t is not None else None
    return t is None or t.is_active()


def _status_path(lock_path: str) -> str:
    return lock_path + ".last"


# ----------------------------------------------------------------------------- manifest parsing


def _first_word(cmd: str) -> str | None:
    """The program a simple shell command starts (None when it is not a plain word)."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if not words or not re.fullmatch(r"[A-Za-z0-9_./+-]+", words[0]) or "=" in words[0]:
        return None
    return words[0]


def _preflight(server: str, roots: Mapping[Root, str], text: str) -> list[str]:
    """The walk's preflight lines (C|, W|, L|) as problems; raises for symlinked roots."""
    tools, unwritable, links = [], [], []
    for line in text.split("\n"):
        tag, _, rest = line.partition("|")
        if tag == "C":
            tools.append(rest)
        elif tag == "W":
            what, _, path = rest.partition("|")
            unwritable.append(f"{_root_label(what)} {path}")
        elif tag == "L":
            name, link, target = (rest.split("|", 2) + ["", ""])[:3]
            root_dir = roots.get(Root(name), "?") if name in _ROOT_NAMES else "?"
            links.append(f"{_root_label(name)} {root_dir} has a symlink on its path ({link}"
                         + (f" -> {target}" if target else "") + ")")
    if links:
        raise PathConfinementError(
            f"on {server}: " + "; ".join(links) + ". netprov does not follow symlinks out of a root: set the "
            "real directory in the inventory (nothing was changed)")
    problems = []
    if tools:
        problems.append("missing command(s): " + ", ".join(tools) + " (not found on the server's PATH)")
    if unwritable:
        problems.append("cannot write to " + ", ".join(unwritable) + " as the SSH user")
    return problems


def _pihole_problems(s: PxeSettings, text: str) -> list[str]:
    """Flavour pihole: what the walk's Q| line says about Pi-hole reading netprov's drop-in."""
    if s.flavor != "pihole":
        return []
    for line in text.split("\n"):
        if line.startswith("Q|v6|"):
            value = line[len("Q|v6|"):].strip().strip("'\"").lower()
            if value == "true":
                return []
            if value == "unreadable":
                return [f"cannot read {s.pihole_toml} to check that Pi-hole v6 reads {s.dnsmasq_dir_hint}: "
                        "let the SSH user read it or use sudo"]
            return [f"Pi-hole v6 does not read {s.dnsmasq_dir_hint} (misc.etc_dnsmasq_d is {value} in "
                    f"{s.pihole_toml}): run `sudo pihole-FTL --config misc.etc_dnsmasq_d true` on the PXE server"]
    return []


_ROOT_NAMES = {r.value for r in Root}
_ROOT_FIELDS = {"tftp": "tftp_root", "dnsmasq": "dnsmasq_dir", "hosts": "hosts_dir", "http": "http_root"}


def _root_label(name: str) -> str:
    return _ROOT_FIELDS.get(name, name)



def parse_manifest(server: str, roots: Mapping[Root, str], text: str) -> RemoteManifest:
    """Parse the walk's output (pure; exposed for tests)."""
    entries: dict[tuple[Root, str], dict] = {}
    missing, bad, stale = set(), set(), []
    owned: dict[Root, set[str]] = {}
    headers: set[tuple[Root, str]] = set()
    sources: dict[str, str | None] = {}
    pending = Activation.NONE
    cur: Root | None = None
    for line in text.split("\n"):
        tag, _, rest = line.partition("|")
        if tag == "R":
            cur = Root(rest)
        elif tag == "M":
            missing.add(Root(rest))
        elif tag == "B":
            bad.add(Root(rest))
        elif tag == "P":
            try:
                pending = Activation(rest.strip())
            except ValueError:
                pending = Activation.RESTART
        elif tag == "Y":
            h, _, src = rest.partition("|")
            sources[src] = h
        elif tag == "N":
            sources[rest] = None
        elif cur is None:
            continue
        elif tag == "S":
            parts = rest.split("|", 3)
            if len(parts) != 4 or not parts[3].startswith("./"):
                continue
            mode, size, ftype, path = parts
            entries.setdefault((cur, path[2:]), {}).update(
                type=_STAT_TYPES.get(ftype, "other"), mode=int(mode, 8), size=int(size))
        elif tag == "X":
            h, sep, path = rest.partition("  ")
            if len(h) == 64 and sep and path.startswith("./"):
                entries.setdefault((cur, path[2:]), {})["sha256"] = h
        elif tag == "H" and rest.startswith("./"):
            headers.add((cur, rest[2:]))
        elif tag == "O":
            p = rest.strip()
            if p:
                owned.setdefault(cur, set()).add(p)
    out: dict[tuple[Root, str], RemoteEntry] = {}
    for (root, path), e in entries.items():
        base = path.rsplit("/", 1)[-1]
        if base.startswith(TEMP_PREFIX):
            stale.append((root, path))
            continue
        if path == OWNED_RECORD or "type" not in e:
            continue
        managed = e["type"] == "file" and ((root, path) in headers or path in owned.get(root, ()))
        out[(root, path)] = RemoteEntry(root, path, e["type"], e.get("sha256"), managed,
                                        e.get("mode"), e.get("size"))
    return RemoteManifest(server, dict(roots), out, frozenset(missing), frozenset(bad), sources,
                          {r: frozenset(v) for r, v in owned.items()}, {}, tuple(sorted(stale)), pending)


# ----------------------------------------------------------------------------- apply internals


@dataclass
class _Op:
    change: Change | None           # None for netprov's own ownership records
    action: Action
    root: Root
    live: str
    tmp: str
    bak: str
    mode: int
    content: bytes | None           # None → copy from source (binaries) or delete
    source: str | None = None
    secret: bool = False
    kind: Kind = Kind.SCRIPT


@dataclass
class _Ops:
    token: str
    ops: list[_Op]
    changes: list[Change]
    dirs: set[str]
    rel_dirs: set[tuple[str, str]]
    script_path: str
    conf_files: list[str]
    hosts_files: list[str]
    validate: bool

    @property
    def writes(self) -> list[_Op]:
        return [o for o in self.ops if o.action in (Action.CREATE, Action.UPDATE)]


class _Names:
    """Live, temporary and backup names of one apply (``.netprov.<token>.<n>.tmp|bak`` next to the live file)."""

    def __init__(self, roots: Mapping[Root, str], token: str) -> None:
        self.roots, self.token, self.n = roots, token, 0

    def root_dir(self, r: Root) -> str:
        if r not in self.roots:
            raise PathConfinementError(f"no directory configured for root {r.value!r}")
        return self.roots[r]

    def __call__(self, live: str) -> tuple[str, str, str]:
        self.n += 1
        d = posixpath.dirname(live)
        return live, f"{d}/{TEMP_PREFIX}{self.token}.{self.n}.tmp", f"{d}/{TEMP_PREFIX}{self.token}.{self.n}.bak"


def _build_ops(files: Sequence[Change], manifest: RemoteManifest | None, roots: Mapping[Root, str],
               token: str) -> _Ops:
    """The file operations of one apply: the pending file changes (refused ones left out), the ownership
    records they alter, where the stage script goes, and the files dnsmasq's test config is built of."""
    names = _Names(roots, token)
    files = [c for c in files if isinstance(c.payload, FilePayload)]
    changes = [c for c in files if c.is_change and not c.refused]
    ops, dirs, rel_dirs = _file_ops(changes, names)
    ops += _owned_ops(files, manifest, names, dirs)
    # The stage script goes next to the first file touched: that directory exists (DELETE) or is
    # created by the stage command's mkdir -p (CREATE/UPDATE).
    first_dir = posixpath.dirname(ops[0].live) if ops else min(roots.values())
    if ops and ops[0].action != Action.DELETE:
        dirs.add(first_dir)
    script_path = f"{first_dir}/{TEMP_PREFIX}{token}.stage.sh"
    validate = any(o.kind in (Kind.CONFIG, Kind.HOSTS) or o.root in (Root.DNSMASQ, Root.HOSTS)
                   for o in ops if o.change is not None)
    conf_files, hosts_files = _test_files(ops, manifest, roots) if validate else ([], [])
    return _Ops(token, ops, changes, dirs, rel_dirs, script_path, conf_files, hosts_files, validate)


def _file_ops(changes: Sequence[Change], names: _Names) -> tuple[list[_Op], set[str], set[tuple[str, str]]]:
    ops: list[_Op] = []
    dirs: set[str] = set()
    rel_dirs: set[tuple[str, str]] = set()
    for c in changes:
        p: FilePayload = c.payload
        rd = names.root_dir(p.root)
        live, tmp, bak = names(confine(rd, p.path))
        if c.action in (Action.CREATE, Action.UPDATE):
            f = p.file
            if f is None:
                raise PushError(f"{c.address}: plan has no file content to write")
            binary = Kind(f.kind) == Kind.BINARY
            ops.append(_Op(c, c.action, p.root, live, tmp, bak, effective_mode(f),
                           None if binary else f.content, f.source if binary else None, f.secret,
                           Kind(f.kind)))
            dirs.add(rd)
            parent = posixpath.dirname(p.path)
            if parent:
                dirs.add(posixpath.dirname(live))
                rel_dirs.add((rd, parent))
        else:
            ops.append(_Op(c, c.action, p.root, live, tmp, bak, 0, None, kind=p.kind))
    return ops, dirs, rel_dirs


def _owned_ops(files: Sequence[Change], manifest: RemoteManifest | None, names: _Names, dirs: set[str]) -> list[_Op]:
    """Updates of the ownership records (headerless binaries netprov owns) of the roots the changes touch."""
    if manifest is None:
        return []
    ops = []
    touched = {c.payload.root for c in files if c.is_change and not c.refused}
    for r in sorted(touched, key=lambda x: x.value):
        old = set(manifest.owned.get(r, frozenset()))
        new = set(old)
        for c in files:
            p: FilePayload = c.payload
            if p.root != r or c.refused:
                continue
            if c.action == Action.DELETE:
                new.discard(p.path)
            elif p.kind == Kind.BINARY:
                new.add(p.path)
        if new != old:
            rd = names.root_dir(r)
            live, tmp, bak = names(posixpath.join(rd, OWNED_RECORD))
            body = (f"# {HEADER_MARKER}: files under this root that netprov owns but that cannot "
                    "carry its header\n" + "".join(p + "\n" for p in sorted(new))).encode()
            # UPDATE semantics work whether or not the record exists (backup only if present).
            ops.append(_Op(None, Action.UPDATE, r, live, tmp, bak, 0o644, body))
            dirs.add(rd)
    return ops


def _test_files(ops: list[_Op], manifest: RemoteManifest | None, roots: Mapping[Root, str]
                ) -> tuple[list[str], list[str]]:
    """The test config's parts: every final drop-in and every final hostsdir file (staged or live)."""
    conf_files: list[str] = []
    hosts_files: list[str] = []
    written = {o.live: o.tmp for o in ops if o.action in (Action.CREATE, Action.UPDATE)}
    deleted = {o.live for o in ops if o.action == Action.DELETE}
    final: dict[str, tuple[Root, bool]] = {}
    if manifest is not None:
        for (r, p), e in manifest.entries.items():
            if r in (Root.DNSMASQ, Root.HOSTS) and r in roots and e.type == "file" and "/" not in p:
                final[posixpath.join(roots[r], p)] = (r, e.managed)
    for o in ops:
        if o.change is not None and o.action != Action.DELETE:
            final[o.live] = (o.root, True)
    for live, (r, managed) in sorted(final.items()):
        base = posixpath.basename(live)
        if live in deleted or base.startswith(".") or base.endswith("~"):
            continue
        path = written.get(live, live)
        if r == Root.DNSMASQ or any(o.live == live and o.kind == Kind.CONFIG for o in ops):
            if managed or base.endswith(".conf"):
                conf_files.append(path)
        elif r == Root.HOSTS:
            hosts_files.append(path)
    for o in ops:  # CONFIG/HOSTS files living in other roots
        if o.change is None or o.action == Action.DELETE or o.root in (Root.DNSMASQ, Root.HOSTS):
            continue
        if o.kind == Kind.CONFIG:
            conf_files.append(o.tmp)
        elif o.kind == Kind.HOSTS:
            hosts_files.append(o.tmp)
    return conf_files, hosts_files


def _stage_script(ops: _Ops, s: PxeSettings, user: str) -> tuple[str, bool]:
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
_BATCH = r"""
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


def _commit_script(ops: _Ops, activation: Activation, s: PxeSettings, user: str) -> str:
    pending = s.lock_path + ".pending"
    # The outcome goes to a status file too ("<token> running|done|rolled-back|down|commit-failed"):
    # if the connection is lost, netprov reconnects and reads what really happened.
    L = ["trap '' HUP PIPE", "set -u", f"P={q(pending)}", f"S={q(_status_path(s.lock_path))}",
         f"st() {{ printf '%s %s\\n' {ops.token} \"$1\" >> \"$S\" 2>/dev/null; :; }}", "st running", _BATCH]
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
        act = _wrap(cmd, s.sudo, user)
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


class _ChannelWriter(io.RawIOBase):
    """File-like sink that sends tar blocks into an SSH channel."""

    def __init__(self, ch) -> None:
        self.ch = ch
        self.sent = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self.ch.sendall(data)
        self.sent += len(data)
        return len(data)


def _add(tar: tarfile.TarFile, path: str, data: bytes, mode: int) -> None:
    ti = tarfile.TarInfo(path.lstrip("/"))
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = int(time.time())
    ti.uname = ti.gname = ""
    tar.addfile(ti, io.BytesIO(data))


def _after(out: str, marker: str, multiline: bool = False) -> str:
    i = out.find(marker)
    if i < 0:
        return ""
    rest = out[i + len(marker):]
    if not multiline:
        return rest.split("\n", 1)[0].strip()
    return rest.split("NETPROV-END", 1)[0].strip()[:4000]


def _stale_detail(out: str) -> str:
    lines = [ln.strip() for ln in out.splitlines()
             if "NETPROV-STALE" in ln or "FAILED" in ln or "No such file" in ln]
    return "; ".join(ln.replace("NETPROV-STALE", "").strip() for ln in lines if ln)[:1000] or "hash mismatch"


_LINE_RE = re.compile(r"at line (\d+) of (\S+)")


def _test_message(out: str, ops: _Ops) -> str:
    """dnsmasq's --test complaint, with temp names mapped back to the live names and
    inlined host lines traced to their hostsdir file."""
    body = out.split("NETPROV-TEST-FAILED", 1)[-1]
    msg, _, conf = body.partition("NETPROV-TEST-CONF")
    msg = msg.split("\n", 1)[-1].strip()
    tmp_to_live = {o.tmp: o.live for o in ops.ops}
    conf_lines = conf.strip("\n").split("\n")

    def explain(m: re.Match) -> str:
        n, fname = int(m.group(1)), m.group(2).rstrip(",.:")
        if fname in tmp_to_live:
            return f"at line {n} of {tmp_to_live[fname]} (new version)"
        if 0 < n <= len(conf_lines):
            src = None
            for ln in conf_lines[:n]:
                if ln.startswith("# netprov-source: "):
                    src = ln[len("# netprov-source: "):]
            line = conf_lines[n - 1]
            if src:
                return f"in {tmp_to_live.get(src, src)}: {line.removeprefix('dhcp-host=')!r}"
        return m.group(0)

    msg = _LINE_RE.sub(explain, msg)
    for tmp, live in tmp_to_live.items():
        msg = msg.replace(tmp, live)
    return msg
