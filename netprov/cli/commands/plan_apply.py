"""`netprov plan` and `netprov apply`: one plan for both halves, Terraform habits.

The composition root: builds settings, opens the connections (one per NAS, one per
PXE server), hands them to the engine, and shows the result. Everything the
commands print goes through netprov.cli.console (data on stdout, messages on stderr).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode
from netprov.errors import NetprovError

PLAN_FILE_KIND = "netprov-plan"


# --- shared option types ---------------------------------------------------------------

TargetOpt = Annotated[Optional[list[str]], typer.Option("--target", "-t", metavar="MACHINE",
                                                       help="Limit to these machines (repeat).")]
AllowDestroyOpt = Annotated[bool, typer.Option("--allow-destroy", help="Allow deleting/replacing disks "
                                               "(orphans, shrink, volblocksize change).")]
AdoptOpt = Annotated[bool, typer.Option("--adopt", help="Take over same-named objects netprov did not create.")]
FullOpt = Annotated[bool, typer.Option("--full", help="Show every object of every machine (a plan creating "
                                       "more than 20 machines shows one line per created machine).")]
NoSnapshotOpt = Annotated[bool, typer.Option("--no-snapshot", help="Destroy deleted/replaced disks outright instead "
                                             "of keeping them (snapshot + retired copy; docs/recovery.md).")]
InsecureOpt = Annotated[Optional[bool], typer.Option("--insecure/--no-insecure", help="Skip TLS verification of the NAS "
                                                     "(warns). Env: NETPROV_INSECURE.", show_default=False)]
CaFileOpt = Annotated[Optional[Path], typer.Option("--ca-file", help="CA bundle for the NAS's certificate.")]
AcceptKeyOpt = Annotated[Optional[bool], typer.Option("--accept-new-host-key/--no-accept-new-host-key",
                                                      help="Trust an unknown SSH host key on first use.",
                                                      show_default=False)]


@dataclass
class Context:
    """Everything one plan/apply run needs, loaded once."""

    ws: Any
    settings: Any
    renderer: Any
    inventory_sha256: str


def _load(inventory: Path, opts, **flags: Any) -> Context:
    from netprov.adapters.local import load_workspace
    from netprov.core.boot_render import Renderer
    from netprov.settings import load_settings

    settings = load_settings(opts.config, warn=lambda m: console.warning(m, quiet=opts.quiet), **flags)
    ws = load_workspace(inventory)
    console.add_secrets(*ws.secrets.values())
    for w in ws.warnings:
        console.problem(w, quiet=opts.quiet)
    sha = hashlib.sha256(inventory.read_bytes()).hexdigest()
    return Context(ws, settings, Renderer(ws.templates), sha)


def _policy(target: list[str] | None, allow_destroy: bool, adopt: bool, ctx: Context, *,
            no_snapshot: bool = False, stamp: str | None = None):
    from datetime import datetime, timezone

    from netprov.core.storage import StoragePolicy
    machines = None
    if target:
        known = {m.name for m in ctx.ws.loaded.machines}
        unknown = sorted(set(target) - known)
        # An orphan (in the NAS, not the inventory) may be targeted for deletion too.
        if unknown and not allow_destroy:
            raise NetprovError(f"--target names machines not in the inventory: {', '.join(unknown)}")
        machines = frozenset(target)
    # the net's names carry the plan's UTC time; a saved plan keeps its own (the core reads no clock)
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return StoragePolicy(allow_destroy=allow_destroy, adopt=adopt, machines=machines, snapshot=not no_snapshot,
                         stamp=stamp)


def _read_secret_file(path: str) -> str:
    from netprov.adapters.local import secret_file_warning
    try:
        p = Path(path)
        why = secret_file_warning(p)
        if why:
            console.warning(why)
        return p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise NetprovError(f"cannot read {path}: {exc.strerror}") from None


def storage_credentials(storage, settings, name: str):
    """The NAS credentials, from settings (NETPROV_API_KEY), the env var or the file the inventory names."""
    creds = _credentials(storage, settings, name)
    console.add_secrets(*(s.get_secret_value() for s in (creds.api_key, creds.password) if s is not None))
    return creds


def _credentials(storage, settings, name: str):
    from netprov.adapters.truenas.rpc import Credentials
    if settings.api_key is not None:
        return Credentials(api_key=settings.api_key.get_secret_value())
    if storage.api_key_env:
        key = os.environ.get(storage.api_key_env)
        if not key:
            raise NetprovError(f"storage {name}: environment variable {storage.api_key_env} (its API key) is not set")
        return Credentials(api_key=key)
    if storage.api_key_file:
        return Credentials(api_key=_read_secret_file(storage.api_key_file))
    password = os.environ.get(storage.password_env) if storage.password_env else None
    if storage.password_file:
        password = _read_secret_file(storage.password_file)
    if not password:
        raise NetprovError(f"storage {name}: no password available for user {storage.username}")
    return Credentials(username=storage.username, password=password)


def pxe_settings(name: str, server, loaded, settings):
    from netprov.adapters.pxe.boot_host import PxeSettings
    from netprov.core.inventory import Ssh
    from netprov.engine.run import server_roots
    ssh = server.ssh or Ssh(host="localhost")  # transport: local uses no SSH fields
    defaults = PxeSettings(host=ssh.host, roots={})
    sudo = server.sudo if server.sudo is not None else (ssh.sudo if ssh.sudo is not None else True)
    return PxeSettings(
        host=ssh.host, roots=server_roots(loaded, name), port=ssh.port, user=ssh.user,
        identity_file=ssh.identity_file, lock_path=server.lock_path,
        known_hosts=ssh.known_hosts or (str(settings.known_hosts) if settings.known_hosts else None),
        accept_new_host_key=settings.accept_new_host_key,
        ssh_config=str(settings.ssh_config) if settings.ssh_config else None,
        test_command=server.test_command or defaults.test_command,
        reload_command=server.reload_command or defaults.reload_command,
        restart_command=server.restart_command or defaults.restart_command,
        sudo=sudo, secret_group=server.secret_group, flavor=server.flavor, pihole_toml=server.pihole_toml,
        server=name, connect_timeout=settings.timeout, command_timeout=max(settings.timeout, 60.0) * 5)


@contextlib.contextmanager
def open_world(ctx: Context, *, offline: bool, state: Path | None):
    """Connect to every NAS and PXE server the inventory names (or load offline state)."""
    from netprov.engine.run import World, offline_world
    if offline or state is not None:
        from netprov.adapters.snapshot import STATE_FORMAT
        snapshot: dict = {}
        if state is not None:
            snapshot = _read_json(state, "state file")
            if snapshot.get("format") != STATE_FORMAT:
                raise NetprovError(f"{state} is not a netprov state file (format {STATE_FORMAT})")
        yield offline_world(ctx.ws.loaded, snapshot)
        return
    from netprov.adapters.pxe.boot_host import PxeHost
    from netprov.adapters.truenas.rpc import TrueNASClient
    from netprov.adapters.truenas.backend import TrueNASStorage
    from netprov.cli.commands.trust import pin_for, trust_command
    inv = ctx.ws.loaded.inventory
    with contextlib.ExitStack() as stack:
        storage_ports = {}
        for name, st in sorted(inv.storage.items()):
            if ctx.settings.insecure:
                console.warning(f"TLS verification of storage {name} is OFF (--insecure): anyone on the path "
                                "can read and alter the session")
            with _said_above(ctx.settings.insecure):
                client = TrueNASClient.connect(st.url, storage_credentials(st, ctx.settings, name),
                                               ca_file=str(st.ca_file or ctx.settings.ca_file or "") or None,
                                               insecure=ctx.settings.insecure, timeout=ctx.settings.timeout,
                                               max_wait=ctx.settings.max_wait, pin=pin_for(st.url, ctx.settings),
                                               trust_command=trust_command(name, ctx.ws.path))
            stack.callback(client.close)
            storage_ports[name] = TrueNASStorage(client, name, st)
            if storage_ports[name].version_warning:
                console.warning(f"storage {name}: {storage_ports[name].version_warning}")
        pxe_ports = {}
        for name, server in sorted(inv.pxe_servers.items()):
            settings = pxe_settings(name, server, ctx.ws.loaded, ctx.settings)
            if server.transport == "local":
                from netprov.adapters.pxe.local import LocalConnection
                host = PxeHost(settings, connection=LocalConnection(f"{name} (this machine)"))
            else:
                host = PxeHost(settings)
            stack.callback(host.close)
            pxe_ports[name] = host
        yield World(storage=storage_ports, pxe=pxe_ports)


@contextlib.contextmanager
def _said_above(insecure: bool):
    """The TrueNAS client warns about --insecure itself (a Python warning and a log line); the CLI has
    said it in one line already, so those two are kept out of the terminal (--debug still logs it)."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (insecure and record.levelno == logging.WARNING and "(insecure)" in record.getMessage())

    drop = _Drop()
    from netprov.adapters.truenas import rpc
    logger = rpc.logger
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            if insecure:
                warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.removeFilter(drop)


