"""YAML text -> validated ``LoadedInventory``, with every problem located by file and line.

Pure: the caller reads the file; secrets are resolved separately (``secrets.py``).
All problems are collected before raising, so a user fixes an inventory in one pass.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from netprov.core import names, yamltree
from netprov.core.inventory import (Arch, BootAction, ChapRef, Extra, Firmware, Inventory, LoadedInventory,
                                    Machine, PxeMode, Problem)
from netprov.core.units import VOLBLOCKSIZES
from netprov.errors import InventoryError

DEFAULT_VOLBLOCKSIZE = "16K"
#: The largest inventory netprov reads, in characters: 64 Mi. A 10,000-machine inventory
#: (benchmarks/bench_render.py) is 0.7 MiB, so no real one comes near; past it, reading alone would cost
#: memory and time for nothing.
MAX_INVENTORY_CHARS = 64 * 1024 * 1024


class Locator:
    """Maps a field path (tuple of keys/indexes) to a 1-based (line, col) in the YAML source.

    The deepest written part of the path wins: a missing field is reported where its
    parent mapping is written.
    """

    def __init__(self, tree: Any) -> None:
        self.tree = tree

    def __call__(self, loc: tuple, key: bool = False) -> tuple[int | None, int | None]:
        node = self.tree
        best: tuple[int | None, int | None] = getattr(node, "mark", (1, 1))
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, yamltree.MarkedDict) and part in node:
                best = node.key_mark(part) if (key and last) else node.value_mark(part)
                node = node[part]
            elif isinstance(node, yamltree.MarkedList) and isinstance(part, int) and 0 <= part < len(node):
                best = node.item_mark(part)
                node = node[part]
            else:
                break
        return best


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def known_keys(loc: tuple) -> list[str]:
    """The keys the mapping at ``loc`` (a path of keys/indexes from the top) may have, from the models."""
    import types
    import typing

    from pydantic import BaseModel

    def models(tp: Any) -> list:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return models(typing.get_args(tp)[0])
        if origin in (typing.Union, types.UnionType):
            return [m for a in typing.get_args(tp) for m in models(a)]
        return [tp]

    current: list = [Inventory]
    for part in loc:
        nxt: list = []
        for tp in current:
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                field = tp.model_fields.get(str(part))
                if field is not None:
                    nxt += models(field.annotation)
            elif typing.get_origin(tp) in (dict, list):
                nxt += models(typing.get_args(tp)[-1])
        current = nxt
    return sorted({k for tp in current if isinstance(tp, type) and issubclass(tp, BaseModel)
                   for k in tp.model_fields})


def unknown_key_message(loc: tuple) -> str:
    """"unknown key", with the closest known key when one is close (a typo), else the known keys."""
    import difflib
    if not loc:
        return "unknown key (check the spelling; see `netprov schema`)"
    known = known_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean `{close[0]}`?)"
    if known:
        return f"unknown key (known here: {', '.join(known)})"
    return "unknown key (check the spelling; see `netprov schema`)"


def decode_inventory(data: bytes, filename: str) -> str:
    """An inventory file's bytes as text; a file that isn't UTF-8 is one located problem."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InventoryError([Problem(filename, line, col, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                                               f"offset {exc.start}): is this an inventory?")]) from None


def _clean_message(err: dict) -> str:
    msg = _clean_message_text(err)
    # A message quotes the offending value: a 20,000-character value must not make a 20,000-character line.
    return msg if len(msg) <= 400 else msg[:380] + f"... ({len(msg) - 380} more characters)"


