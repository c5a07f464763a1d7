"""The GitHub Actions workflow in docs/ci.md: run its own `run:` steps, as the runner would.

The steps are taken from the doc (not copied here), executed by bash in a throwaway inventory
repository with GITHUB_ACTIONS=true and a step-summary file, and must pass on a good inventory
and fail, with an annotation on the right line, on a bad one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def workflow() -> dict:
    text = (ROOT / "docs" / "ci.md").read_text()
    for block in re.findall(r"```yaml[^\n]*\n(.*?)```", text, re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "jobs" in data:
            return data
    raise AssertionError("docs/ci.md has no workflow")


def steps() -> list[tuple[str, str]]:
    out = []
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "run" in step and not step["run"].lstrip().startswith("pip install"):
                out.append((step.get("name", "?"), step["run"]))
    return out


def run_workflow(repo: Path) -> tuple[int, str, Path]:
    summary = repo / "summary.md"
    bindir = repo / ".bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "netprov"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m netprov \"$@\"\n")
    shim.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(repo), "GITHUB_ACTIONS": "true",
           "GITHUB_STEP_SUMMARY": str(summary), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    log = ""
    for name, script in steps():
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=120)
        log += f"== {name} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}"
        if proc.returncode != 0:
            return proc.returncode, log, summary
    return 0, log, summary


def test_workflow_has_validate_and_plan_steps() -> None:
    names = [n for n, _ in steps()]
    assert any("netprov validate" in s for _, s in steps()), names
    assert any("netprov plan" in s for _, s in steps()), names


@pytest.mark.parametrize("with_state", [False, True])
def test_workflow_passes_on_a_good_inventory(tmp_path: Path, with_state: bool) -> None:
    shutil.copy(ROOT / "inventory" / "noorquacker.yaml", tmp_path / "inventory.yaml")
    if with_state:
        (tmp_path / "netprov-state.json").write_text('{"format": 1, "storage": {}, "pxe": {}}\n')
    code, log, summary = run_workflow(tmp_path)
    assert code == 0, log
    assert summary.read_text().startswith("## netprov plan"), log
    assert "zvol[tank/netboot/israfel]" in summary.read_text()


def test_workflow_fails_on_a_bad_inventory_with_an_annotation(tmp_path: Path) -> None:
    text = (ROOT / "inventory" / "minimal.yaml").read_text().replace("mac: 52:54:00:00:00:01", "mca: 52:54:00:00:00:01")
    (tmp_path / "inventory.yaml").write_text(text)
    line = text.splitlines().index("    mca: 52:54:00:00:00:01") + 1
    code, log, _ = run_workflow(tmp_path)
    assert code == 1, log
    assert f"::error file=inventory.yaml,line={line},col=5::machines.node1.mca: unknown key" in log
