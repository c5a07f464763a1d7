"""Rendering: inventory -> the exact boot files each PXE server needs. Pure and deterministic.

Templates are jinja2 sources passed in as a dict (the built-ins, overlaid by the
user's overrides, read at the edge), rendered with StrictUndefined (a missing variable is an error, not an empty string).
The renderer adds netprov's header itself, so a user template cannot forget it
(and files stay recognisable as netprov's). Same inventory + templates + secrets
-> the same bytes, always.
"""

from __future__ import annotations

import ipaddress
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from importlib import resources
from typing import Any

import jinja2

from netprov.core import names
from netprov.core.bootfiles import HEADER_MARKER, BootFile, Kind, Root
from netprov.core.inventory import Arch, LoadedInventory, Machine, PxeServer, Storage
from netprov.core.units import mac_hexhyp
from netprov.errors import TemplateError

TEMPLATE_NAMES = ("dnsmasq.conf.j2", "host.j2", "boot.ipxe.j2", "machine.ipxe.j2", "embedded.ipxe.j2")
HEADER = f"# {HEADER_MARKER} -- do not edit: `netprov apply` rewrites this file."
#: Stands in for a CHAP secret that is not available (CI dry-runs); never a valid secret.
MISSING_SECRET = "<secret-not-available>"
BOOT_SCRIPT = "boot.ipxe"
EMBEDDED_SCRIPT = "netprov-embedded.ipxe"


@lru_cache(maxsize=1)
def builtin_templates() -> dict[str, str]:
    """The packaged templates (package data, read once)."""
    base = resources.files("netprov") / "templates"
    return {name: (base / name).read_text(encoding="utf-8") for name in TEMPLATE_NAMES}


def script_name(mac: str) -> str:
    """A machine script's file name: iPXE's ``${mac:hexhyp}`` + ``.ipxe`` (lower case)."""
    return f"{mac_hexhyp(mac)}.ipxe"


def host_file_name(machine: str) -> str:
    return f"{machine}.conf"


def root_path(storage: Storage, machine: str) -> str:
    """RFC 4173 iSCSI root path as iPXE wants it: ``iscsi:<host>::<port>:<lun hex>:<iqn>``."""
    return _root_prefix(storage) + names.target_iqn(storage.basename, machine, storage.target_prefix)


@lru_cache(maxsize=64)
def _root_prefix(storage: Storage) -> str:
    host = storage.portal_host
    if ":" in host:
        host = f"[{host}]"
    port = "" if storage.portal_port == 3260 else str(storage.portal_port)
    lun = f"{storage.lun:x}" if storage.lun else ""
    return f"iscsi:{host}::{port}:{lun}:"


@dataclass(frozen=True)
class Templates:
    """The template set in force: built-ins overlaid with the user's overrides."""

    sources: Mapping[str, str]
    origin: Mapping[str, str]  # template name -> where it came from (for error messages)

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str] | None = None,
                       override_dir: str = "templates") -> Templates:
        sources = dict(builtin_templates())
        origin = {n: f"built-in {n}" for n in sources}
        for name, text in (overrides or {}).items():
            if name not in TEMPLATE_NAMES:
                raise TemplateError(f"{override_dir}/{name}: not a netprov template "
                                    f"(overridable: {', '.join(TEMPLATE_NAMES)})")
            sources[name] = text
            origin[name] = f"{override_dir}/{name}"
        return cls(sources=sources, origin=origin)


class Renderer:
    """Renders one inventory's boot files with one template set."""

    def __init__(self, templates: Templates | None = None) -> None:
        self.templates = templates or Templates.with_overrides()
        self.env = jinja2.Environment(
            loader=jinja2.DictLoader(dict(self.templates.sources)),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True, autoescape=False, finalize=_single_line)
        self._compiled: dict[str, jinja2.Template] = {}

    def _template(self, name: str) -> jinja2.Template:
        if name not in self._compiled:
            try:
                self._compiled[name] = self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"{self.templates.origin[name]}:{exc.lineno}: {exc.message}") from None
        return self._compiled[name]

    def _render(self, name: str, **context: Any) -> str:
        tpl = self._template(name)
        try:
            text = tpl.render(**context)
        except jinja2.TemplateError as exc:
            line = _template_line(exc, name)
            where = f"{self.templates.origin[name]}:{line}" if line else self.templates.origin[name]
            raise TemplateError(f"{where}: {getattr(exc, 'message', None) or exc}") from None
        except Exception as exc:  # a user template can raise anything (e.g. a bad filter argument)
            line = _template_line(exc, name)
            where = f"{self.templates.origin[name]}:{line}" if line else self.templates.origin[name]
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from None
        return _with_header(_tidy(text))

    def render(self, loaded: LoadedInventory, secrets: Mapping[str, str | None] | None = None,
               servers: set[str] | None = None) -> list[BootFile]:
        """Every boot file for every PXE server (or only ``servers``), sorted.

        ``secrets`` maps machine name -> CHAP secret; a missing one renders as
        ``MISSING_SECRET`` (the CLI refuses to push such a file).
        """
        inv = loaded.inventory
        secrets = secrets or {}
        files: list[BootFile] = []
        by_server: dict[str, list[Machine]] = {}
        for m in loaded.machines:
            by_server.setdefault(m.pxe_server, []).append(m)
        for sname in sorted(inv.pxe_servers):
            if servers is not None and sname not in servers:
                continue
            server = inv.pxe_servers[sname]
            machines = by_server.get(sname, [])
            sview = _server_view(sname, server, machines)
            files.append(BootFile(sname, Root.DNSMASQ, server.conf_name,
                                  self._render("dnsmasq.conf.j2", server=sview).encode(), Kind.CONFIG))
            script_root = Root.HTTP if server.http else Root.TFTP
            files.append(BootFile(sname, script_root, BOOT_SCRIPT,
                                  self._render("boot.ipxe.j2", server=sview).encode(), Kind.SCRIPT))
            files.append(BootFile(sname, script_root, EMBEDDED_SCRIPT,
                                  self._render("embedded.ipxe.j2", server=sview).encode(), Kind.SCRIPT))
            if server.ipxe.source:  # else the user keeps the iPXE binaries in tftp_root themselves
                for binary in sview.binaries:
                    files.append(BootFile(sname, Root.TFTP, binary, b"", Kind.BINARY,
                                          source=f"{server.ipxe.source}/{binary}"))
            for m in machines:
                storage = inv.storage[m.storage]
                secret = secrets.get(m.name) if m.chap else None
                mview = _machine_view(m, storage, server, secret)
                files.append(BootFile(sname, Root.HOSTS, host_file_name(m.name),
                                      self._render("host.j2", machine=mview, server=sview).encode(),
                                      Kind.HOSTS, machine=m.name))
                files.append(BootFile(sname, script_root, script_name(m.mac),
                                      self._render("machine.ipxe.j2", machine=mview, server=sview).encode(),
                                      Kind.SCRIPT, mode=0o640 if m.chap else 0o644, secret=bool(m.chap),
                                      secrets=(secret,) if secret else (), machine=m.name))
        return sorted(files, key=lambda f: (f.server, f.root.value, f.path))


