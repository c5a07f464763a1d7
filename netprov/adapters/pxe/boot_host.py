"""A PXE server reached over SSH, the boot host port: read what it holds, push and activate boot files.

``PxeHost`` composes the parts: the read's walk script and parsers are in ``manifest.py``, the push's steps
in ``push.py`` (its file operations in ``fileops.py``, its server-side scripts in ``scripts.py``), the
settings in ``settings.py``. This module holds the connection and the order of the steps.

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

import posixpath
import re
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Self

from netprov.adapters.pxe import walk
from netprov.adapters.pxe.fileops import Ops, build_ops
from netprov.adapters.pxe.push import Progress, Push, PushReport
from netprov.adapters.pxe.pxe_settings import PxeSettings
from netprov.adapters.pxe.ssh import SshConnection, connect
from netprov.core.bootfiles import BootFile, Kind, Root
from netprov.core.fileplan import (
    Activation,
    FilePayload,
    RemoteManifest,
    activation_of,
    check_ready,
    confine,
    text_wanted,
)
from netprov.core.plan import Action, Change
from netprov.core.secrets import mask_secrets
from netprov.core.text import one_line
from netprov.errors import ConnectError, PathConfinementError, PushError

__all__ = ["PushReport", "PxeHost", "PxeSettings", "confine"]


class PxeHost:
    """One PXE server. Opens a single SSH connection lazily; ``close()`` (or ``with``) ends it."""

    def __init__(self, settings: PxeSettings, *, connection: SshConnection | None = None) -> None:
        self.settings = settings
        self._conn = connection
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


    # -- read -----------------------------------------------------------------------------
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
        try:
            res = self.conn.run(walk.walk_command(self.settings, self.conn.user, rootmap, srcs),
                                timeout=self.settings.command_timeout, what="reading the files it holds")
        except ConnectError as exc:
            raise PushError(f"reading files on {server} failed: {exc} (nothing was changed)") from None
        if "END|" not in res.out or res.rc != 0:
            raise PushError(f"reading files on {server} failed (exit {res.rc}; the answer was incomplete): "
                            f"{one_line(mask_secrets(res.err), 500)} (nothing was changed)")
        preflight = walk.preflight(server, rootmap, res.out) + walk.pihole_problems(self.settings, res.out)
        try:
            manifest = walk.parse_manifest(server, rootmap, res.out)
        except (ValueError, KeyError, IndexError) as exc:
            raise PushError(f"reading files on {server}: the answer was garbled ({exc}); nothing was "
                            "changed, try again") from None
        self._last = replace(manifest, preflight=tuple(preflight))
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
            res = self.conn.run(walk.fetch_command(full), timeout=self.settings.command_timeout,
                                what="reading the old contents of changed files")
        except ConnectError as exc:
            raise PushError(f"reading files on {server} failed: {exc} (nothing was changed)") from None
        bad = PushError(f"reading files on {server}: the answer was incomplete or garbled (exit {res.rc}); "
                        "nothing was changed, try again")
        try:
            texts = walk.parse_fetched(keys, res.stdout)
        except ValueError:
            raise bad from None
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
        ops = build_ops(files, manifest, roots, _secrets.token_hex(4))   # confines every path first
        rt0 = self.round_trips
        if not ops.changes and activation == Activation.NONE:
            return PushReport(s.server_name, seconds=time.monotonic() - t0)

        check_ready(manifest, changes)        # the same refusal the plan made, should the server have changed
        secrets = tuple({x for c in files if c.payload.file is not None for x in c.payload.file.secrets})
        push = Push(s, lambda: self.conn)
        lock = push.lock(list(roots.values()), ops.token)
        note("lock", None)
        try:
            validated = False
            uploaded = 0
            if ops.changes:
                uploaded, validated = push.stage(ops, roots, note, secrets)
            note("commit", None)
            output = push.commit_and_activate(ops, activation, secrets)
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


    def _after_lost_commit(self, ops: Ops, activation: Activation, why: str) -> str:
        """What became of a commit whose answer was lost (``Push.after_lost_commit``, over this host's
        connection)."""
        return Push(self.settings, lambda: self.conn).after_lost_commit(self._conn, ops, activation, why)
