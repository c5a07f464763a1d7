"""First contact with a fresh TrueNAS, whose certificate is self-signed (issue 13, item 2).

The TrueNAS simulator serves TLS with a self-signed certificate made here (``cryptography``), and
``netprov`` runs as a user runs it (real subprocesses): the first plan stops with a message naming
``--ca-file``, ``--insecure`` and ``netprov trust``; ``netprov trust`` shows the certificate's
fingerprint and pins it (unattended with ``--fingerprint``, or a typed ``yes`` on a terminal); the
plan then works; a swapped certificate is refused loudly before anything, let alone the API key,
reaches the impostor; ``--insecure`` still connects (with its warning).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netprov.adapters.known_nas import Pin, format_fingerprint, read_pins
from netprov.adapters.truenas.rpc import Credentials, TrueNASClient
from netprov.errors import TLSVerifyError
from truenas_sim import Simulator
from tests.support.cli_lab import inventory_text, netprov

MACHINES = {"m1": "52:54:00:13:00:01"}


def self_signed(directory: Path, name: str) -> tuple[str, str, bytes]:
    """A self-signed certificate as a fresh TrueNAS makes one: (cert.pem, key.pem, its SHA-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iXsystems"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=397))
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = directory / f"{name}.crt", directory / f"{name}.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(cert_pem), str(key_pem), hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


@pytest.fixture
def lab(tmp_path: Path):
    first = self_signed(tmp_path, "first")
    sim = Simulator(profile="25.04", tls=first[:2]).start()
    sims = [sim]
    with TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key),
                               pin=Pin("setup", first[2])) as c:
        c.call("pool.dataset.create", {"name": "tank/netboot", "type": "FILESYSTEM"})
    sim.reset_counters()
    inv = tmp_path / "inventory.yaml"
    inv.write_text(inventory_text(sim.url, tmp_path, machines=MACHINES))
    known = tmp_path / "conf" / "known_nas"
    env = {**os.environ, "NAS_KEY": sim.api_key, "NO_COLOR": "1", "HOME": str(tmp_path),
           "NETPROV_KNOWN_NAS": str(known)}
    try:
        yield sim, sims, first, inv, known, env, tmp_path
    finally:
        for s in sims:
            s.stop()


def _logins(sim: Simulator) -> int:
    return sum(n for m, n in sim.round_trips.items() if m.startswith("auth."))


