"""TrueNAS middleware simulator: a real websocket server standing in for a FreeNAS/TrueNAS NAS.

Serves the JSON-RPC 2.0 protocol on ``/api/current`` (profiles 25.04, 25.10) and the legacy DDP-like
protocol on ``/websocket`` (all profiles). Each rule is cited to the middleware source at a release tag
(``middleware <tag> <path>:<line>``); docs/truenas-sources.md is the generated method x release table.

    from truenas_sim import Simulator
    with Simulator(profile="25.04") as sim:
        sim.add_snapshot("tank/golden/debian@v1", volsize=10 * 2**30)   # seed a golden image
        ...connect to sim.url with sim.api_key...

Modules: ``server`` (Simulator, Knobs, both wire protocols, limits, auth gating, jobs, events), ``state`` (the
NAS's state, roles, dataset entries, the call path), ``nas`` (``Nas``: the state with its release's methods),
``methods/`` (one module per API namespace, each with its validation rules), ``filters`` (filter_list),
``schema`` (argument checks with legacy/pydantic messages), ``errors``, ``profiles`` (per-version switches),
``apiversions`` (v24.10 view of /websocket on 25.04+, pinned /api/vX), ``sources`` (generated: where each method
and message is in the middleware), ``cli`` (``serve`` and the ``truenas-sim`` command).

Behaviour not found in the source, that the simulator chooses: ids are SQLite-rowid style (max(id)+1, so the
highest id is reused after its row is deleted); extent names that collide after SCST flattens ``.``/``/``
are accepted by the API, but the next iSCSI reload/start fails with ESERVICESTARTFAILURE (SCALE only).
"""

from .cli import serve
from .errors import CallError, ValidationErrors
from .profiles import PROFILES, Profile, get_profile
from .server import Knobs, Simulator, generate_api_key, is_loopback

__all__ = [
    "PROFILES",
    "CallError",
    "Knobs",
    "Profile",
    "Simulator",
    "ValidationErrors",
    "generate_api_key",
    "get_profile",
    "is_loopback",
    "serve",
]
