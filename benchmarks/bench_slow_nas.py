"""A big, slow NAS: plan and apply of 1,000 machines with the simulator's cost model (printed numbers).

The simulator (in its own process) is made as slow as a real NAS (issue 12, item 4):

* ``--latency-ms`` (20): slept before every reply, inside the connection's execution slot
  (``Knobs.latency``; the middleware runs 10 calls of a connection at once);
* ``--query-ms`` (10): what ``pool.dataset.query`` costs per dataset read with every property:
  ``Knobs.dataset_cost`` = 20 % of it per dataset, ``Knobs.property_cost`` = the other 80 % spread over
  the 17 ZFS properties the simulator models for a zvol (user properties cost the same each). A query
  that asks for 4 properties pays ~2 + 4 x 0.47 ms (+ user properties) per dataset;
* ``--create-ms`` (100): per ``pool.dataset.create`` (``Knobs.call_cost``), in a ``core.bulk`` job too
  (items run one after another there, with the job's progress after each).

The client uses netprov's defaults (30 s without a sign of life; no overall limit on a job that makes
progress). It measures:

* plan on the empty NAS: wall time, calls, bytes received;
* apply creating every machine: wall time, calls (by method), no failure and no timeout allowed;
* plan on the converged NAS: wall time, calls (target: <= 10), bytes received, changes left (must be 0);
* the same dataset query without ``extra.properties`` (what the NAS would do before this change asked
  for only the properties netprov reads): wall time and bytes.

Usage: ``python benchmarks/bench_slow_nas.py [--machines 1000] [--profile 25.04] [--bulk auto|on|off]``.
Takes a few minutes: with ``core.bulk`` the NAS creates zvols one after another (1,000 x 100 ms).

Measured 2026-12-07 (2 cores, defaults: 1,000 machines, 20 ms, 10 ms/dataset, 100 ms/zvol, bulk auto):

| profile | apply (create all) | converged plan | dataset query as sent | same, every property |
|---|---:|---:|---:|---:|
| 25.04 | 110.4 s, 263 calls, 19.0 MB | 5.3 s, 10 calls, 1.38 MB | 5.3 s, 819 kB | 11.6 s, 2.38 MB |
| 25.10 | 110.6 s, 267 calls, 19.2 MB | 5.7 s, 10 calls, 1.33 MB | 5.4 s, 767 kB | 11.4 s, 767 kB |
| 13    | 106.2 s, 254 calls, 17.3 MB | 10.8 s, 10 calls, 1.19 MB | 10.9 s, 620 kB | 10.9 s, 620 kB |

Every apply converged with no timeout and no failure (5,002 changes). CORE 13 ignores ``properties``.
``--bulk off`` on 25.04 (pipelined, 8 in flight): apply 34.8 s, 5,014 calls, 3.4 MB: ``core.bulk`` runs
its items one after another, so a slow create costs its full time per zvol, while pipelined creates
overlap in the middleware's 10 execution slots. Most of the apply's bytes are ``core.get_jobs`` polls
(each answers the whole job, its ``arguments`` included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.adapters.truenas.backend import TrueNASStorage, dataset_read_query
from netprov.core.storage import plan_storage, state_fingerprint
from truenas_sim import Simulator
from truenas_sim.methods.dataset_read import ZFS_PROPS, ZFS_VOLUME_PROPS

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_storage import desired_for  # noqa: E402  (the same 1,000-machine inventory)

ZVOL_PROPS = len(ZFS_PROPS) + len(ZFS_VOLUME_PROPS)


def knobs_for(latency: float, query: float, create: float) -> dict:
    return {"latency": latency, "dataset_cost": 0.2 * query, "property_cost": 0.8 * query / ZVOL_PROPS,
            "call_cost": {"pool.dataset.create": create}}


def _serve(profile: str, knobs: dict, conn) -> None:
    sim = Simulator(profile=profile).start()
    conn.send((sim.url, sim.api_key))
    conn.recv()                  # "go": the parent dataset exists, switch the cost model on
    for k, v in knobs.items():
        setattr(sim.knobs, k, v)
    conn.send("ok")
    conn.recv()                  # "stop"
    sim.stop()


class Counting:
    """Bytes of every message the client receives (wraps the reader's routing of each message)."""

    def __init__(self, client: TrueNASClient) -> None:
        self.bytes = 0
        inner = client._handle

        def handle(raw):
            self.bytes += len(raw)
            return inner(raw)

        client._handle = handle  # type: ignore[method-assign]


def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.1f} s"


