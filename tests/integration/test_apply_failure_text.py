"""A NAS or PXE error message is text, never markup, and a failure is never lost to printing it.

Issue 10 item 2: ``Device [/dev/zvol/tank/netboot/m3] is busy`` on a target create went to rich as
markup; the MarkupError was swallowed before the failure was recorded, apply reported ``0 failed``
and pushed the machine's boot script although it had no target. Here every kind of call fails in
turn with such a message (``[/dev/zvol/...]``, ``[bold]``, ``[/]``, ``:warning:``), through the real
CLI, in a pipe and on a pseudo-terminal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from netprov.core.boot_render import host_file_name, script_name
from tests.support.cli_lab import inventory_text, netprov, sim_fixture  # noqa: F401 (a fixture)

MESSAGE = "Device [/dev/zvol/tank/netboot/m3] is busy [bold]x[/bold] [/] [red]:warning:"
MACHINES = {"m1": "52:54:00:30:00:01", "m2": "52:54:00:30:00:02"}

# (kind, method failed, the call is per machine)
STORAGE_CALLS = [
    ("zvol", "pool.dataset.create"),
    ("extent", "iscsi.extent.create"),
    ("initiator", "iscsi.initiator.create"),
    ("auth", "iscsi.auth.create"),
    ("target", "iscsi.target.create"),
    ("mapping", "iscsi.targetextent.create"),
    ("service", "service.update"),
]


def _lab(sim, tmp_path: Path, *, test_command: str = "true") -> tuple[Path, dict, Path]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory_text(sim.url, tmp_path, machines=MACHINES,
                                  chap={"m1": "secret_env: S1", "m2": "secret_env: S2"},
                                  test_command=test_command))
    env = {**os.environ, "NAS_KEY": sim.api_key, "S1": "m1-secret-abcd", "S2": "m2-secret-abcd",
           "NO_COLOR": "1"}
    return inv, env, tmp_path / "pxe"


def _pushed(pxe: Path, machine: str) -> dict[str, bool]:
    return {"script": (pxe / "tftp" / script_name(MACHINES[machine])).exists(),
            "host line": (pxe / "hosts" / host_file_name(machine)).exists()}


def _failed_machine(output: str, kind: str) -> str | None:
    line = next(ln for ln in output.splitlines() if ln.startswith("error: ") and MESSAGE in ln)
    found = {m for m in MACHINES if re.search(rf"[\[/]{m}[\]/]", line.split(":", 2)[1])}
    return found.pop() if len(found) == 1 else None


def _check_report(out, *, failed: int = 1) -> None:
    assert out.returncode == 1, out.output[-3000:]
    text = out.output
    assert "Traceback" not in text, text[-3000:]
    assert MESSAGE in text, f"the NAS's exact message must be shown:\n{text[-3000:]}"
    assert re.search(rf"\b{failed} failed\b", text), text[-3000:]
    assert " 0 failed" not in text


# Every kind in a pipe; on a terminal (progress bars, failures printed live) a few of them.
CASES = [(k, m, False) for k, m in STORAGE_CALLS] + [(k, m, True) for k, m in STORAGE_CALLS
                                                     if k in ("zvol", "target", "service")]


@pytest.mark.parametrize("kind,method,terminal", CASES,
                         ids=[f"{k}-{'terminal' if t else 'pipe'}" for k, _, t in CASES])
def test_a_storage_call_failing_with_markup_in_its_message(sim, tmp_path, kind, method, terminal) -> None:
    inv, env, pxe = _lab(sim, tmp_path)
    sim.message, sim.method = MESSAGE, method
    out = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path, terminal=terminal)
    assert sim.method is None, f"{method} was never called"
    _check_report(out)
    if kind == "service":
        # Not a machine's object: every machine's chain completed and its files were pushed.
        assert all(all(_pushed(pxe, m).values()) for m in MACHINES), out.output[-3000:]
        return
    bad = _failed_machine(out.output, kind)
    assert bad is not None, out.output[-3000:]
    assert _pushed(pxe, bad) == {"script": False, "host line": False}, \
        f"{bad}'s {kind} failed: its boot files must not be pushed"
    (good,) = set(MACHINES) - {bad}
    assert _pushed(pxe, good) == {"script": True, "host line": True}, out.output[-3000:]
    if terminal or kind != "target":
        return
    # A plain rerun completes it.
    again = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path)
    assert again.returncode == 0, again.output[-3000:]
    assert _pushed(pxe, bad) == {"script": True, "host line": True}


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_a_pxe_push_failing_with_markup_in_its_output(sim, tmp_path, terminal) -> None:
    inv, env, pxe = _lab(sim, tmp_path, test_command=f"echo '{MESSAGE}'; exit 1")
    out = netprov("apply", "--auto-approve", str(inv), env=env, cwd=tmp_path, terminal=terminal)
    _check_report(out)
    assert "error: pxe:pxe: " in out.output
    # The NAS half was made, and the report says so, with every change it made.
    assert re.search(r"\b1[0-9] change\(s\) made", out.output), out.output[-3000:]
    assert "made: target[m1]" in out.output and "made: zvol[tank/netboot/m2]" in out.output
    assert not any(any(_pushed(pxe, m).values()) for m in MACHINES)
