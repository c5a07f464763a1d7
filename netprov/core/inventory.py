"""The inventory: netprov's desired state as the user writes it (YAML, ``version: 1``).

``parse_inventory(text, filename)`` turns YAML text into a validated, normalised
``Inventory`` or raises ``InventoryError`` listing *every* problem as
``file:line:col: field.path: what is wrong``. It is pure: it never reads the
environment or the filesystem; secrets are referenced (env var name, file path),
never held. ``resolve(inventory)`` applies defaults and returns one fully
specified ``Machine`` per entry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator,
                      model_validator)

from netprov.core.dnsmasq import SECRET_GROUP
from netprov.core.names import MACHINE_NAME_RE
from netprov.core.net import is_loopback
from netprov.core.units import VOLBLOCKSIZES, normalise_mac, parse_size, parse_volblocksize

DEFAULT_BASENAME = "iqn.2005-10.org.freenas.ctl"
DEFAULT_INITIATOR_BASENAME = "iqn.2010-04.org.ipxe"
# Every pattern below is applied with ``fullmatch``: a ``$`` would also match before a final "\n",
# and a value with a line break must never reach a script, a config line or an API name.
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._/+-]*")
_DATASET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+ -]*(/[A-Za-z0-9_.:+ -]+)*")
_IQN_RE = re.compile(r"iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[-a-z0-9.:]+)?")


class Strict(BaseModel):
    """Base: unknown keys are errors (a typo like ``mca:`` must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- reusable field types ------------------------------------------------------------

def _mac(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("a MAC address is a string like 52:54:00:12:34:56")
    return normalise_mac(_printable_line(v, "a MAC address"))


def _size(v: Any) -> int:
    return parse_size(v)


def _abs_path(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be an absolute path")
    if not v.startswith("/") or "\x00" in v or any(p == ".." for p in v.split("/")):
        raise ValueError(f"{v!r} must be an absolute path without '..'")
    if not _SAFE_PATH_RE.fullmatch(v):
        raise ValueError(f"{v!r} may contain only letters, digits and . _ / + -")
    return v.rstrip("/") or "/"


def _env_name(v: Any) -> str:
    if not isinstance(v, str) or not _ENV_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not an environment variable name")
    return v


# JSON Schema for the types above (`netprov schema`, editors): what the validators accept, as patterns
# (ECMAScript regex syntax, as yaml-language-server and the jsonschema library both read it).
_HEX, _EVEN = "[0-9A-Fa-f]", "[02468ACEace]"        # a unicast MAC's first octet has its low bit clear
MAC_PATTERN = (rf"^\s*(?:{_HEX}{_EVEN}(?::{_HEX}{{2}}){{5}}|{_HEX}{_EVEN}(?:-{_HEX}{{2}}){{5}}"
               rf"|{_HEX}{_EVEN}{_HEX}{{2}}(?:\.{_HEX}{{4}}){{2}}|{_HEX}{_EVEN}{_HEX}{{10}})\s*$")
SIZE_PATTERN = r"^\s*(?=[0-9.]*[1-9])[0-9]+(?:\.[0-9]+)?\s*(?:[KMGTPEkmgtpe]?(?:[iI]?[bB])?)\s*$"
VOLBLOCKSIZE_PATTERN = (r"^\s*(?:" + "|".join(str(n) for n in VOLBLOCKSIZES.values())
                        + "|(?:" + "|".join(k[:-1] for k in VOLBLOCKSIZES if k.endswith("K")) + r")[Kk])[Bb]?\s*$")
ABS_PATH_PATTERN = r"^(?!.*(?:^|/)\.\.(?:/|$))/[A-Za-z0-9._/+-]*$"
SINGLE_LINE_PATTERN = r"^[^\n\r\u0000]*$"
# The runtime checks use fullmatch (no anchors in the regexes); a JSON Schema pattern is a search, so it
# carries the anchors itself.
MACHINE_NAME_PATTERN = f"^(?:{MACHINE_NAME_RE.pattern})$"
REF_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"

Mac = Annotated[str, BeforeValidator(_mac), WithJsonSchema(
    {"type": "string", "pattern": MAC_PATTERN,
     "description": "unicast MAC: 52:54:00:12:34:56, 52-54-00-12-34-56, 5254.0012.3456 or 525400123456"})]
Size = Annotated[int, BeforeValidator(_size), WithJsonSchema(
    {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]})]
AbsPath = Annotated[str, BeforeValidator(_abs_path), WithJsonSchema(
    {"type": "string", "pattern": ABS_PATH_PATTERN})]
EnvName = Annotated[str, BeforeValidator(_env_name), WithJsonSchema(
    {"type": "string", "pattern": f"^(?:{_ENV_RE.pattern})$"})]
VolBlockSize = Annotated[str, BeforeValidator(parse_volblocksize), WithJsonSchema(
    {"anyOf": [{"type": "integer", "enum": list(VOLBLOCKSIZES.values())},
               {"type": "string", "pattern": VOLBLOCKSIZE_PATTERN}]})]
# one line (no newline, CR or NUL): the fields' validators say so in words; this is the schema's half
Line = Annotated[str, WithJsonSchema({"type": "string", "pattern": SINGLE_LINE_PATTERN})]


def _no_shell(v: str, what: str) -> str:
    if any(c in v for c in "\x00\n\r"):
        raise ValueError(f"{what} must be a single line")
    return v


def _printable_line(v: str, what: str) -> str:
    """Printable ASCII on one line: no control characters, no Unicode line or paragraph separators."""
    if not all(" " <= c <= "~" for c in v):
        raise ValueError(f"{what} must be a single line of printable ASCII characters "
                         "(no tabs, control characters or line separators)")
    return v


#: iPXE settings that hold the CHAP credentials: an argument may not expand them (a kernel command
#: line is readable by every user of the booted system).
_SECRET_SETTINGS = frozenset({"username", "password", "reverse-username", "reverse-password"})
_EXPANSION_RE = re.compile(r"\$\{([^${}]*)\}")
#: A named setting, optionally scoped and typed (``net0/mac:hexhyp``). Numeric names are not allowed:
#: ``${175.191}`` is the CHAP password by its DHCP option number.
_SETTING_NAME_RE = re.compile(r"(?:[A-Za-z0-9_.-]+/)*([A-Za-z][A-Za-z0-9_-]*)(?::[a-z0-9]+)?")


def _ipxe_words(v: str, what: str, *, one_word: bool) -> str:
    """A value iPXE reads as argument(s) of netprov's own command: it may add arguments (``one_word``
    False) but never a line, a command (``||``, ``&&``, ``;``), a comment (a word starting with ``#``),
    a line continuation (a final ``\\``) or an expansion of the CHAP settings."""
    _printable_line(v, what)
    if one_word and (" " in v or not v):
        raise ValueError(f"{what} must be one word (no spaces)")
    if one_word and v.startswith("-"):
        raise ValueError(f"{what} must not start with '-' (iPXE would read it as an option)")
    for word in v.split():
        if word in ("||", "&&", ";"):
            raise ValueError(f"{what} must not contain the iPXE operator {word!r}: it would run another command")
        if word.startswith("#"):
            raise ValueError(f"{what}: a word starting with '#' begins an iPXE comment and would cut off "
                             "the rest of netprov's command")
    if v.endswith("\\"):
        raise ValueError(f"{what} must not end with '\\' (iPXE would join the next line to it)")
    return _no_secret_expansion(v, what)


def _no_secret_expansion(v: str, what: str) -> str:
    """iPXE expands ``${name}`` in every word, repeatedly (``${pass${x}word}`` becomes ``${password}``):
    only plain, non-CHAP settings may be named."""
    for m in _EXPANSION_RE.finditer(v):
        name = _SETTING_NAME_RE.fullmatch(m.group(1))
        if not name:
            raise ValueError(f"{what}: {m.group(0)!r} is not an iPXE setting like ${{net0/mac}}")
        if name.group(1).lower() in _SECRET_SETTINGS:
            raise ValueError(f"{what}: {m.group(0)!r} would show a CHAP credential (on the console or a "
                             "kernel command line)")
    if "${" in _EXPANSION_RE.sub("", v):
        raise ValueError(f"{what}: '${{' must start a plain setting like ${{net0/mac}} (no nesting)")
    return v


class Firmware(str, Enum):
    BIOS = "bios"
    UEFI = "uefi"
    AUTO = "auto"


class Arch(str, Enum):
    X86_64 = "x86_64"
    ARM64 = "arm64"


class BootAction(str, Enum):
    SANBOOT = "sanboot"
    INSTALL = "install"
    EXIT = "exit"


class PxeMode(str, Enum):
    DHCP = "dhcp"
    PROXY = "proxy"


class Fallback(str, Enum):
    """What boot.ipxe does for a MAC it has no script for."""

    EXIT = "exit"        # return to the firmware: next boot device (local disk)
    SHELL = "shell"      # drop to the iPXE shell
    RETRY = "retry"      # wait and try DHCP/chain again
    REBOOT = "reboot"
    POWEROFF = "poweroff"


# --- storage -------------------------------------------------------------------------

_URL_PATTERN = (r"^(?:wss://[^/\s]+|ws://(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]+)?)"
                r"(?:/|/api/current|/websocket|/api/v[0-9.]+)?$")


class Storage(Strict):
    """A FreeNAS/TrueNAS box reached through its websocket API."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["api_key_env"]}, {"required": ["api_key_file"]},
        {"required": ["username", "password_env"]}, {"required": ["username", "password_file"]}]})

    url: str = Field(description="wss://HOST/api/current (25.04+) or wss://HOST/websocket "
                                 "(FreeNAS 11.3, CORE, SCALE <= 24.10); ws:// only for loopback",
                     json_schema_extra={"pattern": _URL_PATTERN})
    api_key_env: EnvName | None = Field(None, description="environment variable holding the API key")
    api_key_file: AbsPath | None = Field(None, description="file holding the API key (mode 0600)")
    username: str | None = Field(None, description="user for password login (instead of an API key)")
    password_env: EnvName | None = None
    password_file: AbsPath | None = None
    ca_file: AbsPath | None = Field(None, description="CA bundle to verify the NAS's TLS certificate")
    parent: str = Field(description="dataset the zvols are created under, e.g. tank/netboot")
    portal: str = Field(description="address[:port] the machines reach the iSCSI portal on")
    basename: str = Field(DEFAULT_BASENAME, description="the NAS's iSCSI base name (iscsi.global)")
    portal_listen: str = Field("0.0.0.0", description="IP the portal listens on, if netprov must create one")
    initiator_basename: str = Field(DEFAULT_INITIATOR_BASENAME,
                                    description="machines' initiator IQNs are <initiator_basename>:<machine>")
    target_prefix: str = Field("", description="prefix for target/extent names (several inventories on one NAS)")
    lun: int = Field(0, ge=0, le=16382, description="LUN the disk is mapped at (TrueNAS uses 0)")
    max_zvol_path: int = Field(255, ge=16, le=255,
                               description="limit on len('zvol/<parent>/<name>'): 63 on FreeNAS 11.x / CORE 12")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        m = re.fullmatch(r"(wss?)://([^/\s]+)(/[!-~]*)?", v)
        if not m:
            raise ValueError(f"{v!r} is not a ws:// or wss:// URL")
        scheme, host, path = m.groups()
        if path not in (None, "", "/", "/api/current", "/websocket") and not re.fullmatch(r"/api/v[\d.]+", path):
            raise ValueError(f"{v!r}: the path must be /api/current (TrueNAS 25.04+) or /websocket (older)")
        hostname = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:host.index("]")]
        if scheme == "ws" and not is_loopback(hostname):
            raise ValueError(f"{v!r}: plain ws:// is only allowed to loopback (TrueNAS 25.04+ revokes an "
                             "API key sent over it); use wss://")
        return v

    @field_validator("parent")
    @classmethod
    def _parent(cls, v: str) -> str:
        v = v.strip("/")
        if not _DATASET_RE.fullmatch(v) or "//" in v or ".." in v:
            raise ValueError(f"{v!r} is not a ZFS dataset path like tank/netboot")
        return v

    @field_validator("portal")
    @classmethod
    def _portal(cls, v: str) -> str:
        _printable_line(v, "the portal")
        host, port = split_host_port(v, 3260)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        return f"{host}:{port}"

    @field_validator("basename", "initiator_basename")
    @classmethod
    def _iqn(cls, v: str) -> str:
        if not re.fullmatch(r"iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[-a-z0-9.:]+)?|eui\.[0-9a-f]{16}|naa\.[0-9a-f]+", v):
            raise ValueError(f"{v!r} is not an iSCSI qualified name like iqn.2005-10.org.freenas.ctl")
        return v

    @field_validator("target_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not re.fullmatch(r"[a-z0-9][-a-z0-9]*", v):
            raise ValueError("target_prefix may use only a-z, 0-9 and '-'")
        return v

    @field_validator("username")
    @classmethod
    def _username(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", v):
            raise ValueError(f"{v!r} is not a user name (letters, digits and . _ @ -)")
        return v

    @model_validator(mode="after")
    def _one_credential(self) -> Storage:
        sources = [s for s in (self.api_key_env, self.api_key_file) if s]
        pw = [s for s in (self.password_env, self.password_file) if s]
        if len(sources) > 1 or len(pw) > 1:
            raise ValueError("give one of api_key_env / api_key_file (or password_env / password_file), not both")
        if sources and self.username:
            raise ValueError("give either an API key source or username + password, not both")
        if not sources and not (self.username and pw):
            raise ValueError("say where the API key comes from: api_key_env or api_key_file "
                             "(or username with password_env / password_file)")
        return self

    @property
    def portal_host(self) -> str:
        return split_host_port(self.portal, 3260)[0]

    @property
    def portal_port(self) -> int:
        return split_host_port(self.portal, 3260)[1]


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    if not port.isdigit():
        raise ValueError(f"{value!r}: port must be a number")
    if not host or not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise ValueError(f"{value!r} is not a host[:port]")
    return host, int(port)


# --- PXE servers ---------------------------------------------------------------------

class Ssh(Strict):
    """How to reach a PXE server. No passwords: keys, the agent, or ~/.ssh/config."""

    host: str = Field(description="host name or address (an alias from ~/.ssh/config works)")
    port: int | None = Field(None, ge=1, le=65535, description="default: ~/.ssh/config, else 22")
    user: str | None = Field(None, description="default: ~/.ssh/config, else root")
    identity_file: str | None = Field(None, description="private key file; else agent / ~/.ssh/config")
    known_hosts: str | None = Field(None, description="known_hosts file; default ~/.ssh/known_hosts")
    sudo: bool | None = Field(None, description="same as the PXE server's sudo (kept here for SSH setups)")

    @field_validator("host", "user")
    @classmethod
    def _plain(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._@:][A-Za-z0-9._@:-]*", v):
            raise ValueError(f"{v!r} contains characters not allowed in a host or user name "
                             "(or starts with '-')")
        return v

    @field_validator("identity_file", "known_hosts")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        return _printable_line(v, "a file path") if v is not None else v


class Range(Strict):
    """dhcp mode: the dynamic pool dnsmasq leases from (machines with a fixed ip may sit outside it)."""

    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address
    lease_time: str = Field("12h", pattern=r"^(\d+[smhdw]?|infinite)$")


class Http(Strict):
    """Serve iPXE scripts over HTTP from a docroot on the PXE server (faster than TFTP)."""

    root: AbsPath = Field(description="web server docroot directory netprov writes scripts into")
    base_url: str = Field(description="URL of that directory as machines see it, e.g. http://10.0.0.5/netprov")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        why = forbidden_published_root(v, "http.root")
        if why:
            raise ValueError(why)
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")


#: What an iPXE binary's file name ends in (they are published over TFTP to anyone on the LAN).
IPXE_BINARY_SUFFIXES = (".efi", ".kpxe", ".kkpxe", ".kkkpxe", ".pxe", ".lkrn", ".usb")
_IPXE_BINARY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?:"
                             + "|".join(re.escape(x) for x in IPXE_BINARY_SUFFIXES) + ")")
#: Folders of the PXE server that hold configuration, secrets or kernel state, never iPXE binaries.
SYSTEM_DIRS = ("/etc", "/root", "/proc", "/sys", "/dev", "/run", "/boot", "/var/lib", "/var/log", "/var/spool",
               "/var/mail", "/var/backups")


def _forbidden_folder(path: str, dirs: tuple[str, ...]) -> str | None:
    """What rules out the normalised absolute ``path``: ``"/"`` (the whole server), ``"hidden"`` (a folder
    in it starts with ".", like .ssh), the folder of ``dirs`` it is or is inside, or None (nothing)."""
    if path == "/":
        return "/"
    if any(p.startswith(".") for p in path.split("/") if p):
        return "hidden"
    return next((d for d in dirs if path == d or path.startswith(d + "/")), None)


def forbidden_binary_source(path: str) -> str | None:
    """Why ``path`` may not be ``ipxe.source``, or None. ``path`` is a normalised absolute path."""
    why = _forbidden_folder(path, SYSTEM_DIRS)
    if why == "/":
        return "'/' is not a folder of iPXE binaries"
    if why == "hidden":
        return f"{path!r} has a hidden folder in it (like .ssh): not a place for iPXE binaries"
    if why:
        return (f"{path!r} is inside {why}, which holds the server's configuration or secrets: netprov "
                "would publish files from it over TFTP (use /usr/lib/ipxe or a folder of your own)")
    return None


#: Folders that must never be served to the LAN: ``tftp_root`` is served by TFTP, ``http.root`` by a web server.
PUBLISHED_FORBIDDEN = ("/etc", "/root", "/proc", "/sys", "/dev", "/boot")


def forbidden_published_root(path: str, what: str) -> str | None:
    """Why ``path`` may not be a folder netprov's files are served from, or None."""
    why = _forbidden_folder(path, PUBLISHED_FORBIDDEN)
    if why == "/":
        return f"{what} '/' would serve the whole server to the LAN"
    if why == "hidden":
        return f"{what} {path!r} has a hidden folder in it (like .ssh): it would be served to the LAN"
    if why:
        return f"{what} {path!r} is inside {why}: its files would be served to the LAN"
    return None


class Ipxe(Strict):
    """Which iPXE binaries dnsmasq hands to firmware, and where they come from."""

    bios: str = Field("undionly.kpxe", description="for BIOS PXE (arch 0)")
    uefi: str = Field("snponly.efi", description="for x86-64 UEFI (arch 7 and 9): snponly.efi or ipxe.efi")
    arm64: str = Field("snponly-arm64.efi", description="for ARM64 UEFI (arch 11)")
    source: AbsPath | None = Field("/usr/lib/ipxe", description="directory on the PXE server to copy the "
                                   "binaries from into tftp_root (Debian's ipxe package); null: don't copy")

    @field_validator("bios", "uefi", "arm64")
    @classmethod
    def _fname(cls, v: str) -> str:
        if not _IPXE_BINARY_RE.fullmatch(v):
            raise ValueError(f"{v!r} must be a plain file name (no '/') of an iPXE binary, ending in "
                             + ", ".join(IPXE_BINARY_SUFFIXES))
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None:
            why = forbidden_binary_source(v)
            if why:
                raise ValueError(why)
        return v


PIHOLE_DEFAULTS = {
    "test_command": "pihole-FTL dnsmasq-test-file {conf}",
    "restart_command": "systemctl restart pihole-FTL",
    "reload_command": "systemctl reload pihole-FTL",
    "secret_group": "pihole",
}


class PxeServer(Strict):
    """A host running dnsmasq (DHCP or proxy-DHCP, and TFTP) that netprov writes boot files to."""

    flavor: Literal["dnsmasq", "pihole"] = Field("dnsmasq", description="dnsmasq: Debian's dnsmasq package; "
                                                 "pihole: the dnsmasq inside Pi-hole's pihole-FTL (its test and "
                                                 "restart commands, group pihole, and a check that Pi-hole reads "
                                                 "dnsmasq_dir; see docs/pihole.md)")
    pihole_toml: AbsPath = Field("/etc/pihole/pihole.toml", description="flavor pihole: Pi-hole v6's config "
                                 "file (absent on v5), checked for misc.etc_dnsmasq_d = true")
    transport: Literal["ssh", "local"] = Field("ssh", description="ssh: reach it over SSH; local: netprov runs "
                                                "on the PXE server itself (no SSH)")
    ssh: Ssh | None = Field(None, description="required with transport: ssh")
    mode: PxeMode = Field(PxeMode.PROXY, description="proxy: beside the router's DHCP; dhcp: netprov's "
                          "dnsmasq leases addresses")
    interface: str = Field(description="interface dnsmasq serves on")
    address: ipaddress.IPv4Address = Field(description="the PXE server's own address on that network")
    subnet: ipaddress.IPv4Network
    range: Range | None = Field(None, description="dhcp mode: the address pool")
    router: ipaddress.IPv4Address | None = Field(None, description="dhcp mode: default gateway handed out")
    dns: list[ipaddress.IPv4Address] = Field(default_factory=list, description="dhcp mode: DNS servers")
    domain: str | None = Field(None, pattern=r"^[a-z0-9.-]+$")
    tftp_root: AbsPath = "/srv/tftp"
    dnsmasq_dir: AbsPath = Field("/etc/dnsmasq.d", description="dnsmasq's conf-dir; netprov writes netprov.conf")
    hosts_dir: AbsPath | None = Field(None, description="dhcp-hostsdir for per-machine host lines "
                                      "(re-read on SIGHUP); default /etc/netprov/dnsmasq-hosts")
    conf_name: str = Field("netprov.conf", pattern=r"^[A-Za-z0-9._-]+\.conf$")
    http: Http | None = None
    ipxe: Ipxe = Field(default_factory=Ipxe)
    only_known: bool = Field(False, description="dhcp-ignore=tag:!known: answer only inventory MACs")
    unknown: Fallback = Field(Fallback.EXIT, description="what boot.ipxe does for an unknown MAC")
    on_failure: Fallback = Field(Fallback.EXIT, description="what a machine script does when its disk "
                                 "can't be booted (after the message)")
    sanboot_attempts: int = Field(3, ge=1, le=20, description="sanboot tries before giving up")
    retry_delay: int = Field(3, ge=0, le=300, description="seconds between sanboot tries")
    log_dhcp: bool = False
    test_command: Line | None = Field(None, description="validates a config; {conf} is the file. "
                                      "default: dnsmasq --test --conf-file={conf}")
    secret_group: str = Field(SECRET_GROUP, pattern=r"^[a-z_][a-z0-9_-]*$",
                              description="group that may read CHAP-bearing scripts (0640): the group dnsmasq "
                              f"runs as ('{SECRET_GROUP}' on Debian/Ubuntu; flavor pihole: "
                              f"'{PIHOLE_DEFAULTS['secret_group']}')")
    reload_command: Line | None = Field(None, description="SIGHUP (hosts changed). default: systemctl reload dnsmasq")
    restart_command: Line | None = Field(None, description="config changed. default: systemctl restart dnsmasq")
    sudo: bool | None = Field(None, description="run dnsmasq test/reload/restart via sudo -n; default: when the "
                              "(SSH or local) user is not root")
    lock_path: AbsPath = Field("/run/lock/netprov.lock", description="lock file on the server that keeps two "
                               "applies from interleaving")

    @field_validator("interface")
    @classmethod
    def _iface(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._@-]{1,15}", v):
            raise ValueError(f"{v!r} is not an interface name")
        return v

    @field_validator("tftp_root")
    @classmethod
    def _tftp_root(cls, v: str) -> str:
        why = forbidden_published_root(v, "tftp_root")
        if why:
            raise ValueError(why)
        return v

    @field_validator("test_command", "reload_command", "restart_command")
    @classmethod
    def _cmd(cls, v: str | None) -> str | None:
        return _printable_line(_no_shell(v, "a command"), "a command") if v is not None else v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > 253 or any(not 0 < len(label) <= 63 for label in v.split("."))):
            raise ValueError(f"{v!r} is not a DNS domain (labels of 1-63 characters, at most 253 in all)")
        return v

    @model_validator(mode="after")
    def _flavor(self) -> PxeServer:
        # Pi-hole's defaults, unless the user set them (docs/pihole.md cites the Pi-hole sources)
        if self.flavor == "pihole":
            for name, value in PIHOLE_DEFAULTS.items():
                if name not in self.model_fields_set:
                    object.__setattr__(self, name, value)
        return self

    @model_validator(mode="after")
    def _mode(self) -> PxeServer:
        if self.transport == "ssh" and self.ssh is None:
            raise ValueError("say how to reach it: ssh: {host: ...} (or transport: local when netprov runs there)")
        if self.transport == "local" and self.ssh is not None:
            raise ValueError("transport: local needs no ssh: section")
        if self.address not in self.subnet:
            raise ValueError(f"address {self.address} is outside subnet {self.subnet}")
        if self.mode is PxeMode.DHCP:
            if self.range is None:
                raise ValueError("dhcp mode needs a range: {start: ..., end: ...}")
            for ip in (self.range.start, self.range.end):
                if ip not in self.subnet:
                    raise ValueError(f"range address {ip} is outside subnet {self.subnet}")
            if int(self.range.start) > int(self.range.end):
                raise ValueError("range start is after range end")
            if self.router is not None and self.router not in self.subnet:
                raise ValueError(f"router {self.router} is outside subnet {self.subnet}")
        elif self.range is not None or self.router is not None or self.dns:
            raise ValueError("range, router and dns are for dhcp mode; in proxy mode the router's DHCP hands "
                             "out addresses")
        return self

    @property
    def effective_hosts_dir(self) -> str:
        return self.hosts_dir or "/etc/netprov/dnsmasq-hosts"


# --- machines ------------------------------------------------------------------------

class Disk(Strict):
    size: Size | None = Field(None, description="64G, 1T, 500M (binary units) or bytes")
    sparse: bool | None = Field(None, description="thin-provisioned zvol")
    volblocksize: VolBlockSize | None = Field(None, description="512 .. 128K; fixed once created (default 16K)")
    clone_from: str | None = Field(None, description="golden snapshot to clone, e.g. tank/golden/debian@v1")

    @field_validator("clone_from")
    @classmethod
    def _snap(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]*@[A-Za-z0-9_.:+-]+", v):
            raise ValueError(f"{v!r} is not a snapshot name like tank/golden/debian@v1")
        return v


class Chap(Strict):
    """CHAP for the iSCSI login. The secret comes from the environment or a file, never the inventory."""

    # enabled (the default) needs exactly one secret source
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"enabled": {"const": False}}, "required": ["enabled"]},
        "else": {"oneOf": [{"required": ["secret_env"]}, {"required": ["secret_file"]}]}})

    enabled: bool = True
    username: str | None = Field(None, description="default: the machine name")
    secret_env: EnvName | None = None
    secret_file: AbsPath | None = None

    @field_validator("username")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", v):
            raise ValueError("CHAP username may use only letters, digits and . _ : -")
        return v

    @model_validator(mode="after")
    def _source(self) -> Chap:
        if self.enabled and not (self.secret_env or self.secret_file):
            raise ValueError("CHAP needs secret_env or secret_file (the secret never goes in the inventory)")
        if self.secret_env and self.secret_file:
            raise ValueError("give secret_env or secret_file, not both")
        return self


