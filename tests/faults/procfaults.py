"""Cells that need netprov as a real process: SIGINT in each phase, and two applies at once.

netprov runs as ``python -m netprov`` (a user's process: its own SIGINT handler, its own connections);
the simulator runs in this process, with latency so that each phase lasts long enough to be hit.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faults import matrix as fm

SIGINT_PHASES = ("create", "push", "delete")
CONCURRENT = ("same-inventory", "disjoint-targets", "two-inventories")

# The push phase is a few local shell commands; a slower `dnsmasq --test` makes it a window to hit.
SLOW_TEST = "sleep 1; " + fm.default_test_command()


# `python -m netprov ARGS`, but held at a gate: the modules are imported first, then the process waits for
# one byte on stdin. Two applies released together start their work within a millisecond of each other.
GATED = """
import runpy, sys
import netprov.cli.app, netprov.cli.commands.plan_apply, netprov.engine.run  # noqa: F401
import netprov.adapters.truenas.rpc, netprov.adapters.truenas.backend, netprov.adapters.pxe.boot_host  # noqa
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read(1)
sys.argv = ["netprov", *sys.argv[1:]]
runpy.run_module("netprov", run_name="__main__", alter_sys=True)
"""


def spawn(args: list[str], env: dict[str, str], home: Path, log: Path, *, gated: bool = False) -> subprocess.Popen:
    out = open(log.with_suffix(".out"), "w")   # noqa: SIM115 - closed by finish()
    err = open(log.with_suffix(".err"), "w")   # noqa: SIM115
    cmd = [sys.executable, "-c", GATED, *args] if gated else [sys.executable, "-m", "netprov", *args]
    p = subprocess.Popen(cmd, stdout=out, stderr=err, env=fm.subprocess_env(env, home), cwd=fm.ROOT,
                         stdin=subprocess.PIPE if gated else subprocess.DEVNULL)
    p.fm_files = (out, err, log)  # type: ignore[attr-defined]
    return p


def release(procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    """Wait until every gated process is ready, then let them all go at once."""
    deadline = time.monotonic() + timeout
    for p in procs:
        log = p.fm_files[2].with_suffix(".out")  # type: ignore[attr-defined]
        while time.monotonic() < deadline and p.poll() is None and not log.read_text().startswith("ready"):
            time.sleep(0.01)
    for p in procs:
        try:
            p.stdin.write(b"g")
            p.stdin.close()
        except (BrokenPipeError, OSError):
            pass


def finish(p: subprocess.Popen, timeout: float = 120.0) -> fm.Run:
    try:
        code = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    out, err, log = p.fm_files  # type: ignore[attr-defined]
    out.close()
    err.close()
    stdout = log.with_suffix(".out").read_text().removeprefix("ready\n")
    return fm.Run(tuple(p.args[3:]), code, stdout, log.with_suffix(".err").read_text())


def _mutations(sim, kinds: tuple[str, ...]) -> int:
    return sum(n for m, n in list(sim.round_trips.items()) if m.endswith(kinds))


def wait_for(cond, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if cond():
            return True
        time.sleep(0.005)
    return False


def sigint_cell(world: fm.World, phase: str, home: Path) -> fm.CellResult:
    """SIGINT when ``phase`` starts: storage creates, the PXE push, or the storage deletes."""
    t0 = time.monotonic()
    res = fm.CellResult(f"sigint-{phase}")
    world.reset()
    sim = world.sim
    sim.knobs.latency = 0.05
    sim.reset_counters()
    lock = Path(world.pxe.lock_path)
    cond = {
        "create": lambda: _mutations(sim, (".create", ".update")) > 0,
        "push": lambda: lock.exists(),
        "delete": lambda: _mutations(sim, (".delete",)) > 0,
    }[phase]
    proc = spawn(["apply", "--auto-approve", "--allow-destroy", str(world.inv_new)], world.env, home,
                 world.base / f"sigint-{phase}")
    if wait_for(cond, proc):
        proc.send_signal(signal.SIGINT)
        res.fault_fired = True
    run = finish(proc)
    sim.knobs.latency = 0.0
    if not res.fault_fired:
        res.add("harness", [f"the {phase} phase was not seen before apply ended (exit {run.code})"])
    fm.check_after_fault(world, res, run, expect_code=(130,))
    fm.rerun_and_check(world, res)
    res.seconds = time.monotonic() - t0
    return res


RACE = fm.machines(*(fm.MachineSpec(f"r{i}", f"52:54:00:f1:00:{i:02x}", chap_env=env)
                     for i, env in ((1, "FM_A1"), (2, "FM_A2"), (3, "FM_B1"), (4, "FM_B2"))))
A_ONLY = fm.machines(fm.MachineSpec("a1", "52:54:00:f2:00:01", chap_env="FM_A1"),
                     fm.MachineSpec("a2", "52:54:00:f2:00:02", chap_env="FM_A2"))
B_ONLY = fm.machines(fm.MachineSpec("b1", "52:54:00:f3:00:01", chap_env="FM_B1"),
                     fm.MachineSpec("b2", "52:54:00:f3:00:02", chap_env="FM_B2"))


def concurrent_cell(kind: str, base: Path, latency: float = 0.2) -> fm.CellResult:
    """Two applies at once against one NAS, then a plain rerun of each."""
    from truenas_sim import Simulator

    t0 = time.monotonic()
    res = fm.CellResult(f"concurrent-{kind}")
    sim = Simulator(profile="25.04").start()
    worlds: list[fm.World] = []
    try:
        if kind == "same-inventory":
            w = fm.World(base / "w", old=None, new=RACE, sim=sim, reference=False)
            worlds = [w]
            runs = [(w, ["apply", "--auto-approve", str(w.inv_new)])] * 2
        elif kind == "disjoint-targets":
            w = fm.World(base / "w", old=None, new=RACE, sim=sim, reference=False)
            worlds = [w]
            runs = [(w, ["apply", "--auto-approve", "-t", "r1", "-t", "r2", str(w.inv_new)]),
                    (w, ["apply", "--auto-approve", "-t", "r3", "-t", "r4", str(w.inv_new)])]
        elif kind == "two-inventories":
            wa = fm.World(base / "a", old=None, new=A_ONLY, sim=sim, parent="tank/a", prefix="a-", subnet=97,
                          reference=False)
            wb = fm.World(base / "b", old=None, new=B_ONLY, sim=sim, parent="tank/b", prefix="b-", subnet=98,
                          reference=False)
            worlds = [wa, wb]
            runs = [(wa, ["apply", "--auto-approve", str(wa.inv_new)]),
                    (wb, ["apply", "--auto-approve", str(wb.inv_new)])]
        else:
            raise ValueError(kind)
        sim.knobs.latency = latency
        procs = [spawn(args, w.env, base, base / f"run{i}", gated=True) for i, (w, args) in enumerate(runs)]
        release(procs)
        done = [finish(p) for p in procs]
        sim.knobs.latency = 0.0
        res.fault_fired = True
        specs = [w.storage for w in worlds]
        nas = sim.dump_state()
        res.add("NAS after both", fm.credential_problems(nas, specs))
        for i, r in enumerate(done):
            res.count_runs(r, api_key=sim.api_key)
            if r.code != 0:
                res.add(f"apply {i + 1}", fm.output_problems(r, expect_code=(1,), api_key=sim.api_key))
            else:
                res.add(f"apply {i + 1}", fm.secret_problems(r, sim.api_key))
                if r.traceback or "Traceback (most recent" in r.text:
                    res.add(f"apply {i + 1}", ["traceback"])
            res.detail += f"[{i + 1}] exit {r.code}: {(r.err.strip().splitlines() or [''])[-1][:200]}  "
            # "nothing was changed on <server>" is about that server alone, and true; a bare
            # "nothing was changed" after changes elsewhere is the lie item 1 found
            if r.code != 0 and re.search(r"nothing was changed(?! on )", r.err):
                res.add(f"apply {i + 1}", _false_nothing_changed(r))
        for w in worlds:
            probs = fm.live_config_problems(fm.read_tree(w.pxe_dir), nas, w.storage)
            res.add(f"PXE ({w.storage.prefix or 'inventory'}) after both", probs)
        # A plain rerun of each inventory converges; the NAS then holds exactly what both want.
        for w in worlds:
            again = w.cli("-q", "apply", "--auto-approve", str(w.inv_new))
            plan = w.cli("plan", "--detailed-exitcode", str(w.inv_new))
            res.count_runs(again, plan, api_key=sim.api_key)
            if again.code != 0:
                res.add("rerun", [f"apply exited {again.code}: "
                                  f"{(again.err.strip().splitlines() or [''])[-1][:300]}"])
            if plan.code != 0:
                res.add("rerun", [f"plan --detailed-exitcode exited {plan.code}"])
        final = sim.dump_state()
        conv = fm.converged_problems(final, specs)
        res.orphans += [p for p in conv if p.startswith(("orphan", "duplicate")) or "share" in p]
        res.add("NAS after the reruns", conv)
        res.rerun_converged = not conv and not any(p.startswith("rerun") for p in res.problems)
    finally:
        for w in worlds:
            w.close()
        sim.stop()
    res.seconds = time.monotonic() - t0
    return res


def _false_nothing_changed(run: fm.Run) -> list[str]:
    """An apply that made changes must not say it changed nothing (issue 10 item 1)."""
    made = [ln for ln in run.err.splitlines() if ln.endswith(": ok")]
    if made:
        return [f"says \"nothing was changed\" after {len(made)} change(s) were made"]
    return []