def fmt_b(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=1000)
    ap.add_argument("--profile", default="25.04")
    ap.add_argument("--latency-ms", type=float, default=20)
    ap.add_argument("--query-ms", type=float, default=10, help="per dataset read with every property")
    ap.add_argument("--create-ms", type=float, default=100, help="per zvol created")
    ap.add_argument("--bulk", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--parallel", type=int, default=8,
                    help="calls in flight during apply (netprov's default)")
    args = ap.parse_args()
    knobs = knobs_for(args.latency_ms / 1000, args.query_ms / 1000, args.create_ms / 1000)

    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(args.profile, knobs, child), daemon=True)
    proc.start()
    url, key = conn.recv()
    client = TrueNASClient.connect(url, Credentials(api_key=key))      # netprov's default timeouts
    rx = Counting(client)
    client.call("pool.dataset.create", {"name": "tank/netboot", "type": "FILESYSTEM"})
    conn.send("go")
    conn.recv()
    st = TrueNASStorage(client, "nas", None)
    desired = desired_for(args.machines)
    out = []

    def measure(what: str, fn):
        c0, b0, t0 = sum(client.round_trips.values()), rx.bytes, time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
        calls, nbytes = sum(client.round_trips.values()) - c0, rx.bytes - b0
        print(f"# {what}: {fmt_s(dt)}, {calls} calls, {fmt_b(nbytes)} received", file=sys.stderr, flush=True)
        out.append((what, dt, calls, nbytes))
        return res

    try:
        actual = measure("plan, empty NAS", lambda: st.read(desired))
        changes = plan_storage(desired, actual)
        before = client.round_trips.copy()
        report = measure("apply (create all)", lambda: st.apply(
            changes, expected_fingerprint=state_fingerprint(actual), desired=desired, parallel=args.parallel,
            bulk={"auto": None, "on": True, "off": False}[args.bulk]))
        by_method = client.round_trips - before
        if not report.complete:
            print("apply did not complete:\n" + "\n".join(report.lines()[-20:]))
            raise SystemExit(1)
        actual2 = measure("plan, converged NAS", lambda: st.read(desired))
        left = [c.address for c in plan_storage(desired, actual2) if c.is_change]
        filters, options = dataset_read_query("tank/netboot", st.version)
        extra = {k: v for k, v in options.get("extra", {}).items() if k != "properties"}
        unlimited = dict(options, extra=extra)
        measure("dataset query as sent", lambda: client.call("pool.dataset.query", filters, options))
        measure("same query, every property", lambda: client.call("pool.dataset.query", filters, unlimited))
    finally:
        client.close()
        conn.send("stop")
        proc.join(10)

    print(f"\nSlow NAS: {args.machines:,} machines, profile {args.profile}, latency {args.latency_ms:g} ms, "
          f"{args.query_ms:g} ms per dataset read (every property), {args.create_ms:g} ms per zvol created, "
          f"core.bulk {args.bulk}, parallel {args.parallel}; client timeout 30 s (netprov's default)\n")
    print("| step | wall time | calls | bytes received |")
    print("|---|---:|---:|---:|")
    for what, dt, calls, nbytes in out:
        print(f"| {what} | {fmt_s(dt)} | {calls:,} | {fmt_b(nbytes)} |")
    print(f"\napply calls by method: {dict(sorted(by_method.items()))}")
    print(f"converged plan: {out[2][2]} calls (target <= 10), {len(left)} changes left "
          f"({'converged' if not left else 'NOT converged'}); apply: {len(report.done)} changes done, "
          f"{len(report.failed)} failed, no timeout")


if __name__ == "__main__":
    main()
