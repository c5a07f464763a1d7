"""Benchmark: push 1,000 iPXE scripts to a local sshd (first push, then unchanged push).

    sudo /tmp/venv/bin/python benchmarks/bench_push.py [--files 1000] [--sftp-compare]

Prints, for each phase, the SSH round trips counted by the adapter (every
exec_command / channel = 1) and the wall time. The unchanged push must be ONE read
round trip and upload nothing (asserted). ``--sftp-compare`` also times uploading the
same files one by one over SFTP (paramiko, pipelined writes) — the alternative the
adapter's single tar stream replaced.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netprov.adapters.pxe.boot_host import PxeHost, PxeSettings
from netprov.core.bootfiles import BootFile, Kind, Root
from tests.support import cleanup
from tests.support.sshd import SshServer

SERVER = "bench"


def scripts(n: int, version: int = 1) -> list[BootFile]:
    out = []
    for i in range(n):
        mac = f"52-54-00-{i >> 16 & 255:02x}-{i >> 8 & 255:02x}-{i & 255:02x}"
        body = (f"#!ipxe\n# Managed by netprov (v{version})\nset initiator-iqn iqn.2026-11.lab:node{i:04d}\n"
                f"set username node{i:04d}\nset password s3cret{i:04d}\n"
                f"sanboot iscsi:10.99.0.2::::iqn.2005-10.org.freenas.ctl:node{i:04d} || goto failed\n"
                ":failed\necho boot failed; shell\n")
        out.append(BootFile(SERVER, Root.TFTP, f"{mac}.ipxe", body.encode(), Kind.SCRIPT, secret=True,
                            secrets=(f"s3cret{i:04d}",)))
    return out


def phase(name: str, host: PxeHost, files: list[BootFile], diffs: bool = False) -> None:
    rt0, t0 = host.round_trips, time.perf_counter()
    plan = host.plan(files, diffs=diffs)
    rt_plan, t_plan = host.round_trips - rt0, time.perf_counter() - t0
    rep = host.apply(plan)
    total = time.perf_counter() - t0
    print(f"{name:<22} changes={len(plan.pending):>5}  round trips: plan {rt_plan} + apply {rep.round_trips}"
          f" = {host.round_trips - rt0:<2}  uploaded {rep.bytes_uploaded / 1024:8.1f} KiB   "
          f"plan {t_plan:6.3f}s  apply {rep.seconds:6.3f}s  total {total:6.3f}s")
    return plan, rep, rt_plan


def sftp_compare(srv: SshServer, files: list[BootFile], dest: str) -> None:
    from netprov.adapters.pxe.ssh import connect

    conn = connect(**srv.settings_kwargs())
    sftp = conn._client.open_sftp()
    try:
        sftp.mkdir(dest)
    except OSError:
        pass
    t0 = time.perf_counter()
    for f in files:
        with sftp.open(f"{dest}/.tmp.{f.path}", "wb") as fh:
            fh.set_pipelined(True)
            fh.write(f.content)
        sftp.chmod(f"{dest}/.tmp.{f.path}", 0o640)
        sftp.posix_rename(f"{dest}/.tmp.{f.path}", f"{dest}/{f.path}")
    print(f"{'sftp per-file (ref)':<22} {len(files)} files: open+write+close+chmod+rename each "
          f"({len(files) * 5} SFTP requests, sequential)  {time.perf_counter() - t0:6.3f}s")
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--sftp-compare", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="netprov-bench-") as d:
        srv = SshServer.start(Path(d) / "sshd")
        try:
            roots = {Root.TFTP: f"{d}/tftp"}
            settings = PxeSettings(server=SERVER, roots=roots, lock_path=f"{d}/netprov.lock",
                                   restart_command="true", reload_command="true", **srv.settings_kwargs())
            files = scripts(a.files)
            with PxeHost(settings) as host:
                t0 = time.perf_counter()
                host.conn  # noqa: B018 - connect
                print(f"connect: {time.perf_counter() - t0:.3f}s")
                phase("first push", host, files)
                _, rep, rt = phase("unchanged push", host, files)
                assert rt == 1 and rep.round_trips == 0 and rep.bytes_uploaded == 0, "unchanged push not minimal"
                phase("10 changed (+diffs)", host, scripts(10, 2) + files[10:], diffs=True)
                phase("all changed", host, scripts(a.files, 3))
            if a.sftp_compare:
                sftp_compare(srv, files, f"{d}/sftp")
        finally:
            srv.stop()
            cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
