"""Shared test configuration: markers, the --update-goldens switch, common paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
