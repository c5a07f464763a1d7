"""pool.dataset.query reads what the real release reads (issue 12, item 4; methods.py dataset_read_plan).

Traced to the middleware source: which filters each release pushes down to ZFS (24.10: a lone
``id =``; 25.04: a lone ``id``/``name`` ``=``/``in``; CORE: the first ``id``/``name`` ``=``; 25.10+:
none), what ``retrieve_children: false`` means without a pushdown (24.10/25.04: the pool roots alone),
and which releases honour ``extra.properties`` / ``retrieve_user_props``. The cost model charges what
was read (``Knobs.dataset_cost`` per dataset, ``Knobs.property_cost`` per property), not what the
filter keeps.
"""

import pytest
from simhelpers import mk_zvol

PROPS = ["volsize", "volblocksize", "refreservation", "origin"]


def setup(api):
    for i in range(3):
        mk_zvol(api, f"tank/vols/m{i}", comments=f"c{i}")
    api.call("pool.dataset.create", {"name": "tank/other"})


@pytest.mark.parametrize("profile", ["24.10", "25.04"])
def test_prefix_filter_without_children_finds_nothing_on_24_10_and_25_04(sim_factory, connect_factory,
                                                                        profile):
    sim = sim_factory(profile)
    api = connect_factory(sim)
    setup(api)
    no_children = {"extra": {"retrieve_children": False}}
    assert api.call("pool.dataset.query", [["id", "^", "tank/vols"]], no_children) == []
    # the default (children) finds them, reading every dataset from the pool root
    rows = api.call("pool.dataset.query", [["id", "^", "tank/vols/"]])
    assert [r["id"] for r in rows] == ["tank/vols/m0", "tank/vols/m1", "tank/vols/m2"]
    assert sim.nas.dataset_reads[-1]["datasets"] == len(sim.nas.datasets)


@pytest.mark.parametrize("profile", ["24.10", "25.04", "25.10"])
def test_properties_limit_the_answer_and_the_work_user_properties_still_come(sim_factory, connect_factory,
                                                                             profile):
    sim = sim_factory(profile)
    api = connect_factory(sim)
    setup(api)
    extra = {"retrieve_children": True, "flat": False, "properties": PROPS}
    [parent] = api.call("pool.dataset.query", [["id", "=", "tank/vols"]], {"extra": extra})
    limited = sim.nas.dataset_reads[-1]
    kids = parent["children"]
    assert [k["id"] for k in kids] == ["tank/vols/m0", "tank/vols/m1", "tank/vols/m2"]
    for k in kids:
        assert k["volsize"]["parsed"] > 0 and "origin" in k and "refreservation" in k
        assert "compression" not in k and "used" not in k and "creation" not in k
        assert k["comments"]["parsed"].startswith("c") and "user_properties" in k
    api.call("pool.dataset.query", [["id", "=", "tank/vols"]], {"extra": {"retrieve_children": True}})
    full = sim.nas.dataset_reads[-1]
    assert limited["datasets"] == full["datasets"]
    assert limited["properties"] < full["properties"]
    if profile == "25.10":
        assert full["datasets"] == len(sim.nas.datasets)      # nothing is pushed down
    else:
        assert full["datasets"] == 4                          # tank/vols and its zvols only
    if profile != "24.10":                                    # 24.10 has no retrieve_user_props
        rows = api.call("pool.dataset.query", [["id", "=", "tank/vols/m0"]],
                        {"extra": {"retrieve_children": False, "properties": PROPS,
                                   "retrieve_user_props": False}})
        assert "user_properties" not in rows[0] and "comments" not in rows[0]


def test_core_ignores_properties_and_retrieve_children(sim_factory, connect_factory):
    sim = sim_factory("13")
    api = connect_factory(sim)
    setup(api)
    rows = api.call("pool.dataset.query", [["id", "=", "tank/vols"]],
                    {"extra": {"retrieve_children": False, "properties": PROPS}})
    assert [k["id"] for k in rows[0]["children"]] == ["tank/vols/m0", "tank/vols/m1", "tank/vols/m2"]
    assert "compression" in rows[0]["children"][0]            # every property: CORE passes only `flat` on


def test_cost_model_charges_what_was_read(sim_factory, connect_factory):
    sim = sim_factory("25.04")
    api = connect_factory(sim)
    setup(api)
    sim.knobs.dataset_cost, sim.knobs.property_cost = 0.01, 0.001
    api.call("pool.dataset.query", [["id", "=", "tank/vols/m1"]], {"extra": {"retrieve_children": False}})
    read = sim.nas.dataset_reads[-1]
    assert read["datasets"] == 1
    assert sim.knobs.work_cost(read) == pytest.approx(0.01 + 0.001 * read["properties"])
