"""Golden cases: ``--update-goldens`` rewrites expected outputs instead of comparing.

pytest only honours ``pytest_addoption`` in conftests it loads at start-up (the rootdir's, or
those under the paths named on the command line). Running ``pytest tests/cases --update-goldens``
works; from the bare ``pytest`` the option may not be registered, so ``NETPROV_UPDATE_GOLDENS=1``
does the same.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--update-goldens", action="store_true", default=False,
                         help="rewrite golden files (tests/cases/**/plan.json) from the current output")
    except ValueError:
        pass   # tests/conftest.py (the rootdir's) already defines it


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    try:
        flag = bool(request.config.getoption("--update-goldens"))
    except ValueError:
        flag = False
    return flag or os.environ.get("NETPROV_UPDATE_GOLDENS") == "1"