class _OrFalse:
    """Schema only: the field also takes ``false`` (its validator turns that into "off")."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict:
        return {"anyOf": [handler(core_schema), {"const": False}]}


# chap: false turns CHAP off (the validator makes it Chap(enabled=False))
ChapField = Annotated[Chap, BeforeValidator(lambda v: _chap(v)), _OrFalse()]


def _chap(v: Any) -> Any:
    if v is False or v is None:
        return {"enabled": False}
    if v is True:
        raise ValueError("chap: true needs a secret source; write chap: {secret_env: NAME}")
    return v


class Install(Strict):
    """boot: install — attach the disk with sanhook, then boot an installer."""

    kernel: Line = Field(description="kernel URL or a path relative to the script (TFTP/HTTP)")
    initrd: Annotated[list[str], WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": SINGLE_LINE_PATTERN},
        {"type": "array", "items": {"type": "string", "pattern": SINGLE_LINE_PATTERN}, "minItems": 1}]})] = Field(
        description="initrd URL or path, or a list of them")
    cmdline: Line = Field("", description="kernel command line")

    @field_validator("initrd", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, v: str) -> str:
        return _ipxe_words(v, "the kernel", one_word=True)

    @field_validator("cmdline")
    @classmethod
    def _cmdline(cls, v: str) -> str:
        return _ipxe_words(v, "the command line", one_word=False)

    @field_validator("initrd")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("install needs at least one initrd")
        return [_ipxe_words(x, "an initrd", one_word=True) for x in v]


class Extra(Strict):
    """Per-machine additions that don't need a template fork."""

    kernel_args: str = Field("", description="appended to the installer's kernel command line")
    ipxe: list[Line] = Field(default_factory=list, description="iPXE lines run before the boot action")

    @field_validator("kernel_args")
    @classmethod
    def _args(cls, v: str) -> str:
        return _ipxe_words(v, "kernel_args", one_word=False)

    @field_validator("ipxe")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        for x in v:
            _no_shell(x, "each line")
            _printable_line(x, "each line")
            if x.endswith("\\"):
                raise ValueError("a line must not end with '\\' (iPXE would join netprov's next line to it)")
            if x.lstrip().startswith(":"):
                raise ValueError("a line must not be a label (':name'): it would redirect netprov's own gotos")
            _no_secret_expansion(x, "each line")
        return v