def make_run_plan(ctx: Context, world, policy, inventory: Path, reporter=None):
    from netprov.engine.run import make_plan
    return make_plan(ctx.ws.loaded, ctx.renderer, ctx.ws.secrets, world, policy=policy,
                     inventory_name=str(inventory), inventory_sha256=ctx.inventory_sha256, reporter=reporter)


def show_plan(plan, *, as_json: bool, verbose: bool = False, full: bool = False) -> None:
    from netprov import plan_view
    if as_json:
        sys.stdout.write(plan_view.plan_json(plan))
    else:
        plan_view.plan_rich(plan, console.out(), verbose=verbose, full=full)
    if console.github_actions() and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(plan_view.plan_markdown(plan))


def plan_exit(plan, detailed: bool) -> int:
    """Exit code of `plan`. A change refused only because a CHAP secret isn't available here is a
    warning (CI dry-runs have no secrets; apply still refuses it); any other refusal is an error."""
    from netprov.engine.run import blocking_refusals
    refused = [c for c in plan.refused if c.is_change]
    blocking = blocking_refusals(plan, secrets_optional=True)
    for c in refused:
        if c not in blocking:
            console.warning(f"{c.address}: {c.refused}")
    if blocking:
        console.error(f"{len(blocking)} change(s) refused (see the plan): apply would stop")
        return ExitCode.ERROR
    if detailed and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