def _server_view(name: str, s: PxeServer, machines: list[Machine]) -> SimpleNamespace:
    arm64 = any(m.arch is Arch.ARM64 for m in machines)
    binaries = sorted({s.ipxe.bios, s.ipxe.uefi} | ({s.ipxe.arm64} if arm64 else set()))
    if s.http:
        script_base = s.http.base_url
        boot_url = f"{script_base}/{BOOT_SCRIPT}"
    else:
        script_base = f"tftp://{s.address}"
        boot_url = BOOT_SCRIPT
    net = ipaddress.IPv4Network(s.subnet)
    return SimpleNamespace(**{
        "name": name, "mode": s.mode.value, "interface": s.interface, "address": str(s.address),
        "subnet": str(net), "network": str(net.network_address), "netmask": str(net.netmask),
        "range": s.range, "router": str(s.router) if s.router else None, "dns": [str(d) for d in s.dns],
        "domain": s.domain, "tftp_root": s.tftp_root, "hosts_dir": s.effective_hosts_dir,
        "only_known": s.only_known, "log_dhcp": s.log_dhcp, "unknown": s.unknown.value,
        "on_failure": s.on_failure.value, "ipxe": s.ipxe, "arm64": arm64, "binaries": binaries,
        "boot_script_url": boot_url, "script_base_url": script_base, "http": s.http is not None,
    })


def _machine_view(m: Machine, storage: Storage, server: PxeServer, secret: str | None) -> SimpleNamespace:
    """What machine templates see (attribute access: jinja resolves it without a failed getattr)."""
    initrd_names = [f"initrd{i}" for i in range(len(m.install.initrd))] if m.install else []
    return SimpleNamespace(**{
        "name": m.name, "mac": m.mac, "ip": m.ip, "firmware": m.firmware.value, "arch": m.arch.value,
        "boot": m.boot.value, "install": m.install, "extra": m.extra, "initiator_iqn": m.initiator_iqn,
        "chap": SimpleNamespace(username=m.chap.username, secret=secret or MISSING_SECRET) if m.chap else None,
        "root_path": root_path(storage, m.name),
        "target_iqn": names.target_iqn(storage.basename, m.name, storage.target_prefix),
        "portal": storage.portal, "lun": storage.lun, "initrd_names": initrd_names,
        "attempts": server.sanboot_attempts, "retry_delay": server.retry_delay,
        "description": m.description,
    })


#: What no interpolated value may carry: a line break of any kind (iPXE and dnsmasq read a new line as a
#: new command or directive; Python's and editors' line splitting also break at U+0085, U+2028, U+2029)
#: or another control character. Tabs are plain whitespace to both.
_NOT_ONE_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _single_line(value: Any) -> Any:
    """Jinja ``finalize``: every ``{{ ... }}`` value stays on its line, whatever the template or the
    inventory validation let through. The value is not quoted back: it may be a secret."""
    if isinstance(value, str) and _NOT_ONE_LINE.search(value):
        raise ValueError("a value would add a line break or a control character to the file "
                         "(every interpolated value must stay on one line)")
    return value


_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    """Strip trailing spaces, collapse runs of blank lines, end with one newline (stable output)."""
    text = text.replace("\r\n", "\n")
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = _TRAILING_WS.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n") + "\n"


def _with_header(text: str) -> str:
    if text.startswith("#!ipxe"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{HEADER}\n{rest}"
    return f"{HEADER}\n{text}"


def _template_line(exc: BaseException, name: str) -> int | None:
    line = getattr(exc, "lineno", None)
    if line:
        return line
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == name or frame.filename.endswith(f"/{name}") or frame.filename == "<template>":
            return frame.lineno
    return None
