"""The pinned-certificate file of `netprov trust` (netprov.adapters.known_nas): its format and its writes."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from netprov.adapters.known_nas import format_fingerprint, host_port, parse_fingerprint, read_pins, write_pin
from netprov.errors import NetprovError

DIGEST = hashlib.sha256(b"a certificate").digest()
OTHER = hashlib.sha256(b"another certificate").digest()


@pytest.mark.parametrize("text", [
    format_fingerprint(DIGEST),
    format_fingerprint(DIGEST).lower(),
    "sha256 Fingerprint=" + format_fingerprint(DIGEST).removeprefix("SHA256:"),   # openssl 3
    "SHA256 Fingerprint=" + format_fingerprint(DIGEST).removeprefix("SHA256:"),   # openssl 1.1
    DIGEST.hex(),
    "SHA256:" + base64.b64encode(DIGEST).decode().rstrip("="),                    # SSH's form
])
def test_a_fingerprint_is_read_in_the_forms_users_paste(text: str) -> None:
    assert parse_fingerprint(text) == DIGEST


@pytest.mark.parametrize("text", ["", "SHA256:AB:CD", "md5:" + DIGEST.hex(), DIGEST.hex()[:-2] + "zz"])
def test_not_a_fingerprint_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        parse_fingerprint(text)


@pytest.mark.parametrize("url,key", [
    ("wss://NAS.lan/api/current", "nas.lan:443"),
    ("wss://nas.lan:8443/websocket", "nas.lan:8443"),
    ("https://192.168.1.10", "192.168.1.10:443"),
    ("nas.lan", "nas.lan:443"),
    ("wss://[fd00::10]:444/api/current", "[fd00::10]:444"),
])
def test_a_nas_is_pinned_under_host_and_port(url: str, key: str) -> None:
    assert host_port(url) == key


def test_pinning_replaces_that_nas_line_keeps_the_others_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "known_nas"
    write_pin(path, "a.lan:443", DIGEST, "CN=a # not a second comment")
    write_pin(path, "b.lan:443", DIGEST)
    write_pin(path, "a.lan:443", OTHER, "CN=a, renewed")
    pins = read_pins(path)
    assert {k: p.sha256 for k, p in pins.items()} == {"a.lan:443": OTHER, "b.lan:443": DIGEST}
    assert pins["a.lan:443"].comment == "CN=a, renewed"
    assert path.read_text().count("a.lan:443") == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["known_nas"]  # no temporary file left


def test_a_missing_file_has_no_pins_and_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "known_nas"
    assert read_pins(path) == {}
    path.write_text("# comment\n\nnas.lan:443 SHA256:AB:CD\n")
    with pytest.raises(NetprovError, match=r"known_nas:3: 'SHA256:AB:CD' is not a SHA-256 fingerprint"):
        read_pins(path)
    path.write_text("nas.lan:443\n")
    with pytest.raises(NetprovError, match=r"known_nas:1: expected 'HOST:PORT SHA256:\.\.\.'"):
        read_pins(path)