def _clean_message_text(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return unknown_key_message(_pydantic_loc(tuple(err["loc"]), err["type"]))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, "):]
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "literal_error" and err["loc"] == ("version",):
        return "this netprov understands inventory version 1 (write `version: 1`)"
    return msg


_PYDANTIC_TAG = re.compile(r"[a-z][a-z0-9_-]*\[.*\]", re.S)


def _pydantic_loc(loc: tuple, error_type: str = "") -> tuple:
    """Drop pydantic's union/validator tags from a location (e.g. 'function-before[...]', 'list[str]').

    A tag is a lower-case name followed by brackets; a user's key such as ``[]`` is not one, and the last
    part of an unknown-key error is always the user's key (``x[y]`` included).
    """
    *path, last = loc or ("",)
    kept = tuple(p for p in path if not (isinstance(p, str) and _PYDANTIC_TAG.fullmatch(p) and "(" not in p))
    if not loc:
        return ()
    if error_type == "extra_forbidden" or not (isinstance(last, str) and _PYDANTIC_TAG.fullmatch(last)
                                                and "(" not in last):
        return (*kept, last)
    return kept


def parse_inventory(text: str, filename: str = "<inventory>") -> LoadedInventory:
    """Parse and validate inventory YAML. Raises ``InventoryError`` listing every problem."""
    # Building the tree allocates hundreds of thousands of small objects and no cycles worth
    # collecting: with the cyclic GC paused, a 10,000-machine inventory parses ~2x faster.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse_inventory(text, filename)
    finally:
        if paused:
            gc.enable()


def _parse_inventory(text: str, filename: str) -> LoadedInventory:
    if len(text) > MAX_INVENTORY_CHARS:
        raise InventoryError([Problem(filename, None, None, "", too_large())])
    try:
        tree = yamltree.load(text)
    except yamltree.YamlError as exc:
        raise InventoryError([Problem(filename, exc.line, exc.col, "", f"YAML error: {exc.message}")]) from None
    if tree is None:
        raise InventoryError([Problem(filename, 1, 1, "", "the inventory is empty (expected `version: 1` ...)")])
    if not isinstance(tree, dict):
        raise InventoryError([Problem(filename, 1, 1, "", "the inventory must be a mapping with `version: 1`")])
    locate = Locator(tree)
    try:
        inv = Inventory.model_validate(yamltree.plain(tree))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _pydantic_loc(tuple(err["loc"]), err["type"])
            line, col = locate(loc, key=err["type"] == "extra_forbidden")
            problems.append(Problem(filename, line, col, _fmt_loc(loc), _clean_message(err)))
        # Report cross-entry problems (duplicates, references) in the same pass, using
        # the entries that are valid on their own.
        problems += _name_problems(tree, filename, locate)
        salvaged = _salvage(yamltree.plain(tree))
        if salvaged is not None:
            problems += _resolve(salvaged, filename, locate, tree)[1]
        raise InventoryError(_dedupe(problems)) from None
    problems = _name_problems(tree, filename, locate)
    machines, more = _resolve(inv, filename, locate, tree)
    problems += more
    if problems:
        raise InventoryError(_dedupe(problems))
    return LoadedInventory(inventory=inv, machines=tuple(machines), filename=filename, locate=locate)


def too_large() -> str:
    return (f"the file is larger than {MAX_INVENTORY_CHARS // 2**20} MiB: netprov reads no bigger inventory "
            "(10,000 machines take under 1 MiB)")


def _salvage(data: dict) -> Inventory | None:
    """The inventory minus every entry that is invalid on its own (for a second-pass check)."""
    from netprov.core.inventory import Defaults, MachineSpec, PxeServer, Storage
    out: dict[str, Any] = {"version": 1}
    for key, model in (("storage", Storage), ("pxe_servers", PxeServer), ("machines", MachineSpec)):
        entries = data.get(key)
        if isinstance(entries, dict):
            keep = {}
            for name, body in entries.items():
                try:
                    model.model_validate(body)
                    keep[name] = body
                except ValidationError:
                    pass
            out[key] = keep
    try:
        Defaults.model_validate(data.get("defaults") or {})
        out["defaults"] = data.get("defaults") or {}
    except ValidationError:
        pass
    try:
        return Inventory.model_validate(out)
    except ValidationError:
        return None


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in sorted(problems, key=lambda p: (p.line or 0, p.col or 0, p.path, p.message)):
        key = (p.line, p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _name_problems(tree: dict, filename: str, locate: Locator) -> list[Problem]:
    problems = []
    for section in ("machines", "storage", "pxe_servers"):
        entries = tree.get(section)
        if not isinstance(entries, dict):
            continue
        for name in entries:
            name_s = str(name)
            why = (names.check_machine_name(name_s) if section == "machines"
                   else _check_ref_name(name_s))
            if why:
                line, col = locate((section, name), key=True)
                problems.append(Problem(filename, line, col, f"{section}.{name_s}", why))
    return problems


def _check_ref_name(name: str) -> str | None:
    import re
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", name):
        return "names may use only letters, digits, '_' and '-'"
    return None


class _Problems(list):
    """The problems found so far; calling it adds one located at a field path."""

    def __init__(self, filename: str, locate: Locator) -> None:
        super().__init__()
        self.filename, self.locate = filename, locate

    def __call__(self, loc: tuple, msg: str, key: bool = False) -> None:
        line, col = self.locate(loc, key=key)
        self.append(Problem(self.filename, line, col, _fmt_loc(loc), msg))


@dataclass
class _Claims:
    """Who uses each MAC, fixed ip and (storage, iSCSI target name): each must have one owner."""

    mac: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ip: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    target: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))


