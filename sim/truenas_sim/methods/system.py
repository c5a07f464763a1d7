"""``system.*``: version, info, product_type."""

from __future__ import annotations

import time

from ..state import NasState


def _sys_info(nas: NasState) -> dict:
    p = nas.p
    return {
        "version": p.version_string,
        "buildtime": {"$date": 1735689600000},
        "hostname": "truenas-sim",
        "physmem": 34359738368,
        "model": "Simulated CPU",
        "cores": 8,
        "physical_cores": 4,
        "loadavg": [0.0, 0.0, 0.0],
        "uptime": "1:00:00",
        "uptime_seconds": 3600.0,
        "system_serial": "SIM0001",
        "system_product": "TrueNAS Simulator",
        "system_product_version": "1.0",
        "license": None,
        "boottime": {"$date": int(time.time() * 1000) - 3600000},
        "datetime": {"$date": int(time.time() * 1000)},
        "timezone": "UTC",
        "system_manufacturer": "netprov",
        "ecc_memory": False,
    }


def register(nas: NasState) -> None:
    p, m = nas.p, nas.method

    @m("system.version", max_args=0)
    def system_version(ctx):
        return p.version_string

    @m("system.info", max_args=0)
    def system_info(ctx):
        return _sys_info(nas)

    @m("system.product_type", max_args=0)
    def system_product_type(ctx):
        return "CORE" if p.core else "COMMUNITY_EDITION"
