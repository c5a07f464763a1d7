"""The push of one apply to one PXE server, over its SSH connection: lock, stage + test, commit + activate.

Runs ``scripts.py``'s scripts with ``fileops.py``'s operations and turns each outcome into a report line or a
PushError (rolled back, DHCP down, lost connection checked again); ``boot_host.PxeHost.apply`` decides
whether to push at all and calls these steps in order. It does not read the manifest nor plan files.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from netprov.adapters.pxe.fileops import Ops
from netprov.adapters.pxe.scripts import LOCK, commit_script, q, sh_command, stage_script, status_path
from netprov.adapters.pxe.pxe_settings import PxeSettings
from netprov.adapters.pxe.ssh import SshConnection, SshDeadline, collect, connect, keepalive_interval
from netprov.core.bootfiles import Root
from netprov.core.fileplan import Activation, confine
from netprov.core.secrets import mask_secrets
from netprov.core.text import one_line
from netprov.errors import ConnectError, NetprovError, PathConfinementError, PushError, StalePlanError

Progress = Callable[[str, "Change | None"], None]


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



class Push:
    """The push steps of one apply on one server (see ``boot_host``'s docstring for what each guarantees).
    ``connection`` gives the host's connection at each step (it reconnects when a step lost it)."""

    def __init__(self, settings: PxeSettings, connection: Callable[[], SshConnection]) -> None:
        self.settings = settings
        self._connection = connection

    @property
    def conn(self) -> SshConnection:
        return self._connection()

    def lock(self, root_dirs: list[str], token: str = "-") -> Lock:
        s = self.settings
        conn = self.conn
        beat = keepalive_interval(s.keepalive, s.connect_timeout)
        hold = max(2, int(beat * 4 + 0.999))
        lost = (f"the connection to {s.server_name} was lost while taking the lock {s.lock_path}; "
                "nothing was changed")
        try:
            with conn.deadline(s.command_timeout, "taking the lock"):
                ch = conn.open_channel(sh_command(LOCK, [s.lock_path, token, str(hold), *root_dirs]),
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
            return Lock(ch, beat)
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

    def stage(self, ops: Ops, roots: Mapping[Root, str], note: Progress,
               secrets: tuple[str, ...] = ()) -> tuple[int, bool]:
        s = self.settings
        conn = self.conn
        script, validated = stage_script(ops, s, conn.user)
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

    def commit_and_activate(self, ops: Ops, activation: Activation, secrets: tuple[str, ...] = ()) -> str:
        s = self.settings
        script = commit_script(ops, activation, s, self.conn.user)
        conn = self.conn
        try:
            res = conn.run("sh -s", stdin=script.encode(), timeout=s.command_timeout,
                                what="committing the new files" + (" and activating dnsmasq" if activation
                                                                   != Activation.NONE else ""))
        except ConnectError as exc:
            return self.after_lost_commit(conn, ops, activation, str(exc))
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
        return self.after_lost_commit(conn, ops, activation, f"the commit command ended with exit {res.rc} and "
                                       f"no verdict: {one_line(mask_secrets(out + res.err, secrets), 300)}")

    def after_lost_commit(self, conn: SshConnection | None, ops: Ops, activation: Activation, why: str) -> str:
        """The commit's answer was lost. The server-side script runs on (immune to SIGHUP) and
        records its outcome next to the lock; reconnect once and read it, then say what happened.
        Returns normally when the server finished the commit. ``conn``: the connection the commit used."""
        s = self.settings
        server = s.server_name
        status = status_path(s.lock_path)
        token = ops.token
        polls = max(1, int(s.command_timeout / 0.5))
        mine = f"grep {q('^' + token + ' ')} {q(status)} 2>/dev/null | tail -n 1"
        probe = (f"i=0; while [ $i -lt {polls} ] && [ \"$({mine})\" = {q(token + ' running')} ]; do sleep 0.5; "
                 f"i=$((i+1)); done; {mine}; :")
        verdict = None
        try:
            if isinstance(conn, SshConnection) or conn is None:
                with connect(s.host, port=s.port, user=s.user, identity_file=s.identity_file,
                             known_hosts=s.known_hosts, accept_new_host_key=False, ssh_config=s.ssh_config,
                             timeout=s.connect_timeout, keepalive=s.keepalive) as conn2:
                    res = conn2.run(probe, timeout=s.command_timeout + 5, what="checking the commit's outcome")
            else:   # this machine (LocalConnection): nothing to reconnect
                res = conn.run(probe, timeout=s.command_timeout + 5, what="checking the commit's outcome")
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



class Lock:
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


def _test_message(out: str, ops: Ops) -> str:
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
