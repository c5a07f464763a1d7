"""One module per command; each exposes ``run(...) -> exit code`` over plain values. ``shared`` holds what
several use (option types, starting a session from the settings, showing a plan); the use cases
themselves are in netprov.engine.session."""

import importlib


def register(app, sim_app, state_app, opts) -> None:
    """Attach the commands that live in their own modules."""
    for name, target in (("plan_apply", app), ("demo", app), ("trust", app), ("status", app), ("sim", sim_app),
                         ("state", state_app)):
        try:
            module = importlib.import_module(f"netprov.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"netprov.cli.commands.{name}":
                raise
            continue
        module.register(target, app, opts) if name == "sim" else module.register(target, opts)
