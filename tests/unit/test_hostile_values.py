"""Hostile field values never add a line, a command or a directive to a boot file (issue 10, item 6).

Every field that reaches an iPXE script, a dnsmasq line or a NAS object name gets every value of a table of
hostile ones. A value is either refused by ``parse_inventory`` (or by the renderer) or, if accepted, rendered;
the output is then read the way iPXE and dnsmasq read it and compared with a clean render: the same lines,
the same commands, the same operators, the same directives. Accepted dnsmasq configs also pass the real
``dnsmasq --test``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from netprov.core import dnsmasq
from netprov.core.bootfiles import Kind
from netprov.core.inventory_load import parse_inventory
from netprov.core.boot_render import Renderer
from netprov.errors import InventoryError, TemplateError

SECRET = "Hostile-Test-77"
RENDERER = Renderer()  # compiled once: the templates are the same for every case

BASE: dict[str, Any] = {
    "version": 1,
    "storage": {"nas": {"url": "wss://nas.lan/api/current", "api_key_env": "NAS_API_KEY",
                        "parent": "tank/netboot", "portal": "10.0.0.10:3260", "target_prefix": "lab-",
                        "basename": "iqn.2005-10.org.freenas.ctl", "initiator_basename": "iqn.2010-04.org.ipxe"}},
    "pxe_servers": {"pxe": {
        "ssh": {"host": "pxe.lan", "user": "root", "identity_file": "/root/.ssh/id_ed25519",
                "known_hosts": "/root/.ssh/known_hosts"},
        "mode": "dhcp", "interface": "eth0", "address": "10.0.0.5", "subnet": "10.0.0.0/24",
        "range": {"start": "10.0.0.100", "end": "10.0.0.200", "lease_time": "12h"},
        "router": "10.0.0.1", "dns": ["10.0.0.1"], "domain": "lab.lan",
        "tftp_root": "/srv/tftp", "dnsmasq_dir": "/etc/dnsmasq.d", "hosts_dir": "/etc/netprov/hosts",
        "conf_name": "netprov.conf", "http": {"root": "/var/www/netprov", "base_url": "http://10.0.0.5/netprov"},
        "ipxe": {"bios": "undionly.kpxe", "uefi": "snponly.efi", "arm64": "snponly-arm64.efi",
                 "source": "/usr/lib/ipxe"},
        "test_command": "dnsmasq --test --conf-file={conf}", "reload_command": "systemctl reload dnsmasq",
        "restart_command": "systemctl restart dnsmasq", "secret_group": "dip", "lock_path": "/run/lock/np.lock",
    }},
    "defaults": {"storage": "nas", "pxe_server": "pxe", "disk": {"size": "32G", "sparse": True}},
    "machines": {
        "alpha": {"mac": "52:54:00:00:00:01", "ip": "10.0.0.50", "description": "first machine",
                  "initiator_iqn": "iqn.2010-04.org.ipxe:alpha",
                  "chap": {"username": "alpha-user", "secret_env": "ALPHA_SECRET"},
                  "disk": {"clone_from": "tank/golden/debian@v1"},
                  "extra": {"ipxe": ["echo extra line"], "kernel_args": "quiet"}},
        "beta": {"mac": "52:54:00:00:00:02", "arch": "arm64", "firmware": "uefi", "boot": "install",
                 "install": {"kernel": "http://10.0.0.5/linux", "initrd": ["http://10.0.0.5/initrd.gz"],
                             "cmdline": "console=ttyS0 BOOTIF=01-${net0/mac:hexhyp}"},
                 "chap": {"secret_file": "/etc/netprov/beta.secret"},
                 "extra": {"kernel_args": "quiet splash"}},
    },
}

#: Where a hostile value goes: a path of keys into BASE (an int indexes a list).
FIELDS: list[tuple] = [
    ("storage", "nas", "url"), ("storage", "nas", "api_key_env"), ("storage", "nas", "parent"),
    ("storage", "nas", "portal"), ("storage", "nas", "basename"), ("storage", "nas", "initiator_basename"),
    ("storage", "nas", "target_prefix"), ("storage", "nas", "ca_file"),
    ("pxe_servers", "pxe", "ssh", "host"), ("pxe_servers", "pxe", "ssh", "user"),
    ("pxe_servers", "pxe", "ssh", "identity_file"), ("pxe_servers", "pxe", "ssh", "known_hosts"),
    ("pxe_servers", "pxe", "interface"), ("pxe_servers", "pxe", "domain"), ("pxe_servers", "pxe", "tftp_root"),
    ("pxe_servers", "pxe", "dnsmasq_dir"), ("pxe_servers", "pxe", "hosts_dir"), ("pxe_servers", "pxe", "conf_name"),
    ("pxe_servers", "pxe", "range", "lease_time"), ("pxe_servers", "pxe", "http", "root"),
    ("pxe_servers", "pxe", "http", "base_url"), ("pxe_servers", "pxe", "ipxe", "bios"),
    ("pxe_servers", "pxe", "ipxe", "uefi"), ("pxe_servers", "pxe", "ipxe", "arm64"),
    ("pxe_servers", "pxe", "ipxe", "source"), ("pxe_servers", "pxe", "test_command"),
    ("pxe_servers", "pxe", "reload_command"), ("pxe_servers", "pxe", "restart_command"),
    ("pxe_servers", "pxe", "secret_group"), ("pxe_servers", "pxe", "lock_path"),
    ("machines", "alpha", "description"), ("machines", "alpha", "initiator_iqn"),
    ("machines", "alpha", "chap", "username"), ("machines", "alpha", "chap", "secret_env"),
    ("machines", "alpha", "disk", "clone_from"), ("machines", "alpha", "extra", "ipxe", 0),
    ("machines", "alpha", "extra", "kernel_args"), ("machines", "beta", "install", "kernel"),
    ("machines", "beta", "install", "initrd", 0), ("machines", "beta", "install", "cmdline"),
    ("machines", "beta", "extra", "kernel_args"), ("machines", "beta", "chap", "secret_file"),
    ("machines", "beta", "mac"),
    # names: the key of an entry
    ("machines", "<key>", "alpha"), ("pxe_servers", "<key>", "pxe"), ("storage", "<key>", "nas"),
]

#: The hostile values (more than the issue's 58 kinds): line breaks of every sort, iPXE and shell operators,
#: comments, expansions of the CHAP settings, option look-alikes, template syntax, odd Unicode, huge values.
HOSTILE: list[str] = [
    "a\nshell", "a\rshell", "a\r\nshell", "a\n", "\na", "a\n\n", "a\x00b", "a\x00", "a\u2028shell",
    "a\u2029shell", "a\x85shell", "a\x0bshell", "a\x0cshell", "a\x1b[2Jb", "a\x7f", "a\tb", "a\x08b",
    "x || shell", "x && shell", "x ; shell", "x;shell", "||", "&&", ";", "x ||", "|| shell",
    "x #comment", "#x", "x # c", "#!ipxe", "x\\", "\\", "x \\", ":label", ":failed", " :start",
    "${password}", "${username}", "${net0/password}", "${password:string}", "${pass${x}word}",
    "${reverse-password}", "${175.191}", "${PASSWORD}", "${", "a}${", "${}", "${net0/mac:hexhyp}", "$(id)", "`id`", "$HOME",
    " leading", "trailing ", "a b", "  ", "", "-x", "--replace", "--name=x",
    "a" * 300, "a" * 20000, "a b " * 2000,
    "../../etc/passwd", "/etc/shadow", "a/b", "a,b", "a=b", 'a"b', "a'b", "x\ndhcp-script=/tmp/x",
    "dhcp-range=evil", "%s%n", "{{ 7*7 }}", "{% raw %}", "é", "日本", "\ufeffa", "a\u200bb", "a\u00a0b",
    "\U0001F600", "tank/netboot\n", "evil\n",
]

IPXE_OPERATORS = ("||", "&&", ";")
_IPXE_SPACE = re.compile("[ \t\n\v\f\r]+")


def ipxe_skeleton(text: str) -> list[tuple]:
    """An iPXE script as iPXE's script.c/exec.c read it: one entry per line after CR stripping and
    backslash continuation; a label line gives ('label', name), a command line gives its command names
    and the operators between them (a word starting with '#' ends the line: a comment)."""
    out: list[tuple] = []
    pending = ""
    for raw in text.split("\n"):
        line = pending + (raw[:-1] if raw.endswith("\r") else raw)
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        stripped = line.lstrip(" \t\v\f\r")
        if stripped.startswith(":"):
            label, _, rest = stripped[1:].partition(" ")
            out.append(("label", label))
            stripped = rest
        commands, ops, current = [], [], []
        for word in _IPXE_SPACE.split(stripped):  # C isspace(): six ASCII characters, nothing Unicode
            if not word:
                continue
            if word.startswith("#"):
                break
            if word in IPXE_OPERATORS:
                commands.append(current[0] if current else None)
                ops.append(word)
                current = []
            else:
                current.append(word)
        commands.append(current[0] if current else None)
        out.append(("cmd", tuple(commands), tuple(ops)))
    return out


def dnsmasq_skeleton(text: str) -> list[tuple]:
    """dnsmasq config lines as dnsmasq reads them: directive name and comma count of each non-comment line."""
    out = []
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        key, _, value = s.partition("=")
        out.append((key, value.count(",")))
    return out


def _set(data: dict, path: tuple, value: str) -> dict:
    data = copy.deepcopy(data)
    if path[1] == "<key>":
        section, _, old = path
        data[section] = {(value if k == old else k): v for k, v in data[section].items()}
        if section != "machines":  # the references follow the renamed entry
            data["defaults"]["storage" if section == "storage" else "pxe_server"] = value
        return data
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def _render(data: dict):
    loaded = parse_inventory(json.dumps(data), "hostile.yaml")  # JSON is YAML: every escape is exact
    secrets = {m.name: SECRET for m in loaded.machines if m.chap}
    return {f"{f.root.value}/{f.path}": f for f in RENDERER.render(loaded, secrets)}


CLEAN = _render(BASE)


def _check_same_shape(files: dict, field: tuple, value: str) -> None:
    assert len(files) == len(CLEAN), (field, value, sorted(files))
    extra_line = field[-2:] == ("ipxe", 0)  # extra.ipxe is meant to carry a command: exactly its own line
    for key, f in files.items():
        if f.kind is Kind.BINARY:
            continue
        text = f.content.decode("utf-8")
        clean_key = key if key in CLEAN else next(k for k in CLEAN if CLEAN[k].kind is f.kind
                                                  and k.rsplit("/", 1)[0] == key.rsplit("/", 1)[0]
                                                  and k not in files)
        clean = CLEAN[clean_key].content.decode("utf-8")
        if f.kind is Kind.SCRIPT:
            got, want = ipxe_skeleton(text), ipxe_skeleton(clean)
            if extra_line and "extra line" in clean:
                assert len(got) == len(want), (field, value, key)
                assert [x for x in got if x[0] == "label"] == [x for x in want if x[0] == "label"], (field, value)
            else:
                assert got == want, (field, value, key, text)
        else:
            assert dnsmasq_skeleton(text) == dnsmasq_skeleton(clean), (field, value, key, text)


def _outcomes() -> list[tuple[tuple, str, dict | None]]:
    results = []
    for field in FIELDS:
        for value in HOSTILE:
            data = _set(BASE, field, value)
            try:
                files = _render(data)
            except (InventoryError, TemplateError):
                files = None
            results.append((field, value, files))
    return results


@pytest.fixture(scope="module")
def outcomes() -> list[tuple[tuple, str, dict | None]]:
    return _outcomes()


def test_the_table_is_the_issues_size() -> None:
    assert len(set(HOSTILE)) == len(HOSTILE) >= 58
    assert len(FIELDS) >= 40


def test_no_hostile_value_adds_a_line_command_or_directive(outcomes) -> None:
    accepted = 0
    for field, value, files in outcomes:
        if files is not None:
            accepted += 1
            _check_same_shape(files, field, value)
    refused = len(outcomes) - accepted
    assert refused > accepted > 0  # both paths really ran


def test_every_line_break_and_control_character_is_refused(outcomes) -> None:
    """No field carries a line break or control character into netprov's model, whatever it is for."""
    checked = 0
    for field, value, files in outcomes:
        if re.search("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]", value):
            assert files is None, (field, value)
            checked += 1
    assert checked > 0, "no hostile value with a line break or control character: nothing checked"


