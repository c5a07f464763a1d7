"""The inventory reference, generated from the models (so docs can't drift from code).

``inventory_reference()`` returns markdown tables, one per section, listing every
field with its type, default and description. docs/inventory.md embeds it between
markers; a test regenerates it and compares.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from netprov.core import inventory as inv

BEGIN = "<!-- BEGIN GENERATED REFERENCE (netprov.core.reference; do not edit by hand) -->"
END = "<!-- END GENERATED REFERENCE -->"

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("storage.NAME", inv.Storage, "A FreeNAS/TrueNAS box."),
    ("pxe_servers.NAME", inv.PxeServer, "A host running dnsmasq (DHCP or proxy-DHCP, and TFTP)."),
    ("pxe_servers.NAME.ssh", inv.Ssh, "How netprov reaches it (OpenSSH semantics; ~/.ssh/config honoured)."),
    ("pxe_servers.NAME.range", inv.Range, "dhcp mode: the dynamic address pool."),
    ("pxe_servers.NAME.http", inv.Http, "Serve iPXE scripts over HTTP instead of TFTP."),
    ("pxe_servers.NAME.ipxe", inv.Ipxe, "iPXE binaries handed to firmware."),
    ("defaults", inv.Defaults, "Values every machine inherits unless it sets its own."),
    ("machines.NAME", inv.MachineSpec, "One diskless machine. NAME: lower-case a-z, 0-9, '-' (a DNS label)."),
    ("machines.NAME.disk", inv.Disk, "Its zvol."),
    ("machines.NAME.chap", inv.Chap, "CHAP for its iSCSI login (or `chap: false`)."),
    ("machines.NAME.install", inv.Install, "`boot: install`: attach the disk, then boot this installer."),
    ("machines.NAME.extra", inv.Extra, "Additions without forking a template."),
]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"map of {_type_name(typing.get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    return getattr(tp, "__name__", str(tp)).replace("IPv4Address", "IPv4 address").replace(
        "IPv4Network", "IPv4 network")


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(see below)"
        return f"`{value!r}`" if value not in ([], {}) else "empty"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value}`"


def inventory_reference() -> str:
    out = [BEGIN, ""]
    for path, model, blurb in SECTIONS:
        out += [f"### `{path}`", "", blurb, "", "| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"