def save_plan(plan, out: Path) -> None:
    data = plan.to_json()
    data["kind"] = PLAN_FILE_KIND
    from netprov.adapters.local import write_atomic
    write_atomic(out, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NetprovError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise NetprovError(f"{path} is not a netprov {what}")
    return data


def load_saved_plan(path: Path) -> dict:
    data = _read_json(path, "plan file")
    if data.get("kind") != PLAN_FILE_KIND:
        raise NetprovError(f"{path} is not a saved netprov plan (netprov plan --out FILE)")
    from netprov.core.plan import FORMAT_VERSION
    if data.get("format_version") != FORMAT_VERSION:
        raise NetprovError(f"{path} has plan format {data.get('format_version')}; this netprov reads {FORMAT_VERSION}")
    return data


class ProgressReporter:
    """Engine events -> rich progress bars on stderr (per system and phase), or lines in a pipe.

    Descriptions and lines carry names and NAS messages: never markup (``markup=False``)."""

    def __init__(self, total: dict[str, int], quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.quiet = quiet
        self.tty = console.err().is_terminal
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console.err(), disable=quiet or not self.tty)
        self.tasks = {s: self.progress.add_task(s, total=max(n, 1), start=True) for s, n in sorted(total.items())}
        self.phase: dict[str, str] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def event(self, system: str, event: str, change=None, error: str | None = None) -> None:
        task = self.tasks.get(system)
        if event == "phase" and task is not None:
            self.phase[system] = error or ""
            self.progress.update(task, description=f"{system} ({error})")
        if event == "start" and task is not None and change is not None and change.machine:
            phase = self.phase.get(system, "")
            self.progress.update(task, description=f"{system} ({phase}): {change.machine} {change.kind}")
        if event in ("done", "failed", "skipped") and task is not None and change is not None:
            self.progress.advance(task)
        if event == "upload" and task is not None:
            self.progress.advance(task)
        if not self.tty and not self.quiet and change is not None and event in ("done", "failed"):
            mark = "ok" if event == "done" else f"FAILED: {error}"
            console.info(f"{system}: {change.action.value} {change.address}: {mark}")
        elif event == "failed" and change is not None and self.tty:
            console.error(f"{change.address}: {error}")


def register(app: typer.Typer, opts) -> None:
    @app.command()
    def plan(
        inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")] = Path("inventory.yaml"),
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (see docs/plan-format.md).")] = False,
        out: Annotated[Optional[Path], typer.Option("--out", help="Save the plan for `netprov apply FILE`.")] = None,
        detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode",
                                                        help="Exit 0 no changes, 2 changes, 1 error.")] = False,
        offline: Annotated[bool, typer.Option("--offline", help="Contact nothing: plan against an empty world or "
                                              "--state.")] = False,
        state: Annotated[Optional[Path], typer.Option("--state", help="Actual state from `netprov state pull` "
                                                      "(implies --offline).")] = None,
        target: TargetOpt = None, allow_destroy: AllowDestroyOpt = False, adopt: AdoptOpt = False,
        no_snapshot: NoSnapshotOpt = False, full: FullOpt = False,
        insecure: InsecureOpt = None, ca_file: CaFileOpt = None, accept_new_host_key: AcceptKeyOpt = None,
    ) -> None:
        """Show what apply would change on the NAS and the PXE servers (changes nothing)."""
        ctx = _load(inventory, opts, insecure=insecure, ca_file=ca_file, accept_new_host_key=accept_new_host_key)
        policy = _policy(target, allow_destroy, adopt, ctx, no_snapshot=no_snapshot)
        with open_world(ctx, offline=offline, state=state) as world:
            run = make_run_plan(ctx, world, policy, inventory)
        show_plan(run.plan, as_json=as_json, verbose=opts.verbose > 0, full=full)
        if out is not None:
            if world.offline:
                raise NetprovError("an offline plan can't be saved for apply: plan against the live systems")
            save_plan(run.plan, out)
            console.info(f"plan saved to {out}; run `netprov apply {out}` to carry it out", quiet=opts.quiet)
        raise typer.Exit(plan_exit(run.plan, detailed_exitcode))

    @app.command()
    def apply(
        source: Annotated[Path, typer.Argument(help="Inventory YAML, or a plan saved with `plan --out`.")] = Path(
            "inventory.yaml"),
        auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Don't ask (required when not on a "
                                                   "terminal).")] = False,
        target: TargetOpt = None, allow_destroy: AllowDestroyOpt = False, adopt: AdoptOpt = False,
        no_snapshot: NoSnapshotOpt = False, full: FullOpt = False,
        insecure: InsecureOpt = None, ca_file: CaFileOpt = None, accept_new_host_key: AcceptKeyOpt = None,
    ) -> None:
        """Plan, confirm, make the changes, then plan again to check the world converged."""
        raise typer.Exit(run_apply(source, opts, auto_approve=auto_approve, target=target,
                                   allow_destroy=allow_destroy, adopt=adopt, no_snapshot=no_snapshot, full=full,
                                   flags=dict(insecure=insecure, ca_file=ca_file,
                                              accept_new_host_key=accept_new_host_key)))