def test_first_contact_trust_then_plan_then_a_swapped_certificate_is_refused(lab) -> None:
    sim, sims, first, inv, known, env, tmp = lab
    fp = format_fingerprint(first[2])

    # 1. The first plan: the self-signed certificate cannot be verified; the message names the real flags
    #    and the command, and nothing (no API key) was sent.
    out = netprov("plan", str(inv), env=env, cwd=tmp)
    assert out.returncode == 1, out.output
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "self-signed" in err and "--ca-file" in err and "--insecure" in err, err
    assert f"netprov trust nas {inv}" in err, err
    assert "ca_file" not in err.replace("--ca-file", ""), err
    assert _logins(sim) == 0 and sum(sim.round_trips.values()) == 0

    # 2. In a pipe without --yes or --fingerprint, nobody can confirm: refused, nothing pinned.
    out = netprov("trust", "nas", str(inv), env=env, cwd=tmp)
    assert out.returncode == 1, out.output
    assert fp in out.stdout and "--fingerprint" in out.stderr
    assert not known.exists()

    # 3. Unattended, with a fingerprint taken from elsewhere that does not match: refused, nothing pinned.
    wrong = format_fingerprint(hashlib.sha256(b"another certificate").digest())
    out = netprov("trust", "nas", str(inv), "--fingerprint", wrong, env=env, cwd=tmp)
    assert out.returncode == 1, out.output
    assert "does not match --fingerprint" in out.stderr and wrong in out.stderr and fp in out.stderr
    assert not known.exists()

    # 4. With the right fingerprint (as openssl prints it on the NAS's shell): shown and pinned, 0600.
    openssl_form = "sha256 Fingerprint=" + fp.removeprefix("SHA256:")
    out = netprov("trust", "nas", str(inv), "--fingerprint", openssl_form, env=env, cwd=tmp)
    assert out.returncode == 0, out.output
    assert f"SHA-256 fingerprint: {fp}" in out.stdout
    assert "CN=localhost,O=iXsystems" in out.stdout and "(self-signed)" in out.stdout and "valid:" in out.stdout
    host_port = f"127.0.0.1:{sim.port}"
    assert read_pins(known)[host_port].sha256 == first[2]
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert _logins(sim) == 0  # trust sends no credential

    # 5. Plans now verify against the pin.
    out = netprov("plan", "--detailed-exitcode", str(inv), env=env, cwd=tmp)
    assert out.returncode == 2, out.output
    assert "zvol" in out.stdout
    assert _logins(sim) == 1

    # 6. The certificate is swapped (same address, another key): refused loudly, with both fingerprints and
    #    how to re-trust; the impostor sees no API key - no call at all.
    second = self_signed(tmp, "second")
    port, state = sim.port, sim.dump_state()
    sim.stop()
    impostor = Simulator(profile="25.04", tls=second[:2], port=port, state=state, api_key=sim.api_key).start()
    sims.append(impostor)
    out = netprov("plan", str(inv), env=env, cwd=tmp)
    assert out.returncode == 1, out.output
    err = out.stderr.strip()
    assert "CHANGED" in err and fp in err and format_fingerprint(second[2]) in err, err
    assert "netprov trust nas" in err and "nothing was sent" in err, err
    assert sum(impostor.round_trips.values()) == 0

    # 7. --insecure still connects, with its warning.
    out = netprov("plan", "--insecure", "--detailed-exitcode", str(inv), env=env, cwd=tmp)
    assert out.returncode == 2, out.output
    assert "TLS verification of storage nas is OFF" in out.stderr
    assert _logins(impostor) == 1

    # 8. Re-trust after checking: trust shows the old pin beside the new certificate and replaces it.
    out = netprov("trust", "nas", str(inv), "--fingerprint", format_fingerprint(second[2]), env=env, cwd=tmp)
    assert out.returncode == 0, out.output
    assert "NOT the certificate pinned" in out.stderr and fp in out.stderr
    assert {k: p.sha256 for k, p in read_pins(known).items()} == {host_port: second[2]}
    out = netprov("plan", "--detailed-exitcode", str(inv), env=env, cwd=tmp)
    assert out.returncode == 2, out.output


def test_the_adapter_sends_nothing_to_a_peer_without_the_pinned_certificate(lab) -> None:
    sim, _, first, *_ = lab
    wrong = Pin(f"127.0.0.1:{sim.port}", hashlib.sha256(b"not this one").digest(), "CN=old")
    with pytest.raises(TLSVerifyError) as exc:
        TrueNASClient.connect(sim.url, Credentials(api_key=sim.api_key), pin=wrong, trust_command="netprov trust x")
    text = str(exc.value)
    assert "CHANGED" in text and format_fingerprint(first[2]) in text and "(CN=old)" in text
    assert sim.api_key not in text
    assert sum(sim.round_trips.values()) == 0


def test_an_interactive_yes_pins(lab) -> None:
    import pty

    sim, _, first, inv, known, env, tmp = lab
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "netprov", "trust", "nas", str(inv)], stdin=slave,
                            stdout=slave, stderr=slave, env={**env, "TERM": "dumb"}, cwd=tmp, close_fds=True)
    os.close(slave)
    seen, answered = b"", False
    for _ in range(400):  # bounded: at most ~60 s of 0.15 s waits
        ready, _, _ = select.select([master], [], [], 0.15)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"Type 'yes'" in seen:
                os.write(master, b"yes\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = seen.decode(errors="replace")
    assert answered and proc.returncode == 0, text
    assert format_fingerprint(first[2]) in text and "openssl x509 -noout -fingerprint -sha256" in text
    assert read_pins(known)[f"127.0.0.1:{sim.port}"].sha256 == first[2]
