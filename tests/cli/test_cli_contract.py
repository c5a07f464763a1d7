"""The CLI contract: exit codes, stdout/stderr split, JSON shape, masked secrets, CI annotations.

Runs the real entry point (``netprov.cli.app.main``) in-process, so the error-to-exit-code
mapping under test is the one users get.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netprov import __version__
from netprov.cli import console
from netprov.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Sup3r-s3cret-X"  # 14 characters: a valid CHAP secret


def run(argv: list[str], capsys, monkeypatch=None) -> tuple[int, str, str]:
    console.reset()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "ISRAFEL_CHAP_SECRET", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


def test_version(capsys) -> None:
    code, out, err = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"netprov {__version__}"


def test_validate_ok_is_quiet_on_stdout(capsys) -> None:
    code, out, err = run(["validate", str(ROOT / "inventory/minimal.yaml")], capsys)
    assert code == 0
    assert out == ""
    assert "ok (1 machine" in err


def test_validate_all_examples(capsys) -> None:
    code, out, err = run(["validate", *map(str, sorted((ROOT / "inventory").glob("*.yaml")))], capsys)
    assert code == 0, err


def test_validate_bad_exit_1_one_line_per_problem_no_traceback(capsys) -> None:
    bad = ROOT / "tests/inventories/bad/unknown_key.yaml"
    code, out, err = run(["validate", str(bad)], capsys)
    assert code == 1
    assert out == ""
    assert f"{bad}:28:5: machines.beta.mca: unknown key" in err
    assert "Traceback" not in err


def test_github_actions_annotations(capsys, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    bad = ROOT / "tests/inventories/bad/duplicate_mac.yaml"
    code, out, err = run(["validate", str(bad)], capsys)
    assert code == 1
    assert f"::error file={bad},line=27,col=10::machines.beta.mac: MAC 52:54:00:00:00:01 is also used by" in err
    assert out == ""


def test_usage_error_is_64_not_2(capsys) -> None:
    code, out, err = run(["plan", "--no-such-flag"], capsys)
    assert code == 64
    assert "No such option" in err


def test_missing_inventory_is_a_clear_error(capsys, tmp_path) -> None:
    code, out, err = run(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 1 and "nope.yaml: no such file" in err


def test_schema_is_json(capsys) -> None:
    code, out, err = run(["schema"], capsys)
    schema = json.loads(out)
    assert code == 0 and "machines" in schema["properties"]


def test_offline_plan_json_shape_and_masked_secret(capsys, monkeypatch) -> None:
    monkeypatch.setenv("ISRAFEL_CHAP_SECRET", SECRET)
    code, out, err = run(["plan", "--offline", "--json", str(ROOT / "inventory/noorquacker.yaml")], capsys)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["format_version"] == "1.2"
    assert set(plan) >= {"changes", "summary", "fingerprints", "options"}
    kinds = {c["kind"] for c in plan["changes"]}
    assert {"zvol", "extent", "target", "targetextent", "file"} <= kinds
    assert SECRET not in out and SECRET not in err
    assert "********" in out


def test_detailed_exitcode(capsys, monkeypatch) -> None:
    monkeypatch.setenv("ISRAFEL_CHAP_SECRET", SECRET)
    code, out, err = run(["plan", "--offline", "--detailed-exitcode", str(ROOT / "inventory/noorquacker.yaml")],
                         capsys)
    assert code == 2, err
    assert "Plan:" in out


def test_offline_plan_without_secrets_still_plans(capsys) -> None:
    """CI dry-runs have no secrets: a warning, not a failure."""
    code, out, err = run(["plan", "--offline", str(ROOT / "inventory/noorquacker.yaml")], capsys)
    assert code == 0, err
    assert "CHAP secret not available" in err


def test_step_summary_markdown(capsys, monkeypatch, tmp_path) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("ISRAFEL_CHAP_SECRET", SECRET)
    code, out, err = run(["plan", "--offline", str(ROOT / "inventory/noorquacker.yaml")], capsys)
    assert code == 0, err
    text = summary.read_text()
    assert text.startswith("## netprov plan") and "| `+` | `zvol[tank/netboot/israfel]` |" in text
    assert SECRET not in text


def test_apply_refuses_unattended_without_auto_approve(capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    code, out, err = run(["apply", str(ROOT / "inventory/minimal.yaml")], capsys)
    assert code == 1
    assert "--auto-approve" in err


def test_render_writes_tree_and_lists_files(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISRAFEL_CHAP_SECRET", SECRET)
    code, out, err = run(["render", str(ROOT / "inventory/noorquacker.yaml"), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    script = tmp_path / "pihole/srv/tftp/52-54-00-12-34-56.ipxe"
    # 0640 (group dnsmasq) on the PXE server; on this machine, a file holding a secret is only yours.
    assert script.exists() and (script.stat().st_mode & 0o777) == 0o600
    assert "pihole\tconfig\t/etc/dnsmasq.d/netprov.conf" in out
    assert SECRET not in out + err


def test_debug_shows_traceback_only_when_asked(capsys, tmp_path) -> None:
    code, out, err = run(["plan", "--offline", "--state", str(tmp_path / "nope.json"),
                          str(ROOT / "inventory/minimal.yaml")], capsys)
    assert code == 1 and "Traceback" not in err and "cannot read state file" in err
    code, out, err = run(["--debug", "plan", "--offline", "--state", str(tmp_path / "nope.json"),
                          str(ROOT / "inventory/minimal.yaml")], capsys)
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize("secret,why", [("short", "12-16 characters (it has 5)"),
                                        ("way-too-long-secret-x", "12-16 characters (it has 21)"),
                                        ("has#hash-12345", "must not contain '#'")])
def test_bad_chap_secret_is_an_error_that_never_shows_the_secret(capsys, monkeypatch, secret, why) -> None:
    monkeypatch.setenv("ISRAFEL_CHAP_SECRET", secret)
    code, out, err = run(["validate", str(ROOT / "inventory/noorquacker.yaml")], capsys)
    assert code == 1
    assert "machines.israfel.chap: CHAP secret must" in err and why in err
    assert "environment variable ISRAFEL_CHAP_SECRET" in err
    assert secret not in out + err


def test_chap_secret_from_a_file(capsys, tmp_path) -> None:
    secret_file = tmp_path / "israfel.secret"
    secret_file.write_text("File-s3cret-01\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text((ROOT / "inventory/noorquacker.yaml").read_text().replace(
        "chap: {secret_env: ISRAFEL_CHAP_SECRET}", f"chap: {{secret_file: {secret_file}}}"))
    code, out, err = run(["render", str(inv), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "File-s3cret-01" in (tmp_path / "out/pihole/srv/tftp/52-54-00-12-34-56.ipxe").read_text()
    assert "File-s3cret-01" not in out + err
