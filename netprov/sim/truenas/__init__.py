"""TrueNAS middleware simulator: a real websocket server standing in for a FreeNAS/TrueNAS NAS.

Serves the JSON-RPC 2.0 protocol on ``/api/current`` (profiles 25.04, 25.10) and the legacy DDP-like protocol on
``/websocket`` (all profiles), following /work/shared/docs/truenas-api.md.

    from netprov.sim.truenas import Simulator
    with Simulator(profile="25.04") as sim:
        sim.add_snapshot("tank/golden/debian@v1", volsize=10 * 2**30)   # seed a golden image
        ...connect to sim.url with sim.api_key...
"""
from .cli import serve
from .errors import CallError, ValidationErrors
from .profiles import PROFILES, Profile, get_profile
from .server import Knobs, Simulator, generate_api_key, is_loopback

__all__ = ["Simulator", "Knobs", "serve", "PROFILES", "Profile", "get_profile", "generate_api_key", "is_loopback",
           "CallError", "ValidationErrors"]
