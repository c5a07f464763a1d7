"""netprov installed as a user installs it: a wheel built with `python -m build`, in a fresh venv, run
from a directory that is not the checkout. The TrueNAS simulator is not in that wheel: `netprov demo` needs
its own wheel (sim/), installed next to it.

The wheel is built once (from a copy of the checkout's files, the way a clone holds them) without
build isolation, so no network is needed. It is installed with `--no-deps` into a venv of its own;
the dependencies are the test venv's, seen through a path line (not a site dir: the checkout's
editable install is not activated), so the `netprov` that runs is the wheel's and nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's files, the way a clone holds them."""
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("the `build` package is missing from the test venv: pip install -e '.[test]'")
    src = tmp_path_factory.mktemp("checkout")
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    assert files.returncode == 0, files.stderr
    for name in filter(None, files.stdout.split("\0")):
        source, dest = ROOT / name, src / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet in git
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            dest.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, dest)
    return src


@pytest.fixture(scope="module")
def wheel(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    src = checkout
    out = tmp_path_factory.mktemp("dist")
    proc = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                cwd=src, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("netprov-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sim_wheel(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's own wheel (sim/: the truenas-sim distribution)."""
    out = tmp_path_factory.mktemp("sim-dist")
    proc = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                 str(checkout / "sim")], cwd=checkout / "sim", timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("truenas_sim-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def ci_install_step() -> str:
    """The `Install netprov` step of the workflow docs/ci.md shows."""
    sys.path.insert(0, str(ROOT / "tests" / "docs"))
    try:
        from test_ci_workflow import workflow
    finally:
        sys.path.pop(0)
    runs = [step["run"] for job in workflow()["jobs"].values() for step in job["steps"]
            if "run" in step and step["run"].lstrip().startswith("pip install")]
    assert len(runs) == 1, runs
    return runs[0].strip()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh venv that netprov is installed into by docs/ci.md's own install step, run in an inventory
    repository holding the wheel where that step says."""
    home = tmp_path_factory.mktemp("user")
    venv = home / "venv"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=home)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"

    step = ci_install_step()
    requirement = shlex.split(step)[2:]
    assert len(requirement) == 1 and "://" not in requirement[0] and "@" not in requirement[0], \
        f"docs/ci.md installs {requirement}: a local wheel is the documented way (no tags are published)"
    repo = home / "inventory-repo"
    (repo / Path(requirement[0]).parent).mkdir(parents=True)
    shutil.copy2(wheel[0], repo / Path(requirement[0]).parent / wheel[0].name)
    shims = home / "shims"
    shims.mkdir()
    (shims / "pip").write_text(f"#!/bin/sh\nexec {sys.executable} -m pip --python {python} \"$@\" --no-deps "
                               "--no-index --no-compile --disable-pip-version-check --quiet\n")
    (shims / "pip").chmod(0o755)
    proc = _run(["bash", "-eo", "pipefail", "-c", step], cwd=repo,
                env={"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(home)})
    assert proc.returncode == 0, f"{step}\n{proc.stdout}{proc.stderr}"

    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=home).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_netprov_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    work = home / "somewhere-else"
    work.mkdir()
    return {"venv": venv, "bin": venv / "bin", "cwd": work, "home": home, "pip": shims / "pip"}


def _env(installed: dict[str, Path]) -> dict[str, str]:
    return {"PATH": f"{installed['bin']}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(installed["home"]),
            "LANG": "C.UTF-8", "NO_COLOR": "1"}


def test_wheel_holds_templates_and_the_demo_inventory(wheel) -> None:
    with zipfile.ZipFile(wheel[0]) as zf:
        names = set(zf.namelist())
        example = zf.read("netprov/examples/example.yaml")
    for tpl in (ROOT / "netprov" / "templates").iterdir():
        assert f"netprov/templates/{tpl.name}" in names
    assert not any(n.startswith(("truenas_sim/", "netprov/sim/", "sim/")) for n in names), \
        "the simulator is its own distribution (sim/), not in the netprov wheel"
    assert example == (ROOT / "inventory" / "example.yaml").read_bytes()
    assert not any(n.startswith(("tests/", "inventory/", "docs/")) for n in names)


def test_wheel_metadata_builds_without_deprecation_warnings(wheel) -> None:
    log = wheel[1]
    assert "SetuptoolsDeprecationWarning" not in log and "project.license" not in log, log[-3000:]
    with zipfile.ZipFile(wheel[0]) as zf:
        meta = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    assert re.search(r"^License-Expression: MIT$", meta, re.M), meta[:1000]


def test_installed_wheel_runs_version_demo_validate_from_outside_the_checkout(installed, sim_wheel) -> None:
    env, cwd, bindir = _env(installed), installed["cwd"], installed["bin"]
    where = _run([str(bindir / "python"), "-c", "import netprov, sys; print(netprov.__file__)"], cwd=cwd, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed["venv"]), where.stdout

    from netprov import __version__
    version = _run([str(bindir / "netprov"), "--version"], cwd=cwd, env=env)
    assert (version.returncode, version.stdout.strip()) == (0, f"netprov {__version__}"), version.stderr

    # the wheel alone: no simulator, so no `netprov sim`, and `netprov demo` says how to get it
    from netprov.cli.commands.demo import SIM_MISSING
    assert _run([str(bindir / "python"), "-c", "import truenas_sim"], cwd=cwd, env=env).returncode != 0
    sim = _run([str(bindir / "netprov"), "sim", "truenas", "--help"], cwd=cwd, env=env)
    assert sim.returncode != 0 and "No such command 'sim'" in sim.stdout + sim.stderr, sim.stdout + sim.stderr
    demo = _run([str(bindir / "netprov"), "demo", "--workdir", str(cwd / "demo")], cwd=cwd, env=env, timeout=120)
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert demo.stderr.strip().splitlines() == [f"error: {SIM_MISSING}"], demo.stderr

    # with the simulator's own wheel installed next to it, the demo runs
    pip = _run([str(installed["pip"]), "install", str(sim_wheel)], cwd=cwd, env=env)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    demo = _run([str(bindir / "netprov"), "demo", "--workdir", str(cwd / "demo")], cwd=cwd, env=env, timeout=120)
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out[-4000:]
    assert "No changes. The world matches the inventory." in out
    assert (cwd / "demo" / "pxe-server" / "srv" / "tftp" / "boot.ipxe").is_file()

    inventory = cwd / "inventory.yaml"
    inventory.write_text((ROOT / "inventory" / "minimal.yaml").read_text())
    validate = _run([str(bindir / "netprov"), "validate"], cwd=cwd, env=env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "inventory.yaml: ok (" in validate.stderr

    schema = _run([str(bindir / "netprov"), "schema"], cwd=cwd, env=env)
    assert schema.returncode == 0 and schema.stdout == (ROOT / "docs/schema/inventory.schema.json").read_text()

    rendered = _run([str(bindir / "netprov"), "render", "--out", str(cwd / "rendered")], cwd=cwd, env=env)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert any((cwd / "rendered").rglob("*.ipxe")), "templates come from the installed package"
