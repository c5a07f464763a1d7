"""What `netprov apply` says when the engine stopped everything at one failing system (a stale or
unreachable NAS in phase 1): that nothing else was attempted, and which system stopped it."""

from __future__ import annotations

import pytest

from netprov.cli import console
from netprov.cli.commands.plan_apply import report_apply
from netprov.engine.run import ApplyResult


@pytest.fixture
def captured(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    console.reset()
    yield capsys
    console.reset()


def test_a_stopped_apply_names_the_system_that_stopped_it(captured) -> None:
    result = ApplyResult(done=["zvol[tank/nb/m1]"], failed=[("storage:b", "plan is stale: nas b changed")],
                         skipped=["pxe.tftp[boot.ipxe]", "extent[m2]"], stopped="storage:b")
    report_apply(result)
    text = captured.readouterr()
    said = text.out + text.err
    assert "Apply failed: 1 change(s) made, 1 failed, 2 not attempted." in said
    assert "storage:b failed before any boot file was pushed: nothing else was attempted" in said
    assert said.index("made: zvol[tank/nb/m1]") < said.index("storage:b failed before")


def test_a_failure_that_did_not_stop_the_apply_says_nothing_of_stopping(captured) -> None:
    report_apply(ApplyResult(done=["zvol[tank/nb/m1]"], failed=[("extent[m2]", "device busy")]))
    text = captured.readouterr()
    assert "failed before any boot file" not in text.out + text.err
    assert "extent[m2]: device busy" in text.out + text.err
