"""`netprov demo`: the whole cycle on any machine, no NAS and no PXE server needed.

Starts the built-in TrueNAS simulator on loopback and uses a local directory as the
PXE server (the same push logic as over SSH, run by a local shell), then runs
validate -> plan -> apply -> plan on inventory/example.yaml exactly as a user would
see it, and says where the files are.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from netprov.cli import console
from netprov.cli.exit_codes import ExitCode
from netprov.errors import NetprovError

DEMO_CHAP_SECRET_ENV = "NETPROV_DEMO_CHAP_SECRET"
DEMO_API_KEY_ENV = "NETPROV_DEMO_API_KEY"
DEMO_PASSWORD_ENV = "NETPROV_DEMO_PASSWORD"   # FreeNAS 11.3 has no API keys: the demo logs in as root


def find_example() -> Path:
    """The demo's inventory, shipped inside the package (netprov/examples/example.yaml, the same file as
    inventory/example.yaml in a checkout): the demo runs wherever netprov is installed."""
    from importlib.resources import files
    example = Path(str(files("netprov") / "examples" / "example.yaml"))
    if not example.is_file():
        raise NetprovError(f"the demo's inventory {example} is missing from this installation: reinstall netprov, "
                           "or pass --inventory")
    return example


CHAP_SECRET_FILE = "chap-secret"


def _keep_secret_file(data: dict, workdir: Path) -> None:
    """The demo's CHAP secret goes in a private file beside the NAS's saved state, and the demo inventory
    reads it from there (not from $NETPROV_DEMO_CHAP_SECRET): a plan after the demo, against the restarted
    simulator, has the same secret the NAS holds."""
    from netprov.adapters.local import write_atomic
    secret = os.environ.get(DEMO_CHAP_SECRET_ENV) or "demo-" + secrets.token_hex(4)   # 13 characters
    path = workdir / CHAP_SECRET_FILE
    write_atomic(path, (secret + "\n").encode())
    console.add_secrets(secret)
    chaps = [m.get("chap") for m in (data.get("machines") or {}).values() if isinstance(m, dict)]
    chaps.append((data.get("defaults") or {}).get("chap"))
    for chap in chaps:
        if isinstance(chap, dict) and chap.get("secret_env") == DEMO_CHAP_SECRET_ENV:
            del chap["secret_env"]
            chap["secret_file"] = str(path)


def prepare(example: Path, workdir: Path, sim_url: str, *, password_login: bool = False) -> Path:
    """Copy the example inventory into ``workdir``, pointed at the simulator and local roots (with
    ``password_login``, the storage logs in as root with $NETPROV_DEMO_PASSWORD instead of an API key)."""
    from netprov.core import yamltree
    import yaml
    data = yamltree.plain(yamltree.load(example.read_text()))  # YAML 1.2: a MAC stays a string
    for st in data.get("storage", {}).values():
        st["url"] = sim_url
        if password_login:
            for k in ("api_key_env", "api_key_file"):
                st.pop(k, None)
            st["username"] = "root"
            st["password_env"] = DEMO_PASSWORD_ENV
    _keep_secret_file(data, workdir)
    source = "/usr/lib/ipxe"
    if not Path(source, "undionly.kpxe").exists():
        # No Debian ipxe package here: stand-in binaries, clearly labelled, so the copy step still runs.
        fake = workdir / "ipxe-binaries"
        fake.mkdir(parents=True, exist_ok=True)
        for name in ("undionly.kpxe", "snponly.efi", "ipxe.efi", "snponly-arm64.efi"):
            (fake / name).write_bytes(b"netprov demo stand-in for an iPXE binary (install Debian's ipxe)\n")
        source = str(fake)
    has_dnsmasq = shutil.which("dnsmasq") is not None
    for server in data.get("pxe_servers", {}).values():
        root = workdir / "pxe-server"
        server["tftp_root"] = str(root / "srv/tftp")
        server["dnsmasq_dir"] = str(root / "etc/dnsmasq.d")
        server["hosts_dir"] = str(root / "etc/netprov/dnsmasq-hosts")
        server.setdefault("ipxe", {})["source"] = source
        # The real dnsmasq validates the config when it is installed; nothing is (re)started in the demo.
        server["test_command"] = "dnsmasq --test --conf-file={conf}" if has_dnsmasq else "true"
        server["reload_command"] = "true"
        server["restart_command"] = "true"
        # netprov runs on "the PXE server" itself here: no SSH, commands run by the local shell.
        server.pop("ssh", None)
        server["transport"] = "local"
        server["sudo"] = False
        server["lock_path"] = str(workdir / "netprov.lock")
    out = workdir / "inventory.yaml"
    header = (f"# netprov demo: {example} pointed at the simulator ({sim_url}) and a local PXE directory.\n")
    out.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return out


def _create_parents(inventory: Path, url: str, creds) -> None:
    """Create each storage's parent dataset on the fresh simulated NAS, as a user does once in the
    TrueNAS UI (netprov never creates datasets above its zvols)."""
    from netprov.adapters.truenas.rpc import TrueNASClient
    from netprov.core.inventory_load import parse_inventory
    loaded = parse_inventory(inventory.read_text(), str(inventory))
    with TrueNASClient.connect(url, creds) as client:
        for st in loaded.inventory.storage.values():
            if not client.query("pool.dataset", filters=[["id", "=", st.parent]]):
                client.call("pool.dataset.create", {"name": st.parent, "type": "FILESYSTEM"})
                console.info(f"(demo NAS: created dataset {st.parent}, as you would once in the TrueNAS UI)")


#: the one line `netprov demo` prints when the simulator is not installed (it is not in the netprov wheel)
SIM_MISSING = ("netprov demo needs the TrueNAS simulator, which is not installed: from a netprov checkout run "
               "`make demo`, or `pip install ./sim` into this environment")


def run(opts, *, inventory: Path | None, workdir: Path | None, profile: str) -> int:
    from netprov.cli.commands import common, plan_apply, validate
    try:
        from truenas_sim import Simulator   # its own distribution (sim/ in the repository)
    except ModuleNotFoundError as exc:
        if exc.name != "truenas_sim":
            raise
        console.error(SIM_MISSING)
        return ExitCode.ERROR

    example = inventory or find_example()
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="netprov-demo-"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    old_root = workdir / "pxe-server"
    if (old_root / "srv" / "tftp" / ".netprov-owned").exists():
        # An earlier demo's PXE directory: the simulated NAS starts empty, so does the PXE server.
        shutil.rmtree(old_root)
    api_key = f"1-{secrets.token_hex(24)}"
    os.environ[DEMO_API_KEY_ENV] = api_key

    from netprov.adapters.truenas.rpc import Credentials
    password = secrets.token_hex(12)
    os.environ[DEMO_PASSWORD_ENV] = password
    with Simulator(profile=profile, api_key=api_key, users={"root": password}) as sim:
        console.info(f"TrueNAS simulator (profile {sim.profile.name}: {sim.profile.version_string}) on {sim.url}")
        # FreeNAS 11.3 has no API keys (auth.login_with_api_key arrived in 12): username and password there
        password_login = not sim.nas.has_method("auth.login_with_api_key")
        demo_inv = prepare(example, workdir, sim.url, password_login=password_login)
        console.info(f"demo inventory: {demo_inv}  (from {example})")
        _create_parents(demo_inv, sim.url, Credentials(username="root", password=password) if password_login
                        else Credentials(api_key=api_key))

        console.rule("1. netprov validate")
        if validate.run([demo_inv], quiet=opts.quiet) != 0:
            return ExitCode.ERROR

        session, options, _ = common.start(demo_inv, opts)
        policy = session.policy()
        console.rule("2. netprov plan")
        with session.connect(options) as world:
            first = session.plan(world, policy)
        common.show_plan(first.plan, as_json=False)

        console.rule("3. netprov apply --auto-approve")
        code = plan_apply.run_apply(demo_inv, opts, auto_approve=True, target=None, allow_destroy=False,
                                    adopt=False, flags={})
        if code != 0:
            return code

        console.rule("4. netprov plan (again: nothing left to do)")
        with session.connect(options) as world:
            second = session.plan(world, policy)
        common.show_plan(second.plan, as_json=False)
        state_file = workdir / "truenas-state.json"
        sim.save_state(str(state_file))
        listen = f"127.0.0.1:{sim.port}"

    root = workdir / "pxe-server"
    console.info("")
    console.info(f"The PXE server's files are under {root}:")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        console.info(f"  {path.relative_to(root)}")
    console.info(f"The simulated NAS's state: {state_file}")
    if password_login:
        console.info(f"({profile} has no API keys: the demo logged in as root with a one-time password)")
    else:
        console.info("To keep exploring, run the simulator again with this state, edit the inventory, and plan:")
        for line in next_steps(listen=listen, profile=profile, state_file=state_file, inventory=demo_inv):
            console.info(f"  {line}")
    console.info(f"(the demo inventory reads its CHAP secret from {workdir / CHAP_SECRET_FILE}, kept with the "
                 f"NAS's state; set ${DEMO_CHAP_SECRET_ENV} before the demo to choose it)")
    return ExitCode.OK if not second.plan.has_changes else ExitCode.ERROR


def next_steps(*, listen: str, profile: str, state_file: Path, inventory: Path) -> list[str]:
    """The commands the demo ends with, to be typed as they are in a new shell: activate the venv
    netprov runs from when its `netprov` is not on PATH, restart the simulator, plan."""
    import sys
    lines = []
    here = Path(sys.prefix) / "bin"
    on_path = shutil.which("netprov")
    if sys.prefix != sys.base_prefix and (here / "activate").exists() and (
            on_path is None or Path(on_path).parent.resolve() != here.resolve()):
        lines.append(f"source {here / 'activate'}")
    lines.append(f"netprov sim truenas --listen {listen} --profile {profile} --state {state_file} "
                 "--api-key 1-demo &")
    lines.append(f"{DEMO_API_KEY_ENV}=1-demo netprov plan {inventory}")
    return lines


def register(app, opts) -> None:
    @app.command()
    def demo(
        inventory: Annotated[Optional[Path], typer.Option(help="Inventory to demo (default: the example shipped with netprov, inventory/example.yaml in a checkout).")] = None,
        workdir: Annotated[Optional[Path], typer.Option(help="Where the demo's PXE directory and state go "
                                                        "(default: a new temporary directory).")] = None,
        profile: Annotated[str, typer.Option(help="TrueNAS version the simulator behaves as.")] = "25.04",
    ) -> None:
        """Run validate -> plan -> apply -> plan against the built-in TrueNAS simulator and a local directory."""
        raise typer.Exit(run(opts, inventory=inventory, workdir=workdir, profile=profile))
