"""The use cases behind the commands: load, connect, plan, apply, verify (and snapshot, status).

A ``Session`` is one inventory loaded from disk (its templates and CHAP secrets) plus what the
caller handed it: the environment (``env``, where storage credentials named by the inventory
are read) and two hooks, ``warn`` (a line for the user) and ``mask`` (values never to print).
It reads no settings and prints nothing: the CLI turns its settings into ``ConnectOptions``
and maps the typed errors raised here to exit codes:

- ``StalePlanError``: a saved plan no longer matches the inventory or the world;
- ``ConvergenceError``: after an apply, a fresh plan still has changes (``.plan`` holds it);
- ``NetprovError``: anything else a user can act on (a refused change, a missing secret).

The engine's functions (``make_plan``, ``apply_plan``, ``check_applicable``, ``blocking_refusals``)
are called from here only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from secrets import token_bytes
from typing import Any

from netprov.adapters.local import Workspace, load_workspace, read_secret_file, write_atomic
from netprov.adapters.snapshot import STATE_FORMAT
from netprov.core.boot_render import Renderer
from netprov.core.bootfiles import BootFile, Root
from netprov.core.fileplan import secret_digests
from netprov.core.manifest import manifest_to_json
from netprov.core.plan import FORMAT_VERSION, Change, Plan
from netprov.core.storage import StoragePolicy, desired_storage
from netprov.engine.run import (ApplyResult, Planned, Reporter, World, apply_plan, blocking_refusals,
                                check_applicable, make_plan, offline_world, server_roots)
from netprov.errors import ConvergenceError, NetprovError, StalePlanError

__all__ = ["ApplyResult", "ConnectOptions", "SavedPlan", "Session", "storage_credentials", "trust_command"]

PLAN_FILE_KIND = "netprov-plan"


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach the systems (the CLI's settings as plain values; never desired state)."""

    insecure: bool = False                 # skip TLS verification of the NAS
    ca_file: Path | None = None            # CA bundle for the NAS's certificate (a storage's own ca_file wins)
    known_nas: Path | None = None          # pinned NAS certificates (default ~/.config/netprov/known_nas)
    accept_new_host_key: bool = False
    known_hosts: Path | None = None        # a server's own ssh.known_hosts wins
    ssh_config: Path | None = None
    timeout: float = 30.0
    max_wait: float | None = None
    api_key: str | None = None             # NETPROV_API_KEY: every NAS's API key, whatever the inventory says


# --- credentials and connections ---------------------------------------------------------

def storage_credentials(storage: Any, name: str, *, env: Mapping[str, str], api_key: str | None = None,
                        warn: Callable[[str], None] = _ignore):
    """The NAS credentials. The rule: ``api_key`` (NETPROV_API_KEY) beats the inventory; then the one
    source the inventory names (it allows one): ``api_key_env`` (must be set in ``env``), or
    ``api_key_file``, or ``username`` with ``password_env`` / ``password_file``. A file is read
    whole with surrounding whitespace dropped; one group or others can open is warned about."""
    from netprov.adapters.truenas.rpc import Credentials
    if api_key is not None:
        return Credentials(api_key=api_key)
    if storage.api_key_env:
        key = env.get(storage.api_key_env)
        if not key:
            raise NetprovError(f"storage {name}: environment variable {storage.api_key_env} (its API key) is not set")
        return Credentials(api_key=key)
    if storage.api_key_file:
        return Credentials(api_key=read_secret_file(storage.api_key_file, warn).strip())
    password = env.get(storage.password_env) if storage.password_env else None
    if storage.password_file:
        password = read_secret_file(storage.password_file, warn).strip()
    if not password:
        raise NetprovError(f"storage {name}: no password available for user {storage.username}")
    return Credentials(username=storage.username, password=password)


def trust_command(storage: str, inventory: Path | str) -> str:
    """How messages tell the user to (re)pin this NAS's certificate."""
    import shlex
    inv = str(inventory)
    return f"netprov trust {shlex.quote(storage)}" + ("" if inv == "inventory.yaml" else f" {shlex.quote(inv)}")


def known_nas_file(options: ConnectOptions) -> Path:
    from netprov.adapters.known_nas import default_path
    return Path(options.known_nas) if options.known_nas else default_path()


def _pin_for(url: str, options: ConnectOptions):
    """The pinned certificate for the NAS at ``url`` (None for ws:// or when nothing is pinned)."""
    from netprov.adapters import known_nas
    if not url.strip().lower().startswith(("wss://", "https://")) and "://" in url:
        return None
    return known_nas.lookup(known_nas_file(options), url)


