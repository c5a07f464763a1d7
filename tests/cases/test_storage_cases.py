"""Golden storage plans: ``storage/<case>/{inventory.yaml, actual.json, plan.json}`` (+ optional options.json).

Every directory is one case: the inventory (desired), the normalised actual state of the NAS
(``ActualStorage.to_json()`` form), and the expected plan. ``options.json`` may set ``storage``,
``allow_destroy``, ``adopt``, ``machines`` (the --target filter), ``snapshot``/``stamp`` (the net) and ``secrets`` (machine -> CHAP
secret or null; by default every CHAP machine gets ``SECRET``). Regenerate with
``pytest tests/cases --update-goldens`` (or ``NETPROV_UPDATE_GOLDENS=1``) and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netprov.core.inventory_load import parse_inventory
from netprov.core.storage import ActualStorage, StoragePolicy, desired_storage, plan_storage, summarize
from tests.support.golden import check_json_golden

SECRET = "Sup3rSecret-001"
STAMP = "20261207T180512Z"    # the plan's UTC time: names the net under destroyed zvols (options.json may set it)
ROOT = Path(__file__).parent / "storage"
CASES = sorted(p for p in ROOT.iterdir() if p.is_dir() and (p / "inventory.yaml").exists())


def run_case(case: Path, actual: dict | None = None) -> dict:
    """The plan for ``case``; ``actual``: the state to plan against instead of its actual.json (the same
    case read back from a simulator profile, tests/cases/test_storage_cases_profiles.py)."""
    loaded = parse_inventory((case / "inventory.yaml").read_text(), "inventory.yaml")
    opts = json.loads((case / "options.json").read_text()) if (case / "options.json").exists() else {}
    storage = opts.get("storage") or next(iter(loaded.inventory.storage))
    secrets = {m.name: SECRET for m in loaded.machines if m.chap}
    secrets.update(opts.get("secrets") or {})
    desired = desired_storage(loaded, storage, secrets)
    actual = ActualStorage.from_json(actual if actual is not None else json.loads((case / "actual.json").read_text()))
    machines = opts.get("machines")
    policy = StoragePolicy(allow_destroy=bool(opts.get("allow_destroy")), adopt=bool(opts.get("adopt")),
                           machines=set(machines) if machines is not None else None,
                           snapshot=bool(opts.get("snapshot", True)), stamp=opts.get("stamp", STAMP))
    changes = plan_storage(desired, actual, policy)
    return {"policy": {"allow_destroy": policy.allow_destroy, "adopt": policy.adopt,
                       "machines": sorted(policy.machines) if policy.machines is not None else None},
            "summary": summarize(changes), "changes": [c.to_json() for c in changes]}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_storage_case(case: Path, update_goldens: bool) -> None:
    got = run_case(case)
    text = json.dumps(got, indent=2, sort_keys=True) + "\n"
    assert SECRET not in text, "a CHAP secret leaked into the plan"
    # the actual state survives its JSON round trip unchanged (fingerprints depend on it)
    raw = json.loads((case / "actual.json").read_text())
    once = ActualStorage.from_json(raw).to_json()
    assert ActualStorage.from_json(once).to_json() == once
    check_json_golden(case / "plan.json", got, update_goldens)
