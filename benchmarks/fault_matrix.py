"""Run issue 10's fault matrix and print its closing table.

    .venv/bin/python benchmarks/fault_matrix.py            # the full matrix: every NAS call k x fail/drop/lose
                                                           # x both protocols, PXE faults (sshd), SIGINT, races
    .venv/bin/python benchmarks/fault_matrix.py --quick    # a third of the NAS cells (the fault rotates with k)
    .venv/bin/python benchmarks/fault_matrix.py --only nas --json out.json

The cells are the ones tests/faults runs (see tests/faults/matrix.py for what each checks). The table
counts: faults injected, reruns converged, objects lost, orphans (after the rerun), tracebacks and
secrets leaked; all but the first two must be 0. Failing cells are listed with their first problems.
Needs root for the PXE cells (a real sshd); they are left out otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults import matrix as fm  # noqa: E402
from tests.faults import procfaults as pf  # noqa: E402
from tests.faults import pxefaults as px  # noqa: E402

PROFILES = ("25.04", "13")


def run_nas(base: Path, quick: bool, say) -> list[fm.CellResult]:
    out = []
    for p, profile in enumerate(PROFILES):
        w = fm.World(base / f"nas-{profile}", profile)
        say(f"NAS {profile}: a clean apply makes {w.calls} calls")
        try:
            for k in range(1, w.calls + 1):
                for f, fault in enumerate(fm.NAS_FAULTS):
                    if not quick or (k + p) % len(fm.NAS_FAULTS) == f:
                        out.append(fm.nas_fault_cell(w, fault, k))
                        say(_line(out[-1], w.call_log[k - 1]))
        finally:
            w.close()
    return out


def run_pxe(base: Path, say) -> list[fm.CellResult]:
    if os.geteuid() != 0:
        say("PXE cells left out: they need root (a real sshd)")
        return []
    from tests.support.sshd import SshServer

    srv = SshServer.start(base / "sshd")
    out = []
    try:
        lab = px.PxeLab(base / "pxe-lab", srv)
        try:
            for mode in px.PXE_FAULTS:
                out.append(px.pxe_fault_cell(lab, mode))
                say(_line(out[-1]))
        finally:
            lab.close()
    finally:
        srv.stop()
    return out


def run_procs(base: Path, say) -> list[fm.CellResult]:
    out = []
    w = fm.World(base / "sigint", test_command=pf.SLOW_TEST)
    try:
        for phase in pf.SIGINT_PHASES:
            out.append(pf.sigint_cell(w, phase, base))
            say(_line(out[-1]))
    finally:
        w.close()
    for kind in pf.CONCURRENT:
        out.append(pf.concurrent_cell(kind, base / kind))
        say(_line(out[-1]))
    return out


def _line(r: fm.CellResult, method: str = "") -> str:
    status = "ok" if not r.problems else f"FAIL ({len(r.problems)})"
    return f"  {r.name:<28} {method:<28} {r.seconds:5.2f}s  {status}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="NAS cells: one fault per k (rotating), not all three")
    ap.add_argument("--only", choices=("nas", "pxe", "procs"), action="append", help="run only these groups")
    ap.add_argument("--json", type=Path, help="write every cell's result here")
    ap.add_argument("--quiet", action="store_true", help="no per-cell lines")
    args = ap.parse_args(argv)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    groups = args.only or ["nas", "pxe", "procs"]
    t0 = time.monotonic()
    results: list[fm.CellResult] = []
    with tempfile.TemporaryDirectory(prefix="netprov-fault-matrix-") as d:
        base = Path(d)
        if "nas" in groups:
            results += run_nas(base, args.quick, say)
        if "pxe" in groups:
            results += run_pxe(base, say)
        if "procs" in groups:
            results += run_procs(base, say)
    seconds = time.monotonic() - t0
    if args.json:
        fm.save_results(args.json, results)
    failing = [r for r in results if r.problems]
    print()
    print(f"fault matrix: {len(results)} cells in {seconds:.0f} s, {len(failing)} failing")
    print()
    print("| faults injected | reruns converged | objects lost | orphans | tracebacks | secrets leaked |")
    print("|---:|---:|---:|---:|---:|---:|")
    t = fm.cell_report(results)
    print("| " + " | ".join(str(t[k]) for k in ("faults injected", "reruns converged", "objects lost", "orphans",
                                                 "tracebacks", "secrets leaked")) + " |")
    if failing:
        print()
        for r in failing:
            print(f"{r.name}:")
            for p in r.problems[:4]:
                print(f"    {p[:200]}")
            if len(r.problems) > 4:
                print(f"    ... and {len(r.problems) - 4} more")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