def run_apply(source: Path, opts, *, auto_approve: bool, target, allow_destroy: bool, adopt: bool,
              flags: dict, no_snapshot: bool = False, full: bool = False) -> int:
    """`netprov apply` as a function (the demo calls it too)."""
    from netprov import plan_view
    from netprov.engine.run import ApplyResult, apply_plan, blocking_refusals, missing_secrets

    saved = None
    stamp: str | None = None
    inventory = source
    if source.suffix == ".json":
        saved = load_saved_plan(source)
        inventory = Path(saved["inventory"])
        options = saved.get("options") or {}
        target = options.get("targets")
        allow_destroy, adopt = bool(options.get("allow_destroy")), bool(options.get("adopt"))
        no_snapshot, stamp = options.get("snapshot") is False, options.get("snapshot_stamp")
    ctx = _load(inventory, opts, **flags)
    if saved is not None and saved["inventory_sha256"] != ctx.inventory_sha256:
        raise NetprovError(f"saved plan is stale: {inventory} changed since `netprov plan --out {source}`; plan again")
    policy = _policy(target, allow_destroy, adopt, ctx, no_snapshot=no_snapshot, stamp=stamp)
    interactive = sys.stdin.isatty() and console.err().is_terminal
    if not auto_approve and not interactive and saved is None:
        raise NetprovError("refusing to apply unattended: pass --auto-approve (or apply a plan saved with --out)")

    with open_world(ctx, offline=False, state=None) as world:
        run = make_run_plan(ctx, world, policy, inventory)
        if saved is not None and run.plan.fingerprints != saved["fingerprints"]:
            changed = sorted(s for s in run.plan.fingerprints
                             if run.plan.fingerprints[s] != saved["fingerprints"].get(s))
            raise NetprovError(f"saved plan is stale: {', '.join(changed)} changed since it was made; plan again")
        if saved is not None and [c.to_json() for c in run.plan.changes] != saved["changes"]:
            # Same world, same inventory file, different plan: templates or secrets changed.
            raise NetprovError("saved plan is stale: the plan made now differs from the saved one (template "
                               "overrides or secrets changed); plan again")
        plan_view.plan_rich(run.plan, console.err() if not opts.quiet else _null_console(), full=full)
        if not run.plan.has_changes:
            console.info("Nothing to do.", quiet=opts.quiet)
            return ExitCode.OK
        refused = blocking_refusals(run.plan)
        if refused:
            raise NetprovError(f"{len(refused)} change(s) refused; nothing was changed: "
                               + "; ".join(f"{c.address}: {c.refused}" for c in refused[:5]))
        missing = missing_secrets(run.plan)
        if missing:
            raise NetprovError("CHAP secrets are not available for: " + ", ".join(missing[:5])
                               + " (set the secret_env variables / secret_file files); nothing was changed")
        if not auto_approve and saved is None:
            answer = typer.prompt("Apply these changes? Only 'yes' is accepted", default="", show_default=False,
                                  err=True)
            if answer.strip() != "yes":
                console.info("Cancelled; nothing was changed.")
                return ExitCode.ERROR

        stop = {"flag": False}

        def on_sigint(signum, frame):  # noqa: ANN001
            if stop["flag"]:
                raise KeyboardInterrupt
            stop["flag"] = True
            console.error("interrupt: finishing the step in progress, then stopping (Ctrl-C again to abort)")

        previous = signal.signal(signal.SIGINT, on_sigint)
        totals: dict[str, int] = {}
        for c in run.plan.pending:
            totals[c.system] = totals.get(c.system, 0) + 1
        # The record is ours: whatever escapes apply_plan, what it made is still known and said.
        result = ApplyResult()
        try:
            with ProgressReporter(totals, opts.quiet) as reporter:
                apply_plan(run.plan, world, desired=run.desired, reporter=reporter, parallel=ctx.settings.parallel,
                           should_stop=lambda: stop["flag"], result=result)
        except BaseException as exc:
            report_apply(result, verbose=opts.verbose, broken=exc)
            raise
        finally:
            signal.signal(signal.SIGINT, previous)

        report_apply(result, verbose=opts.verbose)
        if result.interrupted:
            console.error("stopped by Ctrl-C between steps; run `netprov plan` to see what is left")
            return ExitCode.INTERRUPTED
        if not result.ok:
            return ExitCode.ERROR

        try:
            after = make_run_plan(ctx, world, policy, inventory)
        except NetprovError as exc:
            raise NetprovError(f"the {len(result.done)} change(s) above were made, but the check that followed "
                               f"failed: {exc}; run `netprov plan` to see where things stand") from None
        if after.plan.has_changes:
            console.error("the world did not converge: a fresh plan still has changes:")
            plan_view.plan_rich(after.plan, console.err())
            return ExitCode.ERROR
        console.info("Converged: a fresh plan has no changes.", quiet=opts.quiet)
    return ExitCode.OK


