"""Regenerate sim/truenas_sim/sources.py and docs/truenas-sources.md from the real middleware source.

Needs a clone of github.com/truenas/middleware (``MW_REPO``, default: the local mirror). For every
method the simulator serves on any profile, and every method netprov's client calls, it finds the
service class that defines it (``Config.namespace`` or the class name), at the git ref of each
profile, by parsing the plugins with ``ast``: CRUD ``do_create``/``do_update``/``do_delete`` count as
``create``/``update``/``delete``, ``query``/``get_instance`` come with ``CRUDService``, ``config``
with ``ConfigService``; ``@private`` methods or private services are marked private.

    .venv/bin/python scripts/trace_truenas_sources.py
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "sim"))   # truenas_sim, also without `make venv`

import _mw_index  # noqa: E402

_mw_index.D = os.environ.get("MW_REPO", _mw_index.D)

# profile -> git ref of the release it models (the tag of its version_string where the mirror has one)
REFS = {
    "11.3": "TN-11.3-U5",          # on branch freenas/11.3-stable
    "13": "TN-13.0-U6.1",          # on branch stable/... (release/13.0-u5.1-stable is older: U5.1)
    "24.10": "TS-24.10.2.2",
    "25.04": "TS-25.04.2.4",
    "25.10": "TS-25.10.1",
    "26": "TS-26.0.0-BETA.3",       # newest 26 tag in the mirror (stable/26 moves on)
}

_API = ("api",)
_ISCSI = ("plugins/iscsi.py", "plugins/iscsi_")
#: messages a plain ``git grep -F <text>`` cannot place (or places in an unrelated file): text -> (how, fragment,
#: paths). how: "text" = the text itself, searched only under ``paths``; "fstring" = the format string's literal
#: part (``fragment``); "pydantic" = the model field or base whose validation pydantic words so (wording:
#: pydantic 2, the version the middleware's debian/control takes unpinned; tests/sim/test_sim_citations.py
#: checks each wording against the installed pydantic); "zfs" = the middleware line that passes libzfs' error
#: text through (the rest of the text is libzfs'); "own" = not in the middleware at any profile's tag
#: (``fragment`` says why the simulator has it). ``paths`` are under src/middlewared/middlewared/.
CITE: dict[str, tuple[str, str, tuple]] = {
    # pydantic (25.04+ models; the legacy profiles use the schema.py messages next to these)
    "Input should be a valid string": ("pydantic", "class AuthLegacyUsernamePassword(BaseModel)", _API),
    "Input should be <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>": ("pydantic", "mechanism: Literal[AuthMech.OTP_TOKEN]", _API),
    "found using 'mechanism' does not match any of the expected tags": (
        "pydantic", "login_data: AuthApiKeyPlain | AuthPasswordPlain", _API),
    "Input should be a valid dictionary": ("pydantic", "class CoreSetOptionsArgs(BaseModel)", _API),
    "Input should be a valid list": ("pydantic", "class CoreBulkArgs(BaseModel)", _API),
    "Input should be a valid integer": ("pydantic", "class CoreJobAbortArgs(BaseModel)", _API),
    "Assertion failed, Name can only contain lowercase alphanumeric charactersplus dot (.), dash (-), and colon (:)": (
        "pydantic", "Name can only contain lowercase alphanumeric characters", _API),
    "Input should be 32 or 128": ("pydantic", "QueuedCommands: Literal[32, 128]", _API),
    "Input should be 'START', 'STOP', 'RESTART' or 'RELOAD": (
        "pydantic", 'verb: Literal["START", "STOP", "RESTART", "RELOAD"]', _API),
    # schema.py's generic pydantic wordings: the middleware's BaseModel every argument model derives from
    "Input should be a valid": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "Input should be": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "String should have at most": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "String should have at least": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "List should have at least": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "after validation, not 0": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "Input should be greater than or equal to": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    "Input should be less than or equal to": ("pydantic", "class BaseModel(PydanticBaseModel", ("api/base",)),
    # the legacy schema (11.3 .. 24.10)
    "Should be greater or equal than": ("fstring", "greater or equal than {self.min}", ("validators.py",)),
    "Should be lower or equal than": ("own", "validators.Range says 'less or equal than {max}' (not 'lower'): the "
                                      "simulator's wording, pinned by tests; no netprov path depends on it", ()),
    "At least one item is required": ("own", "the legacy List(empty=False) says 'Empty value not allowed' "
                                      "(schema.py); the simulator's wording for a list below min_length", ()),
    # f-strings / text placed in the right file
    "contains invalid characters: #": ("fstring", "contains invalid characters: {", ("plugins/iscsi_",)),
    "Cannot specify CHAP_MUTUAL as only one such entry is permitted": (
        "fstring", "as only one such entry is permitted", _ISCSI),
    "Cannot specify CHAP_MUTUAL if peer_user has not been defined": (
        "fstring", "if peer_user has not been defined", _ISCSI),
    "This field is required if discovery method is set to CHAP or CHAP Mutual": (
        "fstring", "This field is required if discovery method is ", _ISCSI),
    "This field is required": ("text", "This field is required", _ISCSI),
    "does not exist": ("text", "does not exist", ("plugins/iscsi.py", "plugins/iscsi_/extents.py")),
    "already in use": ("text", "already in use", ("plugins/iscsi.py", "plugins/iscsi_/portal.py")),
    "The path must reside within a": ("text", "The path must reside within a", (
        "async_validators.py", "validators.py", "utils/path.py")),
    "Auth network": ("fstring", "f'Auth network", ("plugins/iscsi_",)),
    "is not a valid IPv4 or IPv6 network": ("fstring", "is not a valid IPv4 or IPv6 network", ("plugins/iscsi_",)),
    "no authentication in progress": ("fstring", ": no authentication in progress", ("plugins/auth.py",)),
    "The iscsitarget service failed to start": ("fstring", "service failed to start", ("service", "service.py")),
    "`params` must be a list": ("text", "`params` must be a list", ("main.py", "apps")),
    # libzfs' own error text behind the middleware's wrapper
    "Failed to clone snapshot: cannot create": ("zfs", "Failed to clone snapshot: {", ("plugins",)),
    "parent does not exist": ("zfs", "Failed to clone snapshot: {", ("plugins",)),
    "Failed to promote dataset: cannot promote": ("zfs", "Failed to promote dataset: {", ("plugins",)),
    "snapshot name": ("zfs", "Failed to promote dataset: {", ("plugins",)),
    "from origin conflicts with": ("zfs", "Failed to promote dataset: {", ("plugins",)),
    "dataset already exists": ("zfs", "Failed to snapshot {", ("plugins",)),
    "Failed to delete snapshot: cannot destroy": (
        "own", "KNOWN DIFFERENCE, not yet corrected: the middleware reports dependent clones as an "
        "options.defer error 'Please set this attribute as ... snapshot has dependent clones: ...' "
        "(plugins/zfs_/snapshot.py:282 @ TS-25.04.2.4) and otherwise passes libzfs' text on unprefixed", ()),
    # not in the middleware at any profile's tag
    "This dataset does not exist": ("own", "the middleware lets libzfs fail on a missing dataset; the simulator "
                                    "refuses it up front with its own text", ()),
    "Snapshot does not exist": ("own", "the middleware lets libzfs fail on a missing snapshot; the simulator "
                                "refuses it up front with its own text", ()),
    "Root dataset cannot be deleted": ("own", "pool.dataset.delete of a pool's root dataset is left to "
                                       "libzfs/pool.export in the middleware; the simulator refuses it", ()),
    "parent dataset is read-only": ("own", "ZFS refuses a child of a readonly=on dataset; the simulator words "
                                    "that refusal itself", ()),
    "Volume size should be greater than 0": ("own", "a zero volsize is refused by ZFS ('volume size cannot be "
                                             "zero'); the simulator's wording", ()),
    "Key must contain a": ("own", "a user property without ':' is refused by ZFS (invalid property name); the "
                           "simulator's wording", ()),
}


def _grep(ref: str, fragment: str, paths: tuple) -> tuple | None:
    spec = [f"src/middlewared/middlewared/{x}" for x in (paths or ("",))]
    r = subprocess.run(["git", "-C", _mw_index.D, "grep", "-n", "-F", "-m1", fragment, ref, "--", *spec],
                       capture_output=True, text=True).stdout.splitlines()
    if not r:
        return None
    _, path, line = r[0].split(":", 3)[:3]
    return (path, int(line))


def cite(ref: str, text: str) -> tuple | None:
    how, fragment, paths = CITE.get(text, ("text", text, ()))
    if how == "own":
        return None
    if text not in CITE:
        return _mw_index.grep_message(ref, text)
    return _grep(ref, fragment, paths)


def main() -> None:
    from truenas_sim import nas as nas_mod
    from netprov.adapters.truenas.backend import client_methods, version_tuple
    from truenas_sim.profiles import PROFILES

    nas_mod.SOURCE_GATE = False
    methods: set[str] = set()
    for p in PROFILES.values():
        methods |= set(nas_mod.Nas(p).methods)
    for p in PROFILES.values():
        methods |= client_methods(version_tuple(p.version_string))
    shas = {}
    table: dict[str, dict[str, tuple | None]] = {m: {} for m in sorted(methods)}
    for prof, ref in REFS.items():
        shas[prof] = subprocess.run(["git", "-C", _mw_index.D, "rev-parse", ref + "^{commit}"],
                                    capture_output=True, text=True, check=True).stdout.strip()
        idx = _mw_index.index(ref)
        for m in table:
            v = idx.get(m)
            table[m][prof] = None if v is None else (v[0], v[1], bool(v[2]))
    out = ['"""Generated by scripts/trace_truenas_sources.py: do not edit by hand.',
           "",
           "Where each method the simulator serves (or netprov calls) is defined in the real middleware,",
           "per profile: ``(path, line, private)`` at ``REFS[profile]``, or ``None`` = not in that release.",
           '"""',
           "",
           f"REFS = {REFS!r}",
           f"SHAS = {shas!r}",
           "",
           "SOURCES: dict[str, dict[str, tuple | None]] = {"]
    for m, row in table.items():
        out.append(f"    {m!r}: {{")
        for prof, v in row.items():
            out.append(f"        {prof!r}: {v!r},")
        out.append("    },")
    out.append("}")
    out += ["",
            "#: the fields each create method's argument accepts at the profile's ref (legacy ``@accepts(Dict(...))``",
            "#: children, or the pydantic ``*Create`` model's fields minus ``Excluded``); None = not extracted",
            "CREATE_FIELDS: dict[str, dict[str, list | None]] = {"]
    for m in sorted(_mw_index.LEGACY):
        out.append(f"    {m!r}: {{")
        for prof, ref in REFS.items():
            f = (_mw_index.dataset_create_fields(ref) if m == "pool.dataset.create"
                 else _mw_index.create_fields(ref, m))
            out.append(f"        {prof!r}: {sorted(f) if f is not None else None!r},")
        out.append("    },")
    out.append("}")
    sim_dir = ROOT / "sim" / "truenas_sim"
    msgs: dict[str, str] = {}
    for path in sorted(sim_dir.rglob("*.py")):
        for text, line in _mw_index.sim_messages(path.read_text()).items():
            msgs.setdefault(text, f"{path.relative_to(sim_dir)}:{line}")
    out += ["",
            "#: each validation/error message text the simulator emits (file under sim/truenas_sim/ : line) ->",
            "#: (that line, where the middleware has it at each profile's ref or None, how it is cited: text |",
            "#: fstring | pydantic | zfs | own (see CITE in the script), the fragment searched or why it is own)",
            "RULES: dict[str, tuple[str, dict[str, tuple | None], str, str]] = {"]
    for text, line in sorted(msgs.items(), key=lambda x: (x[1].partition(":")[0], int(x[1].partition(":")[2]))):
        row = {prof: cite(ref, text) for prof, ref in REFS.items()}
        how, note = CITE.get(text, ("text", ""))[:2]
        note = note if how == "own" else f"`{note}`" if how != "text" else ""
        out.append(f"    {text!r}: ({line!r}, {row!r}, {how!r}, {note!r}),")
    out.append("}")
    (ROOT / "sim/truenas_sim/sources.py").write_text("\n".join(out) + "\n")
    import importlib
    import truenas_sim.sources
    import truenas_sim.sources_doc
    importlib.reload(truenas_sim.sources)        # the tables just written
    importlib.reload(truenas_sim.sources_doc)    # ... and a render that sees them
    (ROOT / "docs/truenas-sources.md").write_text(truenas_sim.sources_doc.render())
    print(f"{len(table)} methods x {len(REFS)} profiles")


if __name__ == "__main__":
    main()