class Defaults(Strict):
    """What machines inherit; each field is overridden per machine, ``disk`` field by field."""

    storage: str | None = None
    pxe_server: str | None = None
    firmware: Firmware = Firmware.BIOS
    arch: Arch = Arch.X86_64
    boot: BootAction = BootAction.SANBOOT
    disk: Disk = Field(default_factory=Disk)
    chap: ChapField | None = None
    install: Install | None = None
    extra: Extra | None = None


class MachineSpec(Strict):
    """A machine as written; unset fields fall back to ``defaults``."""

    mac: Mac
    ip: ipaddress.IPv4Address | None = Field(None, description="fixed address (dhcp mode)")
    firmware: Firmware | None = None
    arch: Arch | None = None
    disk: Disk = Field(default_factory=Disk)
    chap: ChapField | None = None
    boot: BootAction | None = None
    install: Install | None = None
    storage: str | None = None
    pxe_server: str | None = None
    initiator_iqn: str | None = Field(None, description="default: <storage.initiator_basename>:<name>")
    extra: Extra | None = None
    description: str | None = Field(None, max_length=120)
    renamed_from: str | None = Field(None, description="the machine's previous name: its disk and iSCSI objects "
                                     "are kept and renamed, not re-created (docs/recovery.md)",
                                     json_schema_extra={"pattern": MACHINE_NAME_PATTERN})

    @field_validator("initiator_iqn")
    @classmethod
    def _iqn(cls, v: str | None) -> str | None:
        if v is not None and not _IQN_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an iSCSI qualified name (lower-case iqn.YYYY-MM.domain:name)")
        return v

    @field_validator("description")
    @classmethod
    def _desc(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w .,:()/+-]*", v):
            raise ValueError("description may use letters, digits, spaces and . , : ( ) / + -")
        return v