def _resolve(inv: Inventory, filename: str, locate: Locator,
             tree: dict) -> tuple[list[Machine], list[Problem]]:
    """Apply defaults, check references and cross-machine rules. Pure.

    A reference to an entry that exists in ``tree`` but failed validation is not
    reported again (its own error already was).
    """
    err = _Problems(filename, locate)
    written = {sec: set(map(str, tree.get(sec) or {})) if isinstance(tree.get(sec), dict) else set()
               for sec in ("storage", "pxe_servers")}
    d = inv.defaults
    for ref, table in (("storage", inv.storage), ("pxe_server", inv.pxe_servers)):
        val = getattr(d, ref)
        if val is not None and val not in table and val not in written[ref if ref == "storage" else "pxe_servers"]:
            err(("defaults", ref), f"{ref} {val!r} is not defined" + _known(table))

    machines: list[Machine] = []
    claims = _Claims()
    for name in sorted(inv.machines):
        if names.check_machine_name(name):
            continue  # already reported
        machine = _resolve_machine(inv, name, written, claims, err)
        if machine is not None:
            machines.append(machine)
    _check_claims(claims, err)
    _check_renames(inv, machines, err)
    _check_initiators(machines, err)
    return machines, list(err)


def _references(inv: Inventory, name: str, written: dict[str, set[str]],
                err: _Problems) -> tuple[str | None, str | None, bool]:
    """The storage and PXE server machine ``name`` uses, and whether both are defined (and valid)."""
    spec, d, loc = inv.machines[name], inv.defaults, ("machines", name)
    storage_name = spec.storage or d.storage or _only(inv.storage)
    pxe_name = spec.pxe_server or d.pxe_server or _only(inv.pxe_servers)
    ok = True
    for field_name, chosen, table, section in (("storage", storage_name, inv.storage, "storage"),
                                               ("pxe_server", pxe_name, inv.pxe_servers, "pxe_servers")):
        if chosen in table:
            continue
        ok = False
        if chosen in written[section]:
            continue  # defined but invalid: its own error was reported
        where = loc + ((field_name,) if getattr(spec, field_name) else ())
        err(where, f"{field_name} {chosen!r} is not defined" + _known(table) if chosen
            else f"no {field_name} given (set defaults.{field_name} or machines.<name>.{field_name})")
    return storage_name, pxe_name, ok


def _resolve_machine(inv: Inventory, name: str, written: dict[str, set[str]], claims: _Claims,
                     err: _Problems) -> Machine | None:
    """Machine ``name`` with the defaults applied, or None when a reference or its disk size is missing."""
    spec, d, loc = inv.machines[name], inv.defaults, ("machines", name)
    storage_name, pxe_name, ok = _references(inv, name, written, err)

    size = spec.disk.size if spec.disk.size is not None else d.disk.size
    sparse = spec.disk.sparse if spec.disk.sparse is not None else (d.disk.sparse or False)
    vbs = spec.disk.volblocksize or d.disk.volblocksize or DEFAULT_VOLBLOCKSIZE
    clone = spec.disk.clone_from if spec.disk.clone_from is not None else d.disk.clone_from
    if size is None and clone is None:
        err(loc + ("disk",), "disk.size is required (here or in defaults.disk), e.g. size: 64G")
        ok = False
    elif size is not None and size % VOLBLOCKSIZES[vbs]:
        err(loc + ("disk", "size") if spec.disk.size is not None else loc,
            f"disk size {size} bytes is not a multiple of volblocksize {vbs} (TrueNAS refuses it)")

    firmware = spec.firmware or d.firmware
    arch = spec.arch or d.arch
    if arch is Arch.ARM64 and firmware is Firmware.BIOS:
        err(loc + (("firmware",) if spec.firmware else ("arch",)),
            "arm64 machines boot UEFI: set firmware: uefi (or auto)")
    boot = spec.boot or d.boot
    install = spec.install or d.install
    if boot is BootAction.INSTALL and install is None:
        err(loc + ("boot",) if spec.boot else loc,
            "boot: install needs install: {kernel: ..., initrd: ...} (here or in defaults)")

    chap_spec = spec.chap if spec.chap is not None else d.chap
    chap = None
    if chap_spec is not None and chap_spec.enabled:
        chap = ChapRef(username=chap_spec.username or name, secret_env=chap_spec.secret_env,
                       secret_file=chap_spec.secret_file)

    claims.mac[spec.mac].append(name)
    ip = str(spec.ip) if spec.ip is not None else None
    if ip is not None:
        claims.ip[ip].append(name)
    if not ok or storage_name is None or pxe_name is None:
        return None
    st = inv.storage[storage_name]
    _check_placement(inv, name, storage_name, pxe_name, err)
    claims.target[(storage_name, names.target_name(name, st.target_prefix))].append(name)
    return Machine(
        name=name, mac=spec.mac, ip=ip, firmware=firmware, arch=arch, size=size or 0, sparse=sparse,
        volblocksize=vbs, clone_from=clone, chap=chap, boot=boot, install=install,
        storage=storage_name, pxe_server=pxe_name,
        initiator_iqn=spec.initiator_iqn or names.initiator_iqn(st.initiator_basename, name),
        extra=spec.extra or d.extra or Extra(), description=spec.description, renamed_from=spec.renamed_from)


