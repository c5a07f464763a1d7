"""Rendering: golden files per mode, real `dnsmasq --test`, determinism, template errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprov.adapters.local import load_workspace
from netprov.core import dnsmasq
from netprov.core.bootfiles import HEADER_MARKER, Kind, Root
from netprov.core.inventory_load import parse_inventory
from netprov.core.boot_render import Renderer, Templates
from netprov.errors import TemplateError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "render"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _env(case: Path) -> dict[str, str]:
    env = {}
    f = case / "secrets.env"
    if f.exists():
        for line in f.read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
    return env


def render_case(name: str):
    case = GOLDEN / name
    ws = load_workspace(case / "inventory.yaml", env=_env(case))
    return ws, Renderer(ws.templates).render(ws.loaded, ws.secrets)


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, update_goldens: bool) -> None:
    _, files = render_case(name)
    expected_dir = GOLDEN / name / "expected"
    rendered = {f"{f.server}/{f.root.value}/{f.path}": f.content for f in files if f.kind is not Kind.BINARY}
    if update_goldens:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, content in rendered.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(content)
    on_disk = {str(p.relative_to(expected_dir)): p.read_bytes() for p in expected_dir.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(rendered), "file set differs (run pytest --update-goldens to accept)"
    for rel, content in rendered.items():
        assert content == on_disk[rel], f"{rel} differs from its golden file (pytest --update-goldens)"


@pytest.mark.parametrize("name", CASES)
def test_every_file_carries_the_header(name: str) -> None:
    _, files = render_case(name)
    for f in files:
        if f.kind is Kind.BINARY:
            continue
        head = f.content.decode().splitlines()[:2]
        assert any(HEADER_MARKER in line for line in head), f.address


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed (the test command installs it)")
@pytest.mark.parametrize("name", CASES)
def test_rendered_config_passes_real_dnsmasq(name: str, tmp_path: Path) -> None:
    _, files = render_case(name)
    for server in {f.server for f in files}:
        conf = next(f for f in files if f.server == server and f.kind is Kind.CONFIG).content.decode()
        hosts = [f.content.decode() for f in files if f.server == server and f.kind is Kind.HOSTS]
        text = dnsmasq.config_for_test(conf, hosts)
        assert text.count("dhcp-host=") == len(hosts)
        path = tmp_path / f"{server}.conf"
        path.write_text(text)
        proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={path}"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq not installed")
def test_dnsmasq_test_catches_a_bad_host_line(tmp_path: Path) -> None:
    """The inlining is what makes --test see host lines: a broken one must fail."""
    _, files = render_case("dhcp")
    conf = next(f for f in files if f.kind is Kind.CONFIG).content.decode()
    path = tmp_path / "t.conf"
    path.write_text(dnsmasq.config_for_test(conf, ["52:54:00:00:00:09,not-an-ip-or-name!!,,,,"]))
    proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={path}"], capture_output=True, text=True)
    assert proc.returncode != 0


def test_scripts_never_use_next_server_and_set_initiator() -> None:
    for name in CASES:
        _, files = render_case(name)
        for f in files:
            if f.path.endswith(".ipxe"):
                text = f.content.decode()
                assert "${next-server}" not in text, f.address
                if f.path.count("-") == 5 and "sanboot" in text:
                    assert "set initiator-iqn iqn." in text, f.address


def test_lun_and_port_are_in_the_root_path() -> None:
    _, files = render_case("dhcp")
    script = next(f for f in files if f.path == "52-54-00-00-00-01.ipxe").content.decode()
    assert "iscsi:10.0.0.10::3261:1:iqn.2005-10.org.freenas.ctl:bios1" in script


def test_chap_script_is_secret_and_private() -> None:
    _, files = render_case("dhcp")
    f = next(f for f in files if f.path == "52-54-00-00-00-01.ipxe")
    assert f.secret and f.mode == 0o640 and f.secrets == ("s3cret-bios-01",)
    other = next(f for f in files if f.path == "52-54-00-00-00-02.ipxe")
    assert not other.secret and "password" not in other.content.decode().replace("clear password", "")


def test_proxy_mode_uses_pxe_services_and_dhcp_mode_uses_dhcp_boot() -> None:
    _, proxy = render_case("proxy")
    conf = next(f for f in proxy if f.kind is Kind.CONFIG).content.decode()
    assert "dhcp-range=set:netprov,192.168.1.0,proxy,255.255.255.0" in conf
    assert 'pxe-service=tag:!netprov-ipxe,x86PC,"netprov: iPXE (BIOS)",undionly.kpxe' in conf
    _, dhcp = render_case("dhcp")
    conf = next(f for f in dhcp if f.kind is Kind.CONFIG).content.decode()
    boot_lines = [line for line in conf.splitlines() if line.startswith("dhcp-boot=")]
    assert boot_lines[-1].startswith("dhcp-boot=tag:netprov-ipxe,"), "the iPXE line must be written last"
    assert "dhcp-ignore=tag:!known" in conf


def test_template_error_names_template_and_line(tmp_path: Path) -> None:
    loaded = parse_inventory((GOLDEN / "overrides" / "inventory.yaml").read_text().replace("templates: templates\n", ""))
    bad = Templates.with_overrides({"machine.ipxe.j2": "#!ipxe\necho ok\necho {{ machine.no_such_field }}\n"},
                                   "site-templates")
    with pytest.raises(TemplateError, match=r"site-templates/machine.ipxe.j2:3: .*no_such_field"):
        Renderer(bad).render(loaded)
    broken = Templates.with_overrides({"boot.ipxe.j2": "#!ipxe\n{% if %}\n"}, "site-templates")
    with pytest.raises(TemplateError, match=r"site-templates/boot.ipxe.j2:2: "):
        Renderer(broken).render(loaded)
    with pytest.raises(TemplateError, match="not a netprov template"):
        Templates.with_overrides({"nope.j2": ""})


# --- property: any valid inventory renders, twice to identical bytes ------------------

names_st = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


@st.composite
def inventories(draw):
    mode = draw(st.sampled_from(["dhcp", "proxy"]))
    n = draw(st.integers(min_value=0, max_value=6))
    machine_names = draw(st.lists(names_st, min_size=n, max_size=n, unique=True))
    lines = [
        "version: 1",
        "storage:",
        f"  nas: {{url: wss://nas/api/current, api_key_env: K, parent: tank/nb, portal: 10.1.0.2,"
        f" lun: {draw(st.integers(0, 20))}}}",
        "pxe_servers:",
        f"  pxe: {{ssh: {{host: pxe}}, mode: {mode}, interface: eth0, address: 10.1.0.3, subnet: 10.1.0.0/24"
        + (", range: {start: 10.1.0.100, end: 10.1.0.200}" if mode == "dhcp" else "")
        + f", unknown: {draw(st.sampled_from(['exit', 'shell', 'retry', 'reboot', 'poweroff']))}}}",
        "machines:" + (" {}" if not machine_names else ""),
    ]
    for i, name in enumerate(machine_names):
        fw = draw(st.sampled_from(["bios", "uefi", "auto"]))
        arch = "arm64" if fw != "bios" and draw(st.booleans()) else "x86_64"
        boot = draw(st.sampled_from(["sanboot", "install", "exit"]))
        parts = [f"mac: '52:54:00:00:{i // 256:02x}:{i % 256:02x}'", f"firmware: {fw}", f"arch: {arch}",
                 f"boot: {boot}", f"disk: {{size: {draw(st.integers(1, 4096))}M}}"]
        if boot == "install":
            parts.append("install: {kernel: vmlinuz, initrd: initrd.gz, cmdline: quiet}")
        if draw(st.booleans()):
            parts.append(f"chap: {{secret_env: S_{i}}}")
        if mode == "dhcp" and draw(st.booleans()):
            parts.append(f"ip: 10.1.0.{10 + i}")
        lines.append(f"  {name}: {{{', '.join(parts)}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories(), st.dictionaries(st.integers(0, 6).map(str), st.text("abcdefghijklmnopqrstuvwxyz0123456789",
                                                                            min_size=12, max_size=16)))
def test_any_valid_inventory_renders_deterministically(text: str, secret_by_index: dict) -> None:
    loaded = parse_inventory(text, "gen.yaml")
    secrets = {m.name: secret_by_index.get(str(i)) for i, m in enumerate(loaded.machines)}
    first = Renderer().render(loaded, secrets)
    second = Renderer().render(parse_inventory(text, "gen.yaml"), dict(secrets))
    assert [(f.address, f.content) for f in first] == [(f.address, f.content) for f in second]
    assert {f.root for f in first} <= {Root.TFTP, Root.DNSMASQ, Root.HOSTS}
