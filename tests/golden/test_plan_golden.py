"""Golden whole plans: both halves of the offline plan of each shipped inventory, payloads included.

``tests/cases`` pins the storage planner case by case; this pins what a user's ``netprov plan --offline --json``
holds for the inventories netprov ships: every change of every system with its typed payload (file payloads
too: root, path, hashes, modes, the secret flag; never a file's content), in execution order. A CHAP secret is
supplied, so files that carry it are planned as they will be, and the test checks it appears nowhere.

Regenerate with ``pytest tests/golden/test_plan_golden.py --update-goldens`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netprov.adapters.local import load_workspace
from netprov.core.boot_render import Renderer
from netprov.core.storage import StoragePolicy
from netprov.engine.run import make_plan, offline_world
from tests.support.golden import check_json_golden

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "plan"
SECRET = "Golden-s3cret-42"
STAMP = "20261207T180512Z"
INVENTORIES = ["example.yaml", "minimal.yaml", "noorquacker.yaml"]


def offline_plan(name: str) -> dict:
    path = ROOT / "inventory" / name
    ws = load_workspace(path, env={"NETPROV_DEMO_CHAP_SECRET": SECRET})
    planned = make_plan(ws.loaded, Renderer(ws.templates), ws.secrets, offline_world(ws.loaded, {}),
                        policy=StoragePolicy(stamp=STAMP), inventory_name=f"inventory/{name}")
    return planned.plan.to_json()


@pytest.mark.parametrize("name", INVENTORIES)
def test_offline_plan_matches_its_golden(name: str, update_goldens: bool) -> None:
    got = offline_plan(name)
    text = json.dumps(got, indent=2, sort_keys=True) + "\n"
    assert SECRET not in text, "a CHAP secret leaked into the plan"
    changes = got["changes"]
    assert changes and all(c["payload"] is not None for c in changes if c["action"] != "no-op"), \
        "every change apply carries out has a payload"
    assert {c["kind"] for c in changes} >= {"zvol", "extent", "target", "file", "activation"}
    check_json_golden(GOLDEN / (Path(name).stem + ".json"), got, update_goldens)