class Inventory(Strict):
    version: Literal[1]
    storage: dict[str, Storage] = Field(default_factory=dict,
                                        json_schema_extra={"propertyNames": {"pattern": REF_NAME_PATTERN}})
    pxe_servers: dict[str, PxeServer] = Field(default_factory=dict,
                                              json_schema_extra={"propertyNames": {"pattern": REF_NAME_PATTERN}})
    defaults: Defaults = Field(default_factory=Defaults)
    templates: str | None = Field(None, description="folder of template overrides, relative to the inventory")
    machines: dict[str, MachineSpec] = Field(default_factory=dict, description="machine names are DNS labels: "
                                             "a-z, 0-9 and '-' (not first or last), at most 63",
                                             json_schema_extra={"propertyNames": {"pattern": MACHINE_NAME_PATTERN}})

    @field_validator("templates")
    @classmethod
    def _tpl(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._/-]+", v):
            raise ValueError("templates must be a plain relative or absolute folder path")
        return v


# --- the resolved view ---------------------------------------------------------------

@dataclass(frozen=True)
class ChapRef:
    username: str
    secret_env: str | None
    secret_file: str | None


@dataclass(frozen=True)
class Machine:
    """A machine with defaults applied: everything the core needs, nothing optional by accident."""

    name: str
    mac: str
    ip: str | None
    firmware: Firmware
    arch: Arch
    size: int
    sparse: bool
    volblocksize: str
    clone_from: str | None
    chap: ChapRef | None
    boot: BootAction
    install: Install | None
    storage: str
    pxe_server: str
    initiator_iqn: str
    extra: Extra
    description: str | None = None
    renamed_from: str | None = None