def pxe_settings(name: str, server: Any, roots: Mapping[Root, str], options: ConnectOptions):
    """How to reach one PXE server: the inventory's values, defaults for what it leaves out."""
    from netprov.adapters.pxe.boot_host import PxeSettings
    from netprov.core.inventory import Ssh
    ssh = server.ssh or Ssh(host="localhost")  # transport: local uses no SSH fields
    defaults = PxeSettings(host=ssh.host, roots={})
    sudo = server.sudo if server.sudo is not None else (ssh.sudo if ssh.sudo is not None else True)
    return PxeSettings(
        host=ssh.host, roots=roots, port=ssh.port, user=ssh.user,
        identity_file=ssh.identity_file, lock_path=server.lock_path,
        known_hosts=ssh.known_hosts or (str(options.known_hosts) if options.known_hosts else None),
        accept_new_host_key=options.accept_new_host_key,
        ssh_config=str(options.ssh_config) if options.ssh_config else None,
        test_command=server.test_command or defaults.test_command,
        reload_command=server.reload_command or defaults.reload_command,
        restart_command=server.restart_command or defaults.restart_command,
        sudo=sudo, secret_group=server.secret_group, flavor=server.flavor, pihole_toml=server.pihole_toml,
        server=name, connect_timeout=options.timeout, command_timeout=max(options.timeout, 60.0) * 5)


@contextlib.contextmanager
def _said_above(insecure: bool) -> Iterator[None]:
    """The TrueNAS client warns about --insecure itself (a Python warning and a log line); the session
    has said it in one line already (``warn``), so those two are dropped (--debug still logs it)."""
    import logging
    import warnings

    from netprov.adapters.truenas import rpc

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (insecure and record.levelno == logging.WARNING and "(insecure)" in record.getMessage())

    drop = _Drop()
    rpc.logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            if insecure:
                warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        rpc.logger.removeFilter(drop)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NetprovError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise NetprovError(f"{path} is not a netprov {what}")
    return data


def read_state(path: Path) -> dict:
    """A snapshot written by :meth:`Session.snapshot` (`netprov state pull`)."""
    snapshot = _read_json(path, "state file")
    if snapshot.get("format") != STATE_FORMAT:
        raise NetprovError(f"{path} is not a netprov state file (format {STATE_FORMAT})")
    return snapshot