def test_no_accepted_value_expands_a_chap_credential(outcomes) -> None:
    secretish = re.compile(r"\$\{[^}]*(user|pass|\b17[5-9]\.)", re.IGNORECASE)
    checked = 0
    for field, value, files in outcomes:
        if files is not None and secretish.search(value):
            for f in files.values():
                assert not secretish.search(f.content.decode()), (field, value)
            checked += 1
    assert checked > 0, "no accepted value names a CHAP setting: nothing checked"


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed")
def test_accepted_configs_pass_real_dnsmasq(outcomes, tmp_path: Path) -> None:
    seen: set[bytes] = set()
    for field, value, files in outcomes:
        if files is None:
            continue
        conf = next(f for f in files.values() if f.kind is Kind.CONFIG).content
        hosts = tuple(f.content for f in files.values() if f.kind is Kind.HOSTS)
        key = conf + b"".join(hosts)
        if key in seen:
            continue
        seen.add(key)
        path = tmp_path / "t.conf"
        path.write_text(dnsmasq.config_for_test(conf.decode(), [h.decode() for h in hosts]))
        proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={path}"], capture_output=True, text=True)
        assert proc.returncode == 0, (field, value, proc.stderr)
    assert len(seen) > 1


@pytest.mark.parametrize(("field", "value", "message"), [
    (("machines", "alpha", "extra", "kernel_args"), "a\nshell", "single line"),
    (("machines", "beta", "install", "kernel"), "http://x/linux || shell", "one word"),
    (("machines", "beta", "install", "cmdline"), "quiet || shell", "operator '||'"),
    (("machines", "beta", "install", "cmdline"), "quiet #", "comment"),
    (("machines", "beta", "extra", "kernel_args"), "x=${password}", "CHAP credential"),
    (("machines", "beta", "extra", "kernel_args"), "x=${175.191}", "not an iPXE setting"),
    (("machines", "alpha", "extra", "ipxe", 0), "echo ${net0/password:string}", "CHAP credential"),
    (("machines", "<key>", "alpha"), "evil\n", "machine names"),
    (("storage", "nas", "parent"), "tank/netboot\n", "ZFS dataset"),
    (("storage", "nas", "portal"), "10.0.0.10\n:3260", "single line"),
    (("storage", "nas", "basename"), "iqn.2005-10.org.freenas.ctl\n", "iSCSI qualified name"),
    (("storage", "nas", "target_prefix"), "lab\n", "target_prefix"),
    (("storage", "nas", "api_key_env"), "NAS_API_KEY\n", "environment variable"),
    (("machines", "alpha", "chap", "username"), "alpha\nshell", "CHAP username"),
    (("machines", "alpha", "initiator_iqn"), "iqn.2010-04.org.ipxe:alpha\n", "iSCSI qualified name"),
    (("machines", "alpha", "disk", "clone_from"), "tank/golden/debian@v1\n", "snapshot"),
    (("machines", "alpha", "extra", "ipxe", 0), "echo hi\\", "must not end with"),
    (("machines", "alpha", "extra", "ipxe", 0), ":failed", "label"),
    (("pxe_servers", "pxe", "interface"), "eth0\n", "interface"),
    (("pxe_servers", "pxe", "http", "base_url"), "http://10.0.0.5/netprov\n", "http(s) URL"),
    (("pxe_servers", "pxe", "ipxe", "bios"), "undionly.kpxe\n", "plain file name"),
    (("pxe_servers", "<key>", "pxe"), "pxe\n", "names may use only"),
    (("storage", "nas", "ca_file"), "/etc/ssl/ca.pem\n", "may contain only"),
])
def test_each_reported_hole_is_closed_with_a_clear_message(field: tuple, value: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        _render(_set(BASE, field, value))
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize(("ipxe", "message"), [
    ({"source": "/etc", "bios": "shadow"}, "inside /etc"),
    ({"source": "/etc"}, "inside /etc"),
    ({"source": "/root/ipxe"}, "inside /root"),
    ({"source": "/home/ada/.ssh"}, "hidden folder"),
    ({"source": "/proc/self"}, "inside /proc"),
    ({"source": "/"}, "not a folder of iPXE binaries"),
    ({"bios": "shadow"}, "iPXE binary"),
    ({"uefi": "id_rsa"}, "iPXE binary"),
    ({"arm64": "../snp.efi"}, "plain file name"),
])
def test_ipxe_binaries_and_sources_are_what_ipxe_binaries_are(ipxe: dict, message: str) -> None:
    data = copy.deepcopy(BASE)
    data["pxe_servers"]["pxe"]["ipxe"].update(ipxe)
    with pytest.raises(InventoryError) as info:
        _render(data)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("ipxe", [
    {"source": "/usr/lib/ipxe"}, {"source": "/usr/share/ipxe"}, {"source": "/home/ada/ipxe/src/bin"},
    {"source": "/opt/ipxe", "bios": "undionly.kkpxe", "uefi": "ipxe.efi"}, {"source": None, "bios": "ipxe.pxe"},
])
def test_real_ipxe_layouts_stay_accepted(ipxe: dict) -> None:
    data = copy.deepcopy(BASE)
    data["pxe_servers"]["pxe"]["ipxe"].update(ipxe)
    assert _render(data)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("pxe_servers", "pxe", "tftp_root"), "/etc", "inside /etc"),
    (("pxe_servers", "pxe", "tftp_root"), "/", "whole server"),
    (("pxe_servers", "pxe", "tftp_root"), "/home/ada/.ssh", "hidden folder"),
    (("pxe_servers", "pxe", "http", "root"), "/root/www", "inside /root"),
    (("pxe_servers", "pxe", "ssh", "host"), "-oProxyCommand", "starts with '-'"),
])
def test_published_roots_never_serve_the_servers_secrets(path: tuple, value: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        _render(_set(BASE, path, value))
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("expression", ['machine.name ~ "\\nshell"', 'machine.name ~ "\\u2028x"',
                                        'machine.chap.secret ~ "\\n"'])
def test_a_template_cannot_emit_a_line_break_through_a_value(expression: str) -> None:
    """The renderer's own net, under whatever a (user) template does: every {{ value }} stays on its line,
    and the refusal never quotes the value (it may be the CHAP secret)."""
    from netprov.core.boot_render import Templates
    source = "#!ipxe\n{% if machine.chap %}echo {{ " + expression + " }}{% endif %}\n"
    renderer = Renderer(Templates.with_overrides({"machine.ipxe.j2": source}, "site"))
    loaded = parse_inventory(json.dumps(BASE), "hostile.yaml")
    with pytest.raises(TemplateError) as info:
        renderer.render(loaded, {m.name: SECRET for m in loaded.machines})
    assert "site/machine.ipxe.j2:2" in str(info.value) and "line break" in str(info.value)
    assert SECRET not in str(info.value)