@dataclass(frozen=True)
class Problem:
    """One finding, located in the source file when possible."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        prefix = "warning: " if self.severity == "warning" else ""
        path = f"{self.path}: " if self.path else ""
        # One problem, one line: a key or value quoted from the file may hold a line break or an escape.
        text = _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], f"{where}: {prefix}{path}{self.message}")
        return text if len(text) <= 1000 else text[:980] + f"... ({len(text) - 980} more characters)"


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class LoadedInventory:
    """A validated inventory plus where it came from (for messages and template lookup)."""

    inventory: Inventory
    machines: tuple[Machine, ...]
    filename: str
    locate: Any = field(default=None, compare=False, repr=False)

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(name)


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def inventory_json_schema() -> dict[str, Any]:
    """The inventory's JSON Schema (`netprov schema`; docs/schema/inventory.schema.json is this, committed).

    It accepts every spelling the parser accepts (``size: 64G``, ``initrd:`` a string or a list,
    ``chap: false``) and checks what a schema can: unknown keys, types, machine names, MACs, sizes,
    paths, single-line fields. Cross-entry rules (duplicate MACs, undefined references, name lengths
    on FreeNAS) are `netprov validate`'s."""
    schema = Inventory.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, "title": "netprov inventory",
            "description": "netprov inventory (version 1); see docs/inventory.md", **schema}
