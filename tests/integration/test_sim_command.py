"""`netprov sim truenas` as a user runs it: prints where it listens, serves, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

from netprov.adapters.truenas.rpc import Credentials, TrueNASClient


def test_sim_command_serves_until_stopped(tmp_path) -> None:
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "netprov", "sim", "truenas", "--listen", "127.0.0.1:0",
                             "--api-key", "1-simkeysimkey", "--state", str(state), "--profile", "13"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on ws://127.0.0.1:" in line and "/websocket" in line, line + proc.stderr.read()
        url = line.split("listening on ", 1)[1].split()[0]
        with TrueNASClient.connect(url, Credentials(api_key="1-simkeysimkey")) as c:
            assert c.protocol == "legacy" and "13" in c.version
            c.call("pool.dataset.create", {"name": "tank/nb", "type": "FILESYSTEM"})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert "tank/nb" in state.read_text()