MADE_LIST_LIMIT = 20


def report_apply(result, *, verbose: int = 0, broken: BaseException | None = None) -> None:
    """Say what an apply did, truthfully, whatever stopped it (``broken``: an exception that escaped
    the engine): the count of changes made, which ones (all with -v, else the first
    MADE_LIST_LIMIT), then each failure, last, one line each."""
    made, failed, skipped = len(result.done), len(result.failed), len(result.skipped)
    ok = result.ok and broken is None
    interrupted = result.interrupted or isinstance(broken, KeyboardInterrupt)
    head = "Done" if ok else ("Interrupted" if interrupted else "Apply failed")
    console.info(f"{head}: {made} change(s) made, {failed} failed, {skipped} not attempted.")
    if not ok and made:
        shown = result.done if verbose else result.done[:MADE_LIST_LIMIT]
        console.info(f"Changes made ({made}):")
        for address in shown:
            console.info(f"  made: {address}")
        if len(shown) < made:
            console.info(f"  ... and {made - len(shown)} more (-v lists them all)")
    if verbose and result.skipped:
        for address in result.skipped:
            console.info(f"  not attempted: {address}")
    for address, error in result.failed:
        console.error(f"{address}: {_scoped(error, address) if made else error}")


def _scoped(error: str, address: str) -> str:
    """A port's "nothing was changed" is about its own system; other systems were changed."""
    import re
    system = address.split(":", 1)[-1] if address.startswith(("pxe:", "storage:")) else address
    return re.sub(r"nothing was changed(?! on )", f"nothing was changed on {system}", error)


def _null_console():
    from rich.console import Console
    return Console(quiet=True, markup=False, emoji=False)
