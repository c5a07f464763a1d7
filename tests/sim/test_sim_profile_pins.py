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