# --- saved plans ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedPlan:
    """A plan saved by `netprov plan --out FILE`, as read back for `netprov apply FILE`.

    The file is the plan's JSON (every hash of a file holding a secret masked) plus ``secret_files``:
    a random key and, under it, an HMAC of each such file's real hashes (``fileplan.secret_digests``).
    ``check`` recomputes them with that key, so a CHAP secret that changed since the plan still makes
    it stale, while the file holds no hash anyone could test guesses of a secret on without its key."""

    path: Path
    data: dict = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> SavedPlan:
        data = _read_json(path, "plan file")
        if data.get("kind") != PLAN_FILE_KIND:
            raise NetprovError(f"{path} is not a saved netprov plan (netprov plan --out FILE)")
        if data.get("format_version") != FORMAT_VERSION:
            raise NetprovError(f"{path} has plan format {data.get('format_version')}; this netprov reads "
                               f"{FORMAT_VERSION}")
        return cls(path, data)

    @staticmethod
    def write(plan: Plan, out: Path) -> None:
        """Write ``plan`` to ``out`` (mode 0600) for `netprov apply FILE`."""
        if plan.options.get("offline"):
            raise NetprovError("an offline plan can't be saved for apply: plan against the live systems")
        key = token_bytes(32)
        data = plan.to_json()
        data["kind"] = PLAN_FILE_KIND
        data["secret_files"] = {"key": key.hex(), "digests": secret_digests(plan.changes, key)}
        write_atomic(out, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    @property
    def inventory(self) -> Path:
        return Path(self.data["inventory"])

    @property
    def options(self) -> dict[str, Any]:
        return self.data.get("options") or {}

    def check(self, plan: Plan) -> None:
        """Raise ``StalePlanError`` unless ``plan`` (made now) is the saved one: every system's
        fingerprint the same, and the same changes (templates and secrets can change them too), the
        masked hashes of files holding a secret compared through their keyed digests."""
        saved = self.data["fingerprints"]
        if plan.fingerprints != saved:
            changed = sorted(s for s in plan.fingerprints if plan.fingerprints[s] != saved.get(s))
            raise StalePlanError(f"saved plan is stale: {', '.join(changed)} changed since it was made; plan again")
        if [c.to_json() for c in plan.changes] != self.data["changes"] or not self._same_secret_files(plan):
            # Same world, same inventory file, different plan: templates or secrets changed.
            raise StalePlanError("saved plan is stale: the plan made now differs from the saved one (template "
                                 "overrides or secrets changed); plan again")

    def _same_secret_files(self, plan: Plan) -> bool:
        record = self.data.get("secret_files")
        if not isinstance(record, dict) or not isinstance(record.get("digests"), dict):
            return False
        try:
            key = bytes.fromhex(str(record.get("key")))
        except ValueError:
            return False
        now = secret_digests(plan.changes, key)
        return now.keys() == record["digests"].keys() and all(
            hmac.compare_digest(d, str(record["digests"][a])) for a, d in now.items())


# --- the session ----------------------------------------------------------------------------

@dataclass
class Session:
    """One inventory, loaded: plan and apply it against a world (see the module's docstring)."""

    workspace: Workspace
    inventory_sha256: str
    env: Mapping[str, str]
    warn: Callable[[str], None] = _ignore
    mask: Callable[..., None] = _ignore
    renderer: Renderer = field(init=False)

    def __post_init__(self) -> None:
        self.renderer = Renderer(self.workspace.templates)

    @classmethod
    def load(cls, inventory: Path, *, env: Mapping[str, str], warn: Callable[[str], None] = _ignore,
             mask: Callable[..., None] = _ignore) -> Session:
        """Read and check the inventory, its template overrides and its CHAP secrets (from ``env`` or
        files). Raises ``InventoryError`` with every problem; warnings are in ``.warnings``."""
        ws = load_workspace(inventory, env)
        mask(*ws.secrets.values())
        return cls(ws, hashlib.sha256(Path(inventory).read_bytes()).hexdigest(), env, warn, mask)

    @property
    def path(self) -> Path:
        return self.workspace.path

    @property
    def loaded(self):
        return self.workspace.loaded

    @property
    def warnings(self):
        return self.workspace.warnings

    # --- what the inventory wants -----------------------------------------------------------

    def render(self) -> list[BootFile]:
        """Every PXE server's boot files (a broken template override raises ``TemplateError``)."""
        return self.renderer.render(self.loaded, self.workspace.secrets)

    def roots(self, server: str) -> dict[Root, str]:
        """The PXE server's directories (TFTP, dnsmasq drop-ins, host lines, HTTP) by root."""
        return server_roots(self.loaded, server)

    def policy(self, target: list[str] | None = None, *, allow_destroy: bool = False, adopt: bool = False,
               no_snapshot: bool = False, stamp: str | None = None) -> StoragePolicy:
        machines = None
        if target:
            known = {m.name for m in self.loaded.machines}
            unknown = sorted(set(target) - known)
            # An orphan (in the NAS, not the inventory) may be targeted for deletion too.
            if unknown and not allow_destroy:
                raise NetprovError(f"--target names machines not in the inventory: {', '.join(unknown)}")
            machines = frozenset(target)
        # the net's names carry the plan's UTC time; a saved plan keeps its own (the core reads no clock)
        stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return StoragePolicy(allow_destroy=allow_destroy, adopt=adopt, machines=machines, snapshot=not no_snapshot,
                             stamp=stamp)

    def saved_policy(self, saved: SavedPlan) -> StoragePolicy:
        """The options a saved plan was made with; ``StalePlanError`` if the inventory file changed since."""
        if saved.data["inventory_sha256"] != self.inventory_sha256:
            raise StalePlanError(f"saved plan is stale: {saved.inventory} changed since `netprov plan --out "
                                 f"{saved.path}`; plan again")
        options = saved.options
        return self.policy(options.get("targets"), allow_destroy=bool(options.get("allow_destroy")),
                           adopt=bool(options.get("adopt")), no_snapshot=options.get("snapshot") is False,
                           stamp=options.get("snapshot_stamp"))

    # --- connect ------------------------------------------------------------------------------

    def credentials(self, name: str, options: ConnectOptions):
        creds = storage_credentials(self.loaded.inventory.storage[name], name, env=self.env,
                                    api_key=options.api_key, warn=self.warn)
        self.mask(*(s.get_secret_value() for s in (creds.api_key, creds.password) if s is not None))
        return creds

    @contextlib.contextmanager
    def connect(self, options: ConnectOptions, *, offline: bool = False,
                state: Path | None = None) -> Iterator[World]:
        """Connect to every NAS and PXE server the inventory names, closed on exit. ``offline``: contact
        nothing, plan against an empty world; ``state``: against a snapshot from :meth:`snapshot`."""
        if offline or state is not None:
            yield offline_world(self.loaded, read_state(state) if state is not None else {})
            return
        with contextlib.ExitStack() as stack:
            storage = {name: self._connect_storage(name, options, stack)
                       for name in sorted(self.loaded.inventory.storage)}
            pxe = {name: self._connect_pxe(name, options, stack) for name in sorted(self.loaded.inventory.pxe_servers)}
            yield World(storage=storage, pxe=pxe)

    def _connect_storage(self, name: str, options: ConnectOptions, stack: contextlib.ExitStack):
        from netprov.adapters.truenas.backend import TrueNASStorage
        from netprov.adapters.truenas.rpc import TrueNASClient
        st = self.loaded.inventory.storage[name]
        if options.insecure:
            self.warn(f"TLS verification of storage {name} is OFF (--insecure): anyone on the path "
                      "can read and alter the session")
        with _said_above(options.insecure):
            client = TrueNASClient.connect(st.url, self.credentials(name, options),
                                           ca_file=str(st.ca_file or options.ca_file or "") or None,
                                           insecure=options.insecure, timeout=options.timeout,
                                           max_wait=options.max_wait, pin=_pin_for(st.url, options),
                                           trust_command=trust_command(name, self.path))
        stack.callback(client.close)
        port = TrueNASStorage(client, name, st)
        if port.version_warning:
            self.warn(f"storage {name}: {port.version_warning}")
        return port

    def _connect_pxe(self, name: str, options: ConnectOptions, stack: contextlib.ExitStack):
        from netprov.adapters.pxe.boot_host import PxeHost
        server = self.loaded.inventory.pxe_servers[name]
        settings = pxe_settings(name, server, self.roots(name), options)
        if server.transport == "local":
            from netprov.adapters.pxe.local_shell import LocalConnection
            host = PxeHost(settings, connection=LocalConnection(f"{name} (this machine)"))
        else:
            host = PxeHost(settings)
        stack.callback(host.close)
        return host

    # --- plan, apply, verify ------------------------------------------------------------------

    def plan(self, world: World, policy: StoragePolicy, reporter: Reporter | None = None) -> Planned:
        """Read the world (or its snapshot) and plan both halves. Changes nothing."""
        return make_plan(self.loaded, self.renderer, self.workspace.secrets, world, policy=policy,
                         inventory_name=str(self.path), inventory_sha256=self.inventory_sha256, reporter=reporter)

    @staticmethod
    def refusals(plan: Plan, *, secrets_optional: bool = False) -> list[Change]:
        """The refused changes that stop an apply (``secrets_optional``: not those refused only because
        a CHAP secret isn't available here, as a plan in CI sees them)."""
        return blocking_refusals(plan, secrets_optional=secrets_optional)

    @staticmethod
    def check_applicable(run: Planned) -> None:
        """Raise unless every change can be made (``engine.run.check_applicable``): called before asking."""
        check_applicable(run.plan)

    def apply(self, run: Planned, world: World, *, reporter: Reporter | None = None, parallel: int = 8,
              should_stop: Callable[[], bool] = lambda: False, result: ApplyResult | None = None) -> ApplyResult:
        """Carry out ``run`` (see ``engine.run.apply_plan``, which checks it first); ``result`` records it
        even if something escapes."""
        return apply_plan(run.plan, world, desired=run.desired, reporter=reporter, parallel=parallel,
                          should_stop=should_stop, result=result)

    def verify(self, world: World, policy: StoragePolicy, result: ApplyResult) -> Planned:
        """Plan again after ``result``'s apply: raise ``ConvergenceError`` (holding the fresh plan) if
        any change is left. If the check itself fails, the error says the changes were made."""
        try:
            after = self.plan(world, policy)
        except NetprovError as exc:
            raise NetprovError(f"the {len(result.done)} change(s) above were made, but the check that followed "
                               f"failed: {exc}; run `netprov plan` to see where things stand") from None
        if after.plan.has_changes:
            raise ConvergenceError("the world did not converge: a fresh plan still has changes", plan=after.plan)
        return after

    # --- snapshot and status ----------------------------------------------------------------

    def snapshot(self, world: World) -> dict[str, Any]:
        """What every NAS and PXE server holds, for offline plans (`netprov state pull`). It holds no
        secret (a CHAP secret only as a salted hash), but it maps the NAS: keep it private."""
        snapshot: dict[str, Any] = {"format": STATE_FORMAT, "storage": {}, "pxe": {}}
        for name, port in world.storage.items():
            desired = desired_storage(self.loaded, name, self.workspace.secrets)
            snapshot["storage"][name] = port.read(desired).to_json()
        files = self.render()
        for name, host in world.pxe.items():
            manifest = host.read([f for f in files if f.server == name], diffs=False, host_text=True)
            snapshot["pxe"][name] = manifest_to_json(manifest)
        return snapshot

    def status(self, run: Planned, target: list[str] | None = None):
        """The plan regrouped per machine (``netprov.core.status``), limited to ``target``."""
        from netprov.core.status import summarise
        machines = [m for m in self.loaded.machines if target is None or m.name in target]
        changes = [c for c in run.plan.changes if target is None or c.machine is None or c.machine in target]
        return summarise(changes, machines, {k: (run.desired[k], run.actual[k]) for k in run.actual})
