"""Storage plan/apply speed against the TrueNAS simulator (printed numbers, not a timed test).

For N machines (10 / 100 / 1,000 / 10,000; ``--quick``: up to 1,000) and injected latency of
0 and 20 ms per call (``sim.knobs.latency``) it measures:

* plan on an empty NAS and on a converged NAS: API calls made (per phase) and wall time
  (read + pure planning);
* apply creating N machines: API calls and wall time (the apply's own re-read included);
* a per-resource reader, the way Terraform providers refresh: one query per object (zvol, extent,
  target, initiator group, mapping) with 10 in flight (Terraform's default -parallelism), for
  comparison with netprov's read (each kind queried once, all pipelined).

Usage: ``python benchmarks/bench_storage.py [--quick] [--profile 25.04] [--parallel 16]
[--sizes 10,100] [--per-resource-max 1000]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage
from netprov.core.inventory_load import parse_inventory
from netprov.core.storage import DesiredStorage, desired_storage, mark_comment, plan_storage, state_fingerprint
from truenas_sim import Simulator
from tests.unit.storage_helpers import inventory_text  # the same inventory the storage tests use

def desired_for(n: int) -> DesiredStorage:
    lines = [f'h{i:05d}: {{mac: "52:54:01:{i // 65536:02x}:{(i // 256) % 256:02x}:{i % 256:02x}"}}'
             for i in range(1, n + 1)]
    loaded = parse_inventory(inventory_text("\n".join(lines)), "bench.yaml")
    return desired_storage(loaded, "nas", {})


def _serve(profile: str, latency: float, conn) -> None:
    """Child process: run the simulator (its own interpreter, so it does not share our GIL)."""
    sim = Simulator(profile=profile).start()
    sim.knobs.latency = latency
    conn.send((sim.url, sim.api_key))
    conn.recv()          # wait for "stop"
    sim.stop()


class Bench:
    def __init__(self, profile: str, latency: float, subprocess: bool = True) -> None:
        self.proc = self.sim = None
        if subprocess:
            ctx = multiprocessing.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_serve, args=(profile, latency, child), daemon=True)
            self.proc.start()
            url, key = self.conn.recv()
        else:
            self.sim = Simulator(profile=profile).start()
            url, key = self.sim.url, self.sim.api_key
        self.client = TrueNASClient.connect(url, Credentials(api_key=key), timeout=600)
        self.client.call("pool.dataset.create", {"name": "tank/netboot", "type": "FILESYSTEM"})
        if self.sim is not None:
            self.sim.knobs.latency = latency
        self.st = TrueNASStorage(self.client, "nas", None)

    def close(self) -> None:
        self.client.close()
        if self.sim is not None:
            self.sim.stop()
        if self.proc is not None:
            self.conn.send("stop")
            self.proc.join(10)

    def calls(self) -> int:
        return sum(self.client.round_trips.values())

    def plan(self, desired: DesiredStorage) -> tuple[list, str, int, float, float]:
        """-> changes, fingerprint, calls, wall time, netprov's own CPU share (parse + plan + fingerprint)."""
        c0, t0 = self.calls(), time.perf_counter()
        raw = self.st.read_raw(desired)
        t1 = time.perf_counter()
        actual = self.st.parse_read(desired, raw)
        changes = plan_storage(desired, actual)
        fp = state_fingerprint(actual)
        t2 = time.perf_counter()
        return changes, fp, self.calls() - c0, t2 - t0, t2 - t1

    def apply(self, desired: DesiredStorage, changes: list, fp: str, parallel: int, bulk: bool | None):
        c0, t0 = self.calls(), time.perf_counter()
        report = self.st.apply(changes, expected_fingerprint=fp, desired=desired, parallel=parallel, bulk=bulk)
        if not report.complete:
            raise SystemExit("apply did not complete:\n" + "\n".join(report.lines()[:20]))
        return self.calls() - c0, time.perf_counter() - t0

    def per_resource_read(self, desired: DesiredStorage, parallelism: int = 10) -> tuple[int, float]:
        """One query per object, ``parallelism`` in flight: how a Terraform provider refreshes."""
        # ids as a provider would have them in its state file
        tids = {t["name"]: t["id"] for t in self.client.call("iscsi.target.query", [], {"select": ["id", "name"]})}
        calls = []
        for m in desired.machines.values():
            calls.append(("pool.dataset.query", [["id", "=", m.zvol]], {"extra": {"retrieve_children": False}}))
            calls.append(("iscsi.extent.query", [["name", "=", m.target]], {}))
            calls.append(("iscsi.target.query", [["name", "=", m.target]], {}))
            calls.append(("iscsi.initiator.query", [["comment", "=", mark_comment(m.zvol)]], {}))
            calls.append(("iscsi.targetextent.query", [["target", "=", tids.get(m.target, 0)]], {}))
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(lambda c: self.client.call(c[0], c[1], c[2]), calls))
        return len(calls), time.perf_counter() - t0


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 / 100 / 1,000 machines only")
    ap.add_argument("--sizes", default=None, help="comma-separated machine counts (overrides --quick)")
    ap.add_argument("--profile", default="25.04")
    ap.add_argument("--parallel", type=int, default=16, help="calls in flight during apply (< 20)")
    ap.add_argument("--bulk", choices=["auto", "on", "off"], default="auto",
                    help="apply through core.bulk: auto (by measured round trip, the default), on, off")
    ap.add_argument("--per-resource-max", type=int, default=1000,
                    help="skip the per-resource reader above this many machines (it is slow by design)")
    ap.add_argument("--latencies", default="0,20", help="injected latency per call, in ms")
    ap.add_argument("--in-process", action="store_true",
                    help="run the simulator in this process (shares the GIL with the client: slower)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else \
        ([10, 100, 1000] if args.quick else [10, 100, 1000, 10000])
    latencies = [float(x) / 1000 for x in args.latencies.split(",")]

    rows = []
    for n in sizes:
        desired = desired_for(n)
        for lat in latencies:
            b = Bench(args.profile, lat, subprocess=not args.in_process)
            try:
                changes, fp, plan0_calls, plan0_s, _ = b.plan(desired)
                apply_calls, apply_s = b.apply(desired, changes, fp, args.parallel,
                                               {"auto": None, "on": True, "off": False}[args.bulk])
                changes2, _, plan_calls, plan_s, plan_cpu = b.plan(desired)
                left = sum(c.is_change for c in changes2)
                if left:
                    raise SystemExit(f"N={n}: {left} changes left after apply")
                pr_calls = pr_s = None
                if n <= args.per_resource_max:
                    pr_calls, pr_s = b.per_resource_read(desired)
            finally:
                b.close()
            row = (n, lat, plan0_calls, plan0_s, apply_calls, apply_s, plan_calls, plan_s, plan_cpu, pr_calls, pr_s)
            rows.append(row)
            print(f"# N={n} latency={lat * 1000:.0f}ms plan={fmt_s(plan_s)} ({plan_calls} calls) "
                  f"apply={fmt_s(apply_s)} ({apply_calls} calls)", file=sys.stderr, flush=True)

    print(f"\nStorage plan/apply against the simulator (profile {args.profile}, "
          f"{'in-process' if args.in_process else 'separate process'}, apply parallel={args.parallel}"
          f", core.bulk {args.bulk}; per-resource reader: 10 in flight)\n")
    print("| machines | latency | plan, empty NAS | apply (create all) | plan, converged | of which netprov CPU | "
          "per-resource read | per-resource / netprov read |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, lat, p0c, p0s, ac, as_, pc, ps, pcpu, rc, rs in rows:
        ratio = f"{rs / ps:.0f}x" if rs is not None and ps > 0 else "—"
        pr = f"{rc} calls, {fmt_s(rs)}" if rc is not None else "not run"
        print(f"| {n:,} | {lat * 1000:.0f} ms | {p0c} calls, {fmt_s(p0s)} | {ac:,} calls, {fmt_s(as_)} | "
              f"{pc} calls, {fmt_s(ps)} | {fmt_s(pcpu)} | {pr} | {ratio} |")


if __name__ == "__main__":
    main()
