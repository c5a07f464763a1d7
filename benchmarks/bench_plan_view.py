"""Time `netprov plan --offline` of a generated N-machine inventory: the text plan (default view and --full),
the JSON plan, and the view alone (plan made once, then laid out); prints lines and wall times.

Usage: python benchmarks/bench_plan_view.py [N ...]   (default: 1000)
To measure another checkout, put its source first: PYTHONPATH=/path/to/old python benchmarks/bench_plan_view.py

Issue 13 item 4, 1,000 new machines, 2 cores (load ~3, so +-30 %), whole command with start-up:
  before (0aeb171): text plan 56,084 lines 3.65 s (plan_rich alone 2.3 s); JSON 1.1 s
  after:            text plan  1,022 lines 0.77 s (plan_rich alone 0.07 s); --full 16,020 lines (16 a machine)
                    1.2 s (plan_rich alone 0.1 s to a pipe, 0.6 s to a colour terminal); JSON 1.1-1.4 s
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_render import make_inventory  # noqa: E402


def cli(inv: Path, *args: str) -> tuple[float, int]:
    """Best of 3: wall time of the whole command (start-up included), stdout to a file; and its lines."""
    best, lines = float("inf"), 0
    env = {**os.environ, "NAS_KEY": "x", "NO_COLOR": "1"}
    for _ in range(3):
        with tempfile.TemporaryFile() as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "netprov", "plan", "--offline", *args, str(inv)], stdout=out,
                           stderr=subprocess.DEVNULL, env=env, check=False, cwd=inv.parent)
            best = min(best, time.perf_counter() - t0)
            out.seek(0)
            lines = out.read().count(b"\n")
    return best, lines


def view_only(inv: Path) -> str:
    """The plan made once in-process, then the text view timed alone (default and --full when it exists)."""
    import inspect

    from netprov import plan_view as views
    from netprov.adapters.local import load_workspace
    from netprov.core.boot_render import Renderer
    from netprov.core.storage import StoragePolicy
    from netprov.engine.run import make_plan, offline_world
    ws = load_workspace(inv)
    plan = make_plan(ws.loaded, Renderer(ws.templates), ws.secrets, offline_world(ws.loaded, {}),
                     policy=StoragePolicy(stamp="20260101T000000Z")).plan
    from rich.console import Console
    out = []
    for terminal in (False, True):
        with open(os.devnull, "w") as devnull:
            console = Console(file=devnull, force_terminal=terminal, no_color=not terminal, soft_wrap=True,
                              markup=False, highlight=False, emoji=False)
            kinds = [{}] + ([{"full": True}] if "full" in inspect.signature(views.plan_rich).parameters else [])
            for kw in kinds:
                t0 = time.perf_counter()
                views.plan_rich(plan, console, **kw)
                out.append(f"{'colour terminal' if terminal else 'pipe'}{' --full' if kw else ''} "
                           f"{time.perf_counter() - t0:.3f} s")
    return "view alone (plan_rich): " + ", ".join(out)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            inv = Path(tmp) / f"inv{n}.yaml"
            inv.write_text(make_inventory(n))
            text_t, text_n = cli(inv)
            json_t, json_n = cli(inv, "--json")
            line = f"{n} machines: text plan {text_n} lines {text_t:.2f} s; JSON {json_n} lines {json_t:.2f} s"
            full = subprocess.run([sys.executable, "-m", "netprov", "plan", "--help"], capture_output=True,
                                  text=True, cwd=tmp).stdout
            if "--full" in full:
                full_t, full_n = cli(inv, "--full")
                line += f"; --full {full_n} lines {full_t:.2f} s ({full_n / n:.1f} lines per machine)"
            print(line + "; " + view_only(inv))


if __name__ == "__main__":
    main()
