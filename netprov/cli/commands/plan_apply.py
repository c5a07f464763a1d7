"""`netprov plan` and `netprov apply`: flags in, session calls (netprov.engine.session), text and exit codes out.

Everything the commands print goes through netprov.cli.console (data on stdout, messages on stderr).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from netprov.cli import console
from netprov.cli.commands.common import (AcceptKeyOpt, AdoptOpt, AllowDestroyOpt, CaFileOpt, FullOpt, InsecureOpt,
                                         NoSnapshotOpt, TargetOpt, show_plan, start)
from netprov.cli.exit_codes import ExitCode
from netprov.errors import ConvergenceError, NetprovError


def plan_exit(plan, detailed: bool) -> int:
    """Exit code of `plan`. A change refused only because a CHAP secret isn't available here is a
    warning (CI dry-runs have no secrets; apply still refuses it); any other refusal is an error."""
    from netprov.engine.session import Session
    refused = [c for c in plan.refused if c.is_change]
    blocking = Session.refusals(plan, secrets_optional=True)
    for c in refused:
        if c not in blocking:
            console.warning(f"{c.address}: {c.refused}")
    if blocking:
        console.error(f"{len(blocking)} change(s) refused (see the plan): apply would stop")
        return ExitCode.ERROR
    if detailed and plan.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK


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
        from netprov.engine.session import SavedPlan
        session, options, _ = start(inventory, opts, insecure=insecure, ca_file=ca_file,
                                    accept_new_host_key=accept_new_host_key)
        policy = session.policy(target, allow_destroy=allow_destroy, adopt=adopt, no_snapshot=no_snapshot)
        with session.connect(options, offline=offline, state=state) as world:
            run = session.plan(world, policy)
        show_plan(run.plan, as_json=as_json, verbose=opts.verbose > 0, full=full)
        if out is not None:
            SavedPlan.write(run.plan, out)
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
    from netprov.engine.session import SavedPlan
    saved = SavedPlan.read(source) if source.suffix == ".json" else None
    session, options, settings = start(saved.inventory if saved else source, opts, **flags)
    if saved is not None:
        policy = session.saved_policy(saved)
    else:
        policy = session.policy(target, allow_destroy=allow_destroy, adopt=adopt, no_snapshot=no_snapshot)
    interactive = sys.stdin.isatty() and console.err().is_terminal
    if not auto_approve and not interactive and saved is None:
        raise NetprovError("refusing to apply unattended: pass --auto-approve (or apply a plan saved with --out)")

    with session.connect(options) as world:
        run = session.plan(world, policy)
        if saved is not None:
            saved.check(run.plan)
        from netprov import plan_view
        plan_view.plan_rich(run.plan, console.err() if not opts.quiet else _null_console(), full=full)
        if not run.plan.has_changes:
            console.info("Nothing to do.", quiet=opts.quiet)
            return ExitCode.OK
        session.check_applicable(run)
        if not auto_approve and saved is None and not _confirmed():
            console.info("Cancelled; nothing was changed.")
            return ExitCode.ERROR
        result = _apply_reporting(session, run, world, opts, parallel=settings.parallel)
        if result.interrupted:
            console.error("stopped by Ctrl-C between steps; run `netprov plan` to see what is left")
            return ExitCode.INTERRUPTED
        if not result.ok:
            return ExitCode.ERROR
        try:
            session.verify(world, policy, result)
        except ConvergenceError as exc:
            console.error(f"{exc}:")
            plan_view.plan_rich(exc.plan, console.err())
            return ExitCode.ERROR
        console.info("Converged: a fresh plan has no changes.", quiet=opts.quiet)
    return ExitCode.OK


def _confirmed() -> bool:
    answer = typer.prompt("Apply these changes? Only 'yes' is accepted", default="", show_default=False, err=True)
    return answer.strip() == "yes"


def _apply_reporting(session, run, world, opts, *, parallel: int):
    """Apply with a progress display; the first Ctrl-C stops between steps, a second aborts. Whatever
    happens, what was made is said (the record is ours, even if something escapes the engine)."""
    from netprov.engine.session import ApplyResult
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
    result = ApplyResult()
    try:
        with ProgressReporter(totals, opts.quiet) as reporter:
            session.apply(run, world, reporter=reporter, parallel=parallel, should_stop=lambda: stop["flag"],
                          result=result)
    except BaseException as exc:
        report_apply(result, verbose=opts.verbose, broken=exc)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    report_apply(result, verbose=opts.verbose)
    return result


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
    if result.stopped:
        console.info(f"{result.stopped} failed before any boot file was pushed: nothing else was attempted "
                     "(no file, no delete); run apply again once it is fixed")
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
