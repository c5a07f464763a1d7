"""The commands `netprov demo` ends with work as printed: typed in a new shell (whose PATH doesn't
have netprov's venv), they restart the simulator with the saved state, and the plan that follows
finds nothing to do (the CHAP secret the NAS holds is the one the demo inventory reads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demos_closing_commands_work_word_for_word(tmp_path: Path) -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "NO_COLOR": "1"}
    workdir = tmp_path / "demo"
    demo = subprocess.run([sys.executable, "-m", "netprov", "demo", "--workdir", str(workdir)], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = demo.stderr.splitlines()
    start = lines.index("To keep exploring, run the simulator again with this state, edit the inventory, and plan:")
    steps = [line.strip() for line in lines[start + 1:] if line.startswith("  ")]
    assert steps[0].startswith("source ") and steps[0].endswith("/bin/activate"), steps
    assert steps[1].startswith("netprov sim truenas ") and steps[1].endswith(" &"), steps
    assert steps[2].endswith(f"netprov plan {workdir / 'inventory.yaml'}"), steps
    listen = steps[1].split("--listen ", 1)[1].split()[0]
    host, port = listen.rsplit(":", 1)
    # As typed, one after the other; between the simulator and the plan a person takes a moment, here
    # a bounded wait for the simulator's port.
    script = "\n".join([
        "set -e", steps[0], steps[1],
        f"for i in $(seq 1 100); do (exec 3<>/dev/tcp/{host}/{port}) 2>/dev/null && break; sleep 0.1; done",
        "rc=0", f"{steps[2]} || rc=$?", "kill %1", "wait || true", "exit $rc"])
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "No changes. The world matches the inventory." in out, out
    assert "CHAP secret not available" not in out
    secret = (workdir / "chap-secret").read_text().strip()
    assert secret not in demo.stdout + demo.stderr + out
    assert (workdir / "chap-secret").stat().st_mode & 0o077 == 0
