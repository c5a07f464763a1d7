"""Shared test configuration: markers, the --update-goldens switch, common paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# CI runs property tests with a fixed seed, so a landing never hinges on a lucky draw; locally they
# keep exploring new examples (and hypothesis replays any failure it found).
try:
    from hypothesis import settings as _hsettings

    _hsettings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI") == "true":
        _hsettings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is a test extra
    pass


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="Rewrite golden files from the current output instead of comparing.")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-goldens"):
        os.environ["NETPROV_UPDATE_GOLDENS"] = "1"


@pytest.fixture
def update_goldens() -> bool:
    return os.environ.get("NETPROV_UPDATE_GOLDENS") == "1"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# --- CI must really run the end-to-end tests ----------------------------------------------
_skipped_e2e: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "e2e" in report.keywords:
        _skipped_e2e.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("NETPROV_REQUIRE_E2E") == "1" and _skipped_e2e:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"NETPROV_REQUIRE_E2E=1 but {len(_skipped_e2e)} e2e test(s) were skipped: "
                          + ", ".join(_skipped_e2e[:5]), red=True)
        session.exitstatus = 1
