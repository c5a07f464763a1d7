"""Per-version behaviour switches: one profile per release, each modelling the middleware at the git tag
scripts/trace_truenas_sources.py lists (REFS; docs/truenas-sources.md). A switch's comment names the release
where the behaviour starts, and a ``mw: <file>:<line> @ <tag> | <text on that line>`` comment above a switch cites
the source where it begins or ends (tests/sim/test_sim_citations.py checks each); the method x release table is generated from the source at those tags."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    version_string: str
    # mw: plugins/service_/services/iscsitarget.py:12 @ TN-13.0-U6.1 | freebsd_rc = "ctld"
    # mw: plugins/service_/services/iscsitarget.py:15 @ TS-24.10.2.2 | systemd_unit = "scst"
    core: bool  # TrueNAS CORE (FreeBSD/ctld) vs SCALE (Linux/SCST)
    # mw: main.py:186 @ TS-25.04.2.4 | "current": current_api,
    jsonrpc: bool  # serves /api/current (25.04+)
    # mw: main.py:402 @ TS-24.10.2.2 | ErrnoMixin.ENOTAUTHENTICATED
    notauth_errno: int  # legacy "Not authenticated" errno: 13 on CORE, 207 from 22.12
    # mw: utils/limits.py:18 @ TS-24.10.2.2 | AUTHENTICATED = 65536
    post_auth_limit: int | None  # 64 KiB after auth (24.10+), None on CORE
    # mw: main.py:29 @ TS-24.10.2.2 | RateLimitCache
    rate_limit: bool  # unauthenticated per-IP rate limit (24.10+)
    # mw: main.py:411 @ TS-24.10.2.2 | elif not self.authenticated_credentials.authorize('CALL', message['method']):
    roles: bool  # role based authorisation / secret redaction (24.10+)
    # mw: plugins/auth.py:676 @ TS-25.04.2.4 | async def login_ex(self, app, data):
    login_ex: bool  # auth.login_ex (25.04+)
    # mw: plugins/auth.py:934 @ TS-25.04.2.4 | the key should be automatically revoked
    revoke_insecure_api_key: bool  # API_KEY_PLAIN over insecure transport revokes the key (25.04+)
    # mw: api/base/handler/accept.py:80 @ TS-25.04.2.4 | msg = "Field required"
    pydantic: bool  # strict pydantic argument models (25.04+)
    # mw: plugins/iscsi_/utils.py:11 @ TS-24.10.2.2 | MAX_EXTENT_NAME_LEN = 64
    # mw: api/v25_04_0/iscsi_extent.py:24 @ TS-25.04.2.4 | StringConstraints(max_length=64)
    extent_name_max: int | None  # 64 on SCALE
    # mw: plugins/iscsi.py:768 @ TN-13.0-U6.1 | Maximum length of 15 characters
    # mw: plugins/iscsi_/extents.py:314 @ TS-24.10.2.2 | Extent serial can not exceed
    serial_max: int  # 15 CORE 13, 20 SCALE
    # mw: plugins/iscsi_/target_to_extent.py:246 @ TS-24.10.2.2 | Extent is already in use.
    extent_single_target: bool  # "Extent is already in use." (SCALE >= 22.12.4)
    # mw: api/v25_10_1/iscsi_extent.py:60 @ TS-25.10.1 | product_id:
    extent_product_id: bool  # 25.10+
    # mw: api/v25_04_0/iscsi_target.py:45 @ TS-25.04.2.4 | StringConstraints(max_length=120)
    target_name_max: int | None  # 120 from the 25.04 model
    # mw: plugins/iscsi.py:1271 @ TN-13.0-U6.1 | Target name already exists
    # mw: plugins/iscsi_/targets.py:280 @ TS-24.10.2.2 | Target with this name already exists
    target_name_exists_msg: str
    # mw: plugins/iscsi_/targets.py:388 @ TS-25.04.2.4 | force, delete_extents
    target_delete_extents: bool  # iscsi.target.delete(id, force, delete_extents) 25.04+
    # mw: plugins/iscsi_/targets.py:25 @ TS-24.10.2.2 | iscsi_target_auth_networks
    target_auth_networks: bool  # SCALE
    # mw: plugins/iscsi_/targets.py:26 @ TS-24.10.2.2 | iscsi_target_rel_tgt_id
    target_rel_tgt_id: bool  # 24.04+
    # mw: api/v25_04_0/iscsi_target.py:51 @ TS-25.04.2.4 | iscsi_parameters:
    target_iscsi_parameters: bool  # 25.04+
    # mw: plugins/iscsi_/targets.py:426 @ TS-24.10.2.2 | if data.get("alias", None) == "":
    alias_empty_is_value: bool  # CORE: "" is a real alias value
    # mw: plugins/iscsi.py:1016 @ TN-13.0-U6.1 | List('auth_network'
    initiator_auth_network: bool  # CORE: auth_network on initiator groups
    # mw: plugins/iscsi.py:156 @ TN-13.0-U6.1 | Int('port', default=3260
    portal_port_per_ip: bool  # CORE: listen [{ip, port}]
    # mw: plugins/iscsi_/portal.py:73 @ TS-24.10.2.2 | data['discovery_authmethod']
    portal_discovery_fields: bool  # <= 24.10: discovery_authmethod/discovery_authgroup on portals
    # mw: api/v25_04_0/iscsi_auth.py:25 @ TS-25.04.2.4 | discovery_auth: IscsiAuthType
    auth_discovery_auth: bool  # 25.04+: iscsi.auth.discovery_auth
    # mw: plugins/iscsi_/auth.py:10 @ TS-25.04.2.4 | INVALID_CHARACTERS = '#'
    auth_secret_no_hash: bool  # 25.04 forbids '#'
    # mw: plugins/iscsi_/iscsi_global.py:23 @ TS-24.10.2.2 | iscsi_listen_port
    global_listen_port: bool  # SCALE
    # mw: api/v25_04_0/iscsi_global.py:29 @ TS-25.04.2.4 | iser: bool
    global_iser: bool  # 25.04+
    # mw: plugins/pool_/dataset.py:79 @ TS-24.10.2.2 | Dict('user_properties'
    user_properties: bool  # SCALE 22.02+
    # mw: plugins/pool_/dataset.py:267 @ TS-24.10.2.2 | data['create_ancestors']
    create_ancestors: bool  # SCALE 22.02+
    # mw: plugins/pool_/dataset.py:375 @ TS-24.10.2.2 | data['volblocksize'] = '16K'
    default_volblocksize: str | None  # "16K" SCALE >= 23.10; None => ZFS default (8K on CORE 13)
    # mw: plugins/pool.py:3357 @ TN-13.0-U6.1 | if 'volblocksize' in data:
    volblocksize_check_only_if_given: bool  # CORE
    # mw: plugins/pool_/dataset.py:539 @ TS-24.10.2.2 | Dataset name length should be
    dataset_name_max: int
    # mw: plugins/service_/services/base_freebsd.py:43 @ TN-13.0-U6.1 | await self._freebsd_service(self.freebsd_rc, "restart")
    core_start_restarts: bool  # CORE: service.start == rc restart
    # mw: plugins/service.py:158 @ TS-25.10.1 | async def control(
    service_control: bool  # 25.10: service.control job
    # mw: api/v25_10_0/core.py:300 @ TS-25.10.1 | legacy_jobs: bool
    legacy_jobs_option: bool  # 25.10: core.set_options legacy_jobs
    # mw: plugins/iscsi_/extents.py:364 @ TS-24.10.2.2 | Must be set when disk is a ZFS Snapshot
    extent_create_ro_msg: str = "Must be set when disk is a ZFS Snapshot"
    # mw: plugins/pool_/snapshot.py:12 @ TS-25.10.1 | class PoolSnapshotService(CRUDService)
    pool_snapshot: bool = False  # pool.snapshot.* (25.10+); before it only zfs.snapshot.*
    # the pinned versions are the api/v* directories at the tag; /api/versions lists them less v24.10
    # mw: main.py:155 @ TS-25.04.2.4 | for version_dir in sorted(pathlib.Path(api_dir).iterdir())
    # mw: main.py:1302 @ TS-25.10.1 | if version.version != "v24.10"
    pinned_versions: tuple = ()
    # mw: main.py:186 @ TS-24.10.2.2 | 'errname': get_errname(errno),
    errname: bool = True  # legacy error dicts carry errname (SCALE); CORE 13's send_error has no such key
    # FreeNAS 11.3 (TN-11.3-U5, plugins/iscsi.py): extents have no "locked" field, initiator groups carry a
    # "tag", deleting a CHAP credential is not checked against targets, the serial is a schema max_length 16
    # ("Value greater than 16 not allowed"), and a missing zvol is "ZVOL zvol/X does not exist".
    # mw: plugins/iscsi.py:473 @ TN-13.0-U6.1 | class iSCSITargetExtentService(SharingService):
    # mw: plugins/iscsi.py:503 @ TN-11.3-U5 | class iSCSITargetExtentService(CRUDService):
    extent_locked: bool = True
    # mw: plugins/iscsi.py:971 @ TN-11.3-U5 | Int('tag', default=0),
    initiator_tag: bool = False
    # mw: plugins/iscsi.py:382 @ TN-13.0-U6.1 | usages = await self.is_in_use_by_portals_targets(id)
    auth_delete_in_use_check: bool = True
    # mw: plugins/iscsi.py:516 @ TN-11.3-U5 | Str('serial', default=None, null=True, max_length=16)
    serial_schema_max: bool = False
    # mw: plugins/iscsi.py:765 @ TN-11.3-U5 | ZVOL {disk} does not exist
    zvol_missing_msg_11: bool = False
    # 26 (TS-26.0.0-BETA.3, plugins/iscsi_/extents.py + api/v26_0_0): extents also report dataset/relative_path,
    # the global config reports direct_config/mode
    # mw: api/v26_0_0/iscsi_extent.py:37 @ TS-26.0.0-BETA.3 | relative_path:
    extent_dataset_fields: bool = False
    # mw: api/v26_0_0/iscsi_global.py:46 @ TS-26.0.0-BETA.3 | direct_config:
    global_mode_fields: bool = False
    # mw: utils/auth.py:20 @ TS-26.0.0-BETA.3 | SCRAM = 'SCRAM'
    auth_scram: bool = False
    # dependent clones on snapshot delete: options.defer validation error on SCALE 24.10..25.10 (zfs_snapshot.py cites it)
    snapshot_clones_defer_error: bool = False


PROFILES: dict[str, Profile] = {}


def _add(p: Profile) -> None:
    PROFILES[p.name] = p


_add(
    Profile(
        name="13",
        version_string="TrueNAS-13.0-U6.1",
        core=True,
        jsonrpc=False,
        notauth_errno=13,
        post_auth_limit=None,
        rate_limit=False,
        roles=False,
        login_ex=False,
        revoke_insecure_api_key=False,
        pydantic=False,
        extent_name_max=None,
        serial_max=15,
        extent_single_target=False,
        extent_product_id=False,
        target_name_max=None,
        target_name_exists_msg="Target name already exists",
        target_delete_extents=False,
        target_auth_networks=False,
        target_rel_tgt_id=False,
        target_iscsi_parameters=False,
        alias_empty_is_value=True,
        initiator_auth_network=True,
        portal_port_per_ip=True,
        portal_discovery_fields=True,
        auth_discovery_auth=False,
        auth_secret_no_hash=False,
        global_listen_port=False,
        global_iser=False,
        user_properties=False,
        create_ancestors=False,
        default_volblocksize=None,
        volblocksize_check_only_if_given=True,
        dataset_name_max=255,
        core_start_restarts=True,
        service_control=False,
        legacy_jobs_option=False,
        errname=False,
    )
)

# 24.10: what changed since 13: SCALE (Linux/SCST): roles, rate limit, 64 KiB limit, user properties, 16K default volblocksize.
_add(
    replace(
        PROFILES['13'],
        name='24.10',
        version_string='TrueNAS-SCALE-24.10.2.2',
        core=False,
        notauth_errno=207,
        post_auth_limit=65536,
        rate_limit=True,
        roles=True,
        extent_name_max=64,
        serial_max=20,
        extent_single_target=True,
        target_name_exists_msg='Target with this name already exists',
        target_auth_networks=True,
        target_rel_tgt_id=True,
        alias_empty_is_value=False,
        initiator_auth_network=False,
        portal_port_per_ip=False,
        global_listen_port=True,
        user_properties=True,
        create_ancestors=True,
        default_volblocksize='16K',
        volblocksize_check_only_if_given=False,
        dataset_name_max=200,
        core_start_restarts=False,
        errname=True,
        snapshot_clones_defer_error=True,
    )
)

# 25.04: what changed since 24.10: JSON-RPC at /api/current, login_ex, strict models, API-key revocation over plain ws.
_add(
    replace(
        PROFILES['24.10'],
        name='25.04',
        version_string='TrueNAS-25.04.2.4',
        jsonrpc=True,
        login_ex=True,
        revoke_insecure_api_key=True,
        pydantic=True,
        target_name_max=120,
        target_delete_extents=True,
        target_iscsi_parameters=True,
        portal_discovery_fields=False,
        auth_discovery_auth=True,
        auth_secret_no_hash=True,
        global_iser=True,
        pinned_versions=('v24.10', 'v25.04.0', 'v25.04.1', 'v25.04.2'),
    )
)

# 25.10: what changed since 25.04: service.control jobs, legacy_jobs option, extent product_id.
_add(
    replace(
        PROFILES['25.04'],
        name='25.10',
        version_string='TrueNAS-25.10.1',
        extent_product_id=True,
        service_control=True,
        pool_snapshot=True,
        legacy_jobs_option=True,
        pinned_versions=('v24.10', 'v25.04.0', 'v25.04.1', 'v25.04.2', 'v25.10.0', 'v25.10.1'),
    )
)


# 11.3: FreeNAS 11.3-U5 (freenas/11.3-stable): CORE before 12: no API keys (plugins/api_key.py absent; only
# auth.login), no auth.me / system.product_type / core.set_options (the source table gates them), iscsi.py
# differences above; its zvol-delete cascade drops extents and mappings but leaves the targets.
_add(
    replace(
        PROFILES["13"],
        name="11.3",
        version_string="FreeNAS-11.3-U5",
        serial_max=16,
        extent_locked=False,
        initiator_tag=True,
        auth_delete_in_use_check=False,
        serial_schema_max=True,
        zvol_missing_msg_11=True,
    )
)

# 26: what changed since 25.10 (TS-26.0.0-BETA.3): service.start/stop/restart/reload are private (only
# service.control is public; plugins/service.py), zfs.snapshot.* is gone (pool.snapshot.* only), new output
# fields on extents and the global config, API versions up to v26.0.0.
_add(
    replace(
        PROFILES["25.10"],
        name="26",
        version_string="TrueNAS-26.0.0-BETA.3",
        extent_dataset_fields=True,
        global_mode_fields=True,
        auth_scram=True,
        snapshot_clones_defer_error=False,
        pinned_versions=PROFILES["25.10"].pinned_versions + ("v25.10.2", "v25.10.3", "v25.10.4", "v26.0.0"),
    )
)

#: oldest first; the order netprov's version checks rely on
PROFILE_ORDER = ("11.3", "13", "24.10", "25.04", "25.10", "26")


def get_profile(name: str) -> Profile:
    """``"11.3"``, ``"13"``, ``"24.10"``, ``"25.04"``, ``"25.10"``, ``"26"``; longer versions (``"13.0-U6"``) map to them."""
    key = str(name).strip()
    if key in PROFILES:
        return PROFILES[key]
    for cand in sorted(PROFILES, key=len, reverse=True):
        if key.startswith(cand + ".") or key.startswith(cand + "-"):
            return PROFILES[cand]
    raise ValueError(f"unknown TrueNAS profile {name!r}; choose one of {sorted(PROFILES)}")
