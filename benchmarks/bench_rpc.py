"""Round trips and pipelining throughput of netprov's TrueNAS client against the simulator.

    /tmp/venv/bin/python benchmarks/bench_rpc.py [--latency 0.02] [--calls 200] [--profile 25.04]

With a simulated per-call latency (default 20 ms), prints wall-clock time and calls/s for:
  * sequential ``call()`` (one call in flight);
  * pipelined ``call_many()`` with max_inflight 1, 5, 10, 20 on one connection;
  * ``bulk()`` of the same number of creates through ``core.bulk`` (split under 64 KiB), with the
    round trips it needed (core.bulk + core.get_jobs polls) versus one call per item.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import time

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from truenas_sim import Simulator

API_KEY = "1-" + "b" * 64


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description="TrueNAS RPC client benchmark against the simulator")
    ap.add_argument("--latency", type=float, default=0.02, help="simulated per-call latency, seconds")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--profile", default="25.04")
    args = ap.parse_args()
    n = args.calls
    creds = Credentials(api_key=API_KEY)
    with Simulator(profile=args.profile, api_key=API_KEY).start() as sim:
        sim.knobs.latency = args.latency
        with TrueNASClient.connect(sim.url, creds, timeout=120) as c:
            print(f"TrueNAS sim {c.version} ({c.protocol}), latency {args.latency * 1000:.0f} ms, {n} calls")
            _, dt = timed(lambda: [c.call("iscsi.global.config") for _ in range(n)])
            print(f"  sequential call()              {dt:7.3f} s  {n / dt:8.1f} calls/s")
        for k in (1, 5, 10, 20):
            with TrueNASClient.connect(sim.url, creds, timeout=120, max_inflight=k) as c:
                _, dt = timed(lambda: c.call_many([("iscsi.global.config", ())] * n))
                print(
                    f"  call_many(max_inflight={k:2d})      {dt:7.3f} s  {n / dt:8.1f} calls/s"
                    f"  (peak in flight {c.peak_inflight})"
                )
        with TrueNASClient.connect(sim.url, creds, timeout=120) as c:
            items = [
                ({"initiators": [f"iqn.2005-10.org.example:b{i}"], "comment": "netprov " + "x" * 600},)
                for i in range(n)
            ]
            out, dt = timed(lambda: c.bulk("iscsi.initiator.create", items))
            errors = sum(isinstance(o, Exception) for o in out)
            rt = c.round_trips["core.bulk"] + c.round_trips["core.get_jobs"]
            print(
                f"  bulk(iscsi.initiator.create)   {dt:7.3f} s  {n / dt:8.1f} items/s  "
                f"{c.round_trips['core.bulk']} core.bulk + {c.round_trips['core.get_jobs']} core.get_jobs "
                f"= {rt} round trips for {n} items ({errors} errors)"
            )


if __name__ == "__main__":
    main()
