"""The Typer application: thin argument handling over plain functions.

``main()`` is the console script. It maps every ``NetprovError`` to one line on
stderr and exit code 1 (``--debug`` adds the traceback), usage errors to 64,
Ctrl-C to 130. Heavy libraries (paramiko, websockets, jinja2) are imported only
inside the commands that need them, so ``netprov --help`` stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from netprov import __version__
from netprov.cli import console
from netprov.cli.exit_codes import ExitCode

#: Global options a user may also write after the subcommand (`netprov plan -v`): moved to the front
#: before parsing, up to a `--`.
GLOBAL_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet", "--debug", "--no-color"})


def hoist_global_flags(args: list[str]) -> list[str]:
    front: list[str] = []
    rest: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_FLAGS or (len(arg) > 2 and arg.startswith("-v") and set(arg[1:]) == {"v"}):
            front.append(arg)
        else:
            rest.append(arg)
    return front + rest


class _Root(TyperGroup):
    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201
        return super().parse_args(ctx, hoist_global_flags(list(args)))


app = typer.Typer(
    name="netprov",
    cls=_Root,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Declarative provisioning for diskless machines that boot over iSCSI from a FreeNAS/TrueNAS NAS.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sim_app = typer.Typer(help="Run simulators (a TrueNAS stand-in for demos, tests and CI).", no_args_is_help=True)
state_app = typer.Typer(help="Snapshot the actual state for offline plans.", no_args_is_help=True)
if importlib.util.find_spec("truenas_sim") is not None:  # the simulator is its own distribution (sim/)
    app.add_typer(sim_app, name="sim")
app.add_typer(state_app, name="state")


class Options:
    debug = False
    verbose = 0
    quiet = False
    config: Path | None = None


OPTS = Options()


def _version(value: bool) -> None:
    if value:
        print(f"netprov {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More output (repeat for more).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and data.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs (never secrets).")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (also: the NO_COLOR variable).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings file (TOML); default "
                                                   "~/.config/netprov/config.toml if it exists.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    OPTS.verbose, OPTS.quiet, OPTS.debug, OPTS.config = verbose, quiet, debug, config
    if no_color:
        console.set_no_color()
    if debug or verbose > 1:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
    elif _CONSOLE_LOG not in logging.getLogger("netprov").handlers:
        # netprov's own warnings as `warning: ...` lines (not Python's bare last-resort output)
        logging.getLogger("netprov").addHandler(_CONSOLE_LOG)


InventoryArg = Annotated[Path, typer.Argument(help="Inventory YAML file.", show_default=True)]
DEFAULT_INVENTORY = Path("inventory.yaml")


@app.command()
def validate(
    inventories: Annotated[Optional[list[Path]], typer.Argument(help="Inventory files (default: inventory.yaml).")] = None,
) -> None:
    """Check inventories: every problem at once, as file:line:col: field: message. Contacts nothing."""
    from netprov.cli.commands import validate as cmd
    raise typer.Exit(cmd.run(inventories or [DEFAULT_INVENTORY], quiet=OPTS.quiet))


@app.command()
def render(
    inventory: InventoryArg = DEFAULT_INVENTORY,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the files into.")] = Path("rendered"),
) -> None:
    """Render every PXE server's boot files into a local directory (offline)."""
    from netprov.cli.commands import render as cmd
    raise typer.Exit(cmd.run(inventory, out, quiet=OPTS.quiet))


@app.command()
def schema() -> None:
    """Print the inventory's JSON Schema (for yaml-language-server and editors)."""
    import json

    from netprov.core.inventory import inventory_json_schema
    print(json.dumps(inventory_json_schema(), indent=2, sort_keys=True))


def _register_more() -> None:
    """Commands defined in their own modules (plan, apply, demo, sim, state)."""
    from netprov.cli.commands import register
    register(app, sim_app, state_app, OPTS)


_register_more()


def _traceback() -> None:
    import traceback
    sys.stderr.write(console.mask(traceback.format_exc()))


class _ConsoleLog(logging.Handler):
    """netprov's log warnings as ``warning: ...`` lines while a command runs (attached by the global
    options, detached when ``main`` returns)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console.warning(record.getMessage().splitlines()[0] if record.getMessage() else record.name)
        except (ValueError, OSError):   # stderr already closed (a background thread at exit)
            pass


_CONSOLE_LOG = _ConsoleLog(level=logging.WARNING)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Python warnings (a library's, or an adapter's) as netprov's own one line, without a source path."""
    console.warning(str(message).splitlines()[0] if str(message) else category.__name__)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit codes."""
    import warnings
    shown = warnings.showwarning
    warnings.showwarning = _warning_line
    try:
        _main(argv)
    finally:
        warnings.showwarning = shown
        logging.getLogger("netprov").removeHandler(_CONSOLE_LOG)


def _main(argv: list[str] | None) -> None:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from netprov.errors import InventoryError, NetprovError
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="netprov")
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        console.error("aborted")
        code = ExitCode.INTERRUPTED
    except NoArgsIsHelpError as exc:
        exc.show(file=sys.stderr)
        code = ExitCode.OK
    except ClickException as exc:
        exc.show(file=sys.stderr)
        code = ExitCode.USAGE
    except InventoryError as exc:
        for p in exc.problems:
            console.problem(p)
        if OPTS.debug:
            _traceback()
        code = ExitCode.ERROR
    except NetprovError as exc:
        console.error(str(exc))
        if OPTS.debug:
            _traceback()
        code = ExitCode.ERROR
    except KeyboardInterrupt:
        console.error("interrupted")
        code = ExitCode.INTERRUPTED
    sys.exit(int(code or 0))
