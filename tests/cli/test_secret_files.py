"""A file holding a secret that other users can open gets a warning, the same for every kind:
the NAS API key (``api_key_file``) and a CHAP secret (``secret_file``). One check, one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from netprov.cli import console
from netprov.cli.app import main

CHAP = "Zq9-file-secret"


def _inventory(tmp_path: Path, secret_file: Path) -> Path:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"""\
version: 1
storage:
  nas: {{url: wss://nas.lan/api/current, api_key_file: {tmp_path}/api-key, parent: tank/netboot,
        portal: 192.168.1.10}}
pxe_servers:
  pxe: {{ssh: {{host: pxe.lan}}, interface: eth0, address: 192.168.1.5, subnet: 192.168.1.0/24}}
machines:
  node1: {{mac: '52:54:00:00:00:01', disk: {{size: 8G}}, chap: {{secret_file: {secret_file}}}}}
""")
    return inv


def _validate(inv: Path, capsys) -> str:
    console.reset()
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(inv)])
    assert exc.value.code == 0
    return capsys.readouterr().err


@pytest.mark.parametrize("mode,who", [(0o644, "other users"), (0o640, "its group"), (0o604, "other users")])
def test_a_chap_secret_file_others_can_open_is_warned_about(tmp_path, capsys, monkeypatch, mode, who) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    secret = tmp_path / "node1.secret"
    secret.write_text(CHAP + "\n")
    secret.chmod(mode)
    err = _validate(_inventory(tmp_path, secret), capsys)
    expected = f"{secret} is open to {who} (mode {mode:04o}); chmod 600 it"
    assert f"warning: machines.node1.chap.secret_file: {expected}" in err, err
    assert CHAP not in err


def test_a_private_chap_secret_file_is_not_warned_about(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    secret = tmp_path / "node1.secret"
    secret.write_text(CHAP + "\n")
    secret.chmod(0o600)
    err = _validate(_inventory(tmp_path, secret), capsys)
    assert "warning" not in err and "ok (1 machine" in err


def test_the_api_key_file_gets_the_same_check_and_message(tmp_path, capsys, monkeypatch) -> None:
    from netprov.cli.commands.common import start
    from netprov.cli.app import OPTS
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("NETPROV_API_KEY", raising=False)
    secret = tmp_path / "node1.secret"
    secret.write_text(CHAP + "\n")
    secret.chmod(0o600)
    key = tmp_path / "api-key"
    key.write_text("1-Zq9-api-key-in-a-file\n")
    key.chmod(0o644)
    console.reset()
    session, options, _ = start(_inventory(tmp_path, secret), OPTS)
    creds = session.credentials("nas", options)
    assert creds.api_key.get_secret_value() == "1-Zq9-api-key-in-a-file"
    err = capsys.readouterr().err
    assert err.strip() == f"warning: {key} is open to other users (mode 0644); chmod 600 it"
