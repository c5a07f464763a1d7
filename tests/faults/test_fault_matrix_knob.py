"""The simulator's ``lose_reply_at`` knob, which the matrix's "lose" cells rely on: call n runs, its reply
never comes, the connection drops; the NAS holds the call's effect."""

from __future__ import annotations

import pytest

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.errors import RemoteError
from truenas_sim import Simulator


@pytest.mark.parametrize("profile", ["25.04", "13"])
def test_lose_reply_runs_the_call_and_drops_its_answer(profile) -> None:
    with Simulator(profile=profile) as sim:
        with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as c:
            sim.knobs.lose_reply_at = 1
            assert sim.knobs.lose_reply_at == 1
            with pytest.raises(RemoteError):
                c.call("pool.dataset.create", {"name": "tank/lost", "type": "FILESYSTEM"})
            assert sim.knobs.lose_reply_at is None          # one shot
        with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key)) as c:
            assert [d["id"] for d in c.query("pool.dataset", filters=[["id", "=", "tank/lost"]])] == ["tank/lost"]
            assert c.query("pool.dataset", filters=[["id", "=", "tank"]])   # later calls are answered again
