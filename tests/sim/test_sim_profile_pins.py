"""Profile switches corrected against the middleware source at the profile's tag (see profiles.py citations)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest


def _versions(sim) -> list[str]:
    url = sim.url_for("/api/versions").replace("ws://", "http://")
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


@pytest.mark.parametrize(
    "profile,newest",
    [("25.04", "v25.04.2"), ("25.10", "v25.10.1"), ("26", "v26.0.0")],
)
def test_versions_listing_is_the_api_dirs_less_v24_10(sim_factory, profile, newest):
    """main.py _load_api_versions: one version per api/v* directory at the tag (TS-25.10.1 has no v25_10_2);
    api_versions_handler leaves v24.10 out and does not list "current"."""
    got = _versions(sim_factory(profile))
    assert got[-1] == newest
    assert "v24.10" not in got and "current" not in got
    assert got == sorted(got)


def test_25_10_has_no_v25_10_2_route(sim_factory, connect_factory):
    sim = sim_factory("25.10")
    connect_factory(sim, path="/api/v25.10.1", login=False).close()
    with pytest.raises(Exception):
        connect_factory(sim, path="/api/v25.10.2", login=False)


@pytest.mark.parametrize("profile,has_errname", [("11.3", False), ("13", False), ("24.10", True), ("25.04", True)])
def test_legacy_error_errname_only_on_scale(sim_factory, connect_factory, profile, has_errname):
    """CORE's send_error (TN-13.0-U6.1 main.py:118) builds {error, type, reason, trace, extra};
    SCALE's get_error_dict (TS-24.10.2.2 main.py:186) adds errname."""
    s = sim_factory(profile)
    c = connect_factory(s, kind="legacy", login=False)
    err = c.request("iscsi.extent.query")["error"]
    keys = {"error", "type", "reason", "trace", "extra"}
    assert set(err) == (keys | {"errname"} if has_errname else keys)


@pytest.mark.parametrize("profile,defer_error", [("13", False), ("24.10", True), ("25.04", True), ("25.10", True)])
def test_snapshot_with_clones_delete_is_an_options_defer_error(sim_factory, connect_factory, profile, defer_error):
    """TS-25.04.2.4 plugins/zfs_/snapshot.py:282: libzfs's 'snapshot has dependent clones' becomes a
    validation error on options.defer naming the clones; CORE 13 has no such check (CallError)."""
    from simhelpers import RpcFailure, mk_zvol

    s = sim_factory(profile)
    api = connect_factory(s)
    mk_zvol(api, "tank/vols/s1")
    api.call("zfs.snapshot.create", {"dataset": "tank/vols/s1", "name": "a"})
    api.call("zfs.snapshot.clone", {"snapshot": "tank/vols/s1@a", "dataset_dst": "tank/vols/c1"})
    with pytest.raises(RpcFailure) as ei:
        api.call("zfs.snapshot.delete", "tank/vols/s1@a")
    text = str(ei.value)
    if defer_error:
        assert "options.defer" in text
        assert "Please set this attribute as 'tank/vols/s1@a' snapshot has dependent clones: tank/vols/c1" in text
    else:
        assert "snapshot has dependent clones" in text and "options.defer" not in text
