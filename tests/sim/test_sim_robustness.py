"""Junk arguments never crash a method: they are answered with middleware-shaped errors."""

import itertools

import pytest

from truenas_sim.errors import SimError
from truenas_sim.nas import Ctx, Nas, Session
from truenas_sim.profiles import PROFILES

JUNK = [None, {}, 1, "x", [], [["id", "=", 1]], {"get": True}, {"name": 5}, True, "tank", -1]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_junk_arguments_raise_only_sim_errors(profile):
    nas = Nas(PROFILES[profile])
    ctx = Ctx(Session(True, "root"))
    crashes = set()
    for method, spec in nas.methods.items():
        if spec.job:
            continue
        for k in range(3):
            for params in itertools.product(JUNK if k < 2 else JUNK[:6], repeat=k):
                try:
                    nas.call(ctx, method, list(params))
                except SimError:
                    pass
                except Exception as e:  # noqa: BLE001
                    crashes.add((method, repr(params), repr(e)))
    assert not crashes


def test_junk_over_the_wire_gets_error_replies(api):
    r = api.request("iscsi.target.delete", {"x": 1})
    assert r["error"]["code"] == -32602
    assert r["error"]["data"]["extra"] == [["iscsi_target_delete.id", "Input should be a valid integer", 22]]
