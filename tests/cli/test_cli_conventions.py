"""CLI conventions a user expects: -h, global flags on either side of the subcommand, one-line errors for
bad settings (never a traceback, never the value), typo hints, and plain messages for odd files."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from netprov.cli import console
from netprov.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = str(ROOT / "inventory" / "minimal.yaml")
SECRETISH = "1-Zq8sEcReTlOoKiNgVaLuE"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    console.reset()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "NETPROV_TIMEOUT", "NETPROV_INSECURE", "NETPROV_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize("argv", [["-h"], ["plan", "-h"], ["sim", "truenas", "-h"], ["state", "pull", "-h"]])
def test_dash_h_is_help(capsys, argv) -> None:
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "Usage: netprov" in out


@pytest.mark.parametrize("flags", [["-v"], ["-vv"], ["-q"], ["--debug"], ["--no-color"], ["--verbose", "--quiet"]])
def test_global_flags_work_after_the_subcommand(capsys, flags) -> None:
    before = run([*flags, "plan", "--offline", MINIMAL], capsys)
    after = run(["plan", "--offline", MINIMAL, *flags], capsys)
    middle = run(["plan", *flags, "--offline", MINIMAL], capsys)
    assert before[0] == after[0] == middle[0] == 0, after[2]
    assert before[1] == after[1] == middle[1]


def test_no_color_means_no_escape_codes(capsys, monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    code, out, err = run(["validate", str(ROOT / "tests/inventories/bad/unknown_key.yaml"), "--no-color"], capsys)
    assert code == 1 and "\x1b[" not in err


@pytest.mark.parametrize("var, value", [("NETPROV_TIMEOUT", "abc"), ("NETPROV_INSECURE", "maybe"),
                                        ("NETPROV_TIMEOUT", SECRETISH), ("NETPROV_PARALLEL", SECRETISH)])
def test_a_bad_environment_value_is_one_line_naming_the_variable(capsys, monkeypatch, var, value) -> None:
    monkeypatch.setenv(var, value)
    code, out, err = run(["plan", "--offline", MINIMAL], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: environment variable {var}: "), err
    assert "Traceback" not in err and value not in err and out == ""


@pytest.mark.parametrize("text, where", [
    ('timeout = "abc"\n', ":1: timeout: "),
    (f'parallel = 8\ntimeout = "{SECRETISH}"\n', ":2: timeout: "),
    ("timeout = \n", ":1: not valid TOML"),
    (f'api_key = "{SECRETISH}\n', ":1: not valid TOML"),
    ("[broken\n", ":1: not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_file_and_line(capsys, tmp_path, text, where) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    code, out, err = run(["--config", str(cfg), "plan", "--offline", MINIMAL], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: {cfg}{where}"), err
    assert "Traceback" not in err and SECRETISH not in err


def test_a_typo_in_the_config_file_is_warned_with_the_right_key(capsys, tmp_path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'parallel = 4\ntimout = 5\nsecret_thing = "{SECRETISH}"\n')
    code, out, err = run(["--config", str(cfg), "plan", "--offline", MINIMAL], capsys)
    assert code == 0, err
    assert f"warning: {cfg}:2: unknown setting `timout`, ignored (did you mean `timeout`?)" in err
    assert f"{cfg}:3: unknown setting `secret_thing`" in err
    assert SECRETISH not in err + out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_insecure_is_netprovs_own_one_line_warning(tmp_path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text((ROOT / "inventory/minimal.yaml").read_text().replace(
        "wss://nas.lan/api/current", f"wss://127.0.0.1:{_closed_port()}/api/current"))
    assert f"wss://127.0.0.1:" in inv.read_text()
    proc = subprocess.run([sys.executable, "-m", "netprov", "plan", "--insecure", str(inv)], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1", "NAS_API_KEY": "1-x",
                               "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    warnings = [line for line in proc.stderr.splitlines() if "insecure" in line.lower()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), proc.stderr
    assert "UserWarning" not in proc.stderr and ".py:" not in proc.stderr, proc.stderr


def test_an_unknown_key_suggests_the_closest_known_one(capsys) -> None:
    code, out, err = run(["validate", str(ROOT / "tests/inventories/bad/unknown_key.yaml")], capsys)
    assert code == 1
    assert "machines.beta.mca: unknown key (did you mean `mac`?)" in err


def test_an_unknown_key_far_from_any_lists_the_known_ones(capsys, tmp_path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text((ROOT / "inventory/minimal.yaml").read_text().replace("    mac:", "    zzzzzz: 1\n    mac:"))
    code, out, err = run(["validate", str(inv)], capsys)
    assert code == 1
    assert "zzzzzz: unknown key (known here: arch, boot, chap, description, disk," in err


def test_a_binary_file_is_not_utf8_text(capsys, tmp_path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_bytes(b"version: 1\n\xf5\x00\x01")
    code, out, err = run(["validate", str(inv)], capsys)
    assert code == 1
    assert f"{inv}:2:1: not UTF-8 text (byte 0xf5 at offset 11)" in err
    assert "codec" not in err


def test_a_missing_secret_file_says_it_does_not_exist(capsys, tmp_path) -> None:
    inv = tmp_path / "inv.yaml"
    missing = tmp_path / "no-such-secret"
    inv.write_text((ROOT / "inventory/noorquacker.yaml").read_text().replace(
        "chap: {secret_env: ISRAFEL_CHAP_SECRET}", f"chap: {{secret_file: {missing}}}"))
    code, out, err = run(["validate", str(inv)], capsys)
    assert code == 0, err
    assert f"CHAP secret not available (file {missing} does not exist or cannot be read)" in err
    assert "is not set" not in err
