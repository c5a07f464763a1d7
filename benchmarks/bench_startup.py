"""Start-up time of the CLI: `netprov --help` and `netprov --version`, best of N runs.

Prints wall time per command and which heavy modules got imported (should be none).
"""

from __future__ import annotations

import subprocess
import sys
import time

HEAVY = ("paramiko", "websockets", "jinja2", "cryptography")


def best_of(args: list[str], n: int = 7) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netprov", *args], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def heavy_imports(args: list[str]) -> list[str]:
    code = ("import sys\nfrom netprov.cli.app import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stderr.strip().splitlines()
    return [m for m in lines[-1].split(",") if m] if lines else []


def main() -> None:
    best_of(["--version"], 1)  # warm the page cache
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - t0
    print("| command | best wall time | heavy modules imported |")
    print("|---|---:|---|")
    print(f"| python -c pass | {python:.3f} s | - |")
    for args in (["--help"], ["--version"], ["validate", "--help"]):
        print(f"| netprov {' '.join(args)} | {best_of(args):.3f} s | {', '.join(heavy_imports(args)) or 'none'} |")


if __name__ == "__main__":
    main()
