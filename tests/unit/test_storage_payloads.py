"""The planner->executor contract of the storage half: typed payloads, addresses, one value shown once.

Pure, except that the executor's dispatch table is imported to check every payload kind has a step.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from netprov.adapters.truenas.steps import EXECUTORS as _EXECUTORS
from netprov.core.plan import Action, Address, Payload
from netprov.core.storage import ActualStorage, StoragePolicy, plan_storage
from netprov.core.storage import payloads as pl

from storage_helpers import SECRET, converged, desired_from, inventory_text

TWO = '''
m1: {mac: "52:54:00:00:00:01", disk: {size: 16G}}
m2: {mac: "52:54:00:00:00:02", chap: {secret_env: M2_CHAP}}
'''


def empty() -> ActualStorage:
    return ActualStorage(parent="tank/netboot", service={"enable": False, "state": "STOPPED"})


def _payload_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(pl, inspect.isclass)
            if issubclass(c, Payload) and c is not Payload and c.__module__ == pl.__name__
            and not c.__name__.startswith("_")]


def test_every_payload_is_frozen_and_every_change_payload_has_an_executor():
    classes = _payload_classes()
    assert len(classes) >= 20
    for cls in classes:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        if cls not in (pl.Kept, pl.AuthKept):          # no-ops are never executed
            assert cls in _EXECUTORS, f"no executor for {cls.__name__}"


def test_every_planned_storage_change_has_a_payload():
    d = desired_from(inventory_text(TWO))
    for actual in (empty(), converged(d)):
        for c in plan_storage(d, actual, StoragePolicy(allow_destroy=True)):
            assert isinstance(c.payload, Payload), c
            assert isinstance(c.address, Address) and Address.parse(str(c.address)) == c.address
            text = json.dumps(c.payload.to_json())
            assert SECRET not in text


def test_a_create_shows_what_its_payload_makes():
    d = desired_from(inventory_text(TWO))
    by = {str(c.address): c for c in plan_storage(d, empty())}
    z = by["zvol[tank/netboot/m1]"]
    assert z.action is Action.CREATE and isinstance(z.payload, pl.ZvolCreate)
    assert z.after is None, "a create's after has one source: its payload"
    assert z.sides == (None, pl.after_of(z.payload)) and z.sides[1]["volsize"] == "16G"
    assert z.payload.volsize == 16 * 2**30
    auth = by["auth[m2]"]
    assert auth.payload == pl.AuthCreate("m2", "m2") and auth.sides[1]["secret"] == "********"


def test_an_update_that_shows_another_value_than_its_payload_sets_is_a_bug():
    pl.check_agrees(pl.ZvolUpdate("tank/nb/m1", "m1", set_volsize=32 * 2**30), {"volsize": "32G"})
    with pytest.raises(AssertionError, match="ZvolUpdate"):
        pl.check_agrees(pl.ZvolUpdate("tank/nb/m1", "m1", set_volsize=32 * 2**30), {"volsize": "16G"})
    with pytest.raises(AssertionError, match="MappingUpdate"):
        pl.check_agrees(pl.MappingUpdate(pl.MappingRef(1, 2, 3), lunid=1), {"lunid": 0})


def test_addresses_are_todays_text():
    assert str(pl.zvol_address("tank/netboot/m1")) == "zvol[tank/netboot/m1]"
    assert str(pl.auth_address("m1", 12)) == "auth[m1]#12"
    assert str(pl.initiator_address(None, 3)) == "initiator#3"
    assert str(pl.auth_tag_address(4)) == "auth-tag#4"
    assert str(pl.mapping_address("m1", "m1")) == "targetextent[m1/m1]"
    assert str(pl.GLOBAL_ADDRESS) == "iscsi.global[basename]" and str(pl.SERVICE_ADDRESS) == "service[iscsitarget]"


def test_payload_json_names_objects_by_address_text():
    p = pl.MappingCreate(pl.target_address("m1"), pl.extent_address("m1"), 0)
    assert p.to_json() == {"target": "target[m1]", "extent": "extent[m1]", "lunid": 0}
    r = pl.ZvolReplace(pl.ZvolCreate("a/b", "b", 1, "16K", True), (pl.MappingRef(1, 2, 3), pl.ExtentRef(3, "b")), None)
    assert r.to_json()["pre_delete"] == [{"id": 1, "target_id": 2, "extent_id": 3}, {"id": 3, "name": "b"}]