def _check_placement(inv: Inventory, name: str, storage_name: str, pxe_name: str, err: _Problems) -> None:
    """Machine ``name``'s fixed ip fits its PXE server, and its zvol's names fit its storage."""
    spec, loc = inv.machines[name], ("machines", name)
    st, px = inv.storage[storage_name], inv.pxe_servers[pxe_name]
    if spec.ip is not None:
        ip = str(spec.ip)
        if px.mode is PxeMode.PROXY:
            err(loc + ("ip",), f"a fixed ip needs pxe_server {pxe_name!r} in dhcp mode; in proxy mode "
                               "the router assigns addresses (reserve it there)")
        elif spec.ip not in px.subnet:
            err(loc + ("ip",), f"{ip} is outside pxe_server {pxe_name!r}'s subnet {px.subnet}")
        elif spec.ip == px.address or (px.router is not None and spec.ip == px.router):
            err(loc + ("ip",), f"{ip} is the address of the PXE server or router")
    zpath = names.zvol_device(st.parent, name)
    if len(zpath) > st.max_zvol_path:
        err(loc, f"'{zpath}' is {len(zpath)} characters; storage {storage_name!r} allows "
                 f"{st.max_zvol_path} (FreeNAS 11.x / CORE 12: 63). Use a shorter name or parent",
            key=True)
    if len(names.zvol_path(st.parent, name)) > 200:
        err(loc, "the zvol's dataset name would exceed ZFS's 200 characters", key=True)


def _check_claims(claims: _Claims, err: _Problems) -> None:
    """A MAC, a fixed ip or an iSCSI target name used by two machines: each later one is a problem."""
    for mac, owners in claims.mac.items():
        for n in owners[1:]:
            err(("machines", n, "mac"), f"MAC {mac} is also used by {owners[0]!r}")
    for ip, owners in claims.ip.items():
        for n in owners[1:]:
            err(("machines", n, "ip"), f"ip {ip} is also used by {owners[0]!r}")
    for (st, tname), owners in claims.target.items():
        for n in owners[1:]:
            err(("machines", n), f"iSCSI target name {tname!r} on storage {st!r} is also "
                                 f"derived for {owners[0]!r}", key=True)


def _check_renames(inv: Inventory, machines: list[Machine], err: _Problems) -> None:
    """renamed_from (like Terraform's `moved`): the old name must be gone and claimed once."""
    renamed_by: dict[str, str] = {}
    for m in machines:
        old = m.renamed_from
        if old is None:
            continue
        why = names.check_machine_name(old)
        if why:
            err(("machines", m.name, "renamed_from"), why)
        elif old == m.name:
            err(("machines", m.name, "renamed_from"), "a machine cannot be renamed from its own name")
        elif old in inv.machines:
            err(("machines", m.name, "renamed_from"), f"{old!r} is still a machine in the inventory; remove it "
                                                      "(its disk becomes this machine's) or drop renamed_from")
        elif old in renamed_by:
            err(("machines", m.name, "renamed_from"), f"{renamed_by[old]!r} is already renamed from {old!r}; "
                                                      "one disk can't become two machines")
        renamed_by.setdefault(old, m.name)


def _check_initiators(machines: list[Machine], err: _Problems) -> None:
    seen_iqn: dict[str, str] = {}
    for m in machines:
        if m.initiator_iqn in seen_iqn:
            err(("machines", m.name, "initiator_iqn"),
                f"initiator IQN {m.initiator_iqn} is also used by {seen_iqn[m.initiator_iqn]!r}")
        seen_iqn.setdefault(m.initiator_iqn, m.name)


def _only(table: dict) -> str | None:
    return next(iter(table)) if len(table) == 1 else None


def _known(table: dict) -> str:
    return f" (defined: {', '.join(sorted(table))})" if table else " (none are defined)"
