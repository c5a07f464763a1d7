"""``--target``: a targeted plan changes only the targeted machines, plus the shared objects they
need (marked ``shared``). Pure and offline: the planner runs on a ``state`` snapshot as
``netprov state pull`` writes it (the NAS as a successful apply left it, the PXE server's
manifest with its host line files' text).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprov.core import fileplan as fp
from netprov.core.bootfiles import Kind, Root
from netprov.core.inventory_load import parse_inventory
from netprov.core.plan import Action
from netprov.core.boot_render import Renderer, host_file_name, script_name
from netprov.core.storage import StoragePolicy, desired_storage
from netprov.engine.run import World, make_plan, manifest_from_json, manifest_to_json, server_roots
from tests.unit.storage_helpers import converged

SECRET = "Targ3t-secret-01"
RENDERER = Renderer()

HEAD = """\
version: 1
storage:
  nas:
    url: wss://nas.lan/api/current
    api_key_env: NAS_API_KEY
    parent: tank/netboot
    portal: 10.0.0.10:3260
pxe_servers:
  pxe:
    ssh: {host: pxe.lan, user: root}
    mode: dhcp
    interface: eth0
    address: 10.0.0.5
    subnet: 10.0.0.0/24
    range: {start: 10.0.0.100, end: 10.0.0.200}
    ipxe: {source: /usr/lib/ipxe}
defaults:
  storage: nas
  pxe_server: pxe
  disk: {size: 16G, sparse: true}
machines:
"""


def inventory(machines: dict[str, dict]) -> str:
    """``machines``: name -> {mac, size, firmware, arch, chap} (all but mac optional)."""
    lines = []
    for name, m in sorted(machines.items()):
        fields = [f'mac: "{m["mac"]}"']
        if m.get("size"):
            fields.append(f"disk: {{size: {m['size']}}}")
        if m.get("firmware"):
            fields.append(f"firmware: {m['firmware']}")
        if m.get("arch"):
            fields.append(f"arch: {m['arch']}")
        if m.get("chap"):
            fields.append(f"chap: {{secret_env: SECRET_{name.upper()}}}")
        lines.append(f"  {name}: {{{', '.join(fields)}}}\n")
    return HEAD + ("".join(lines) if lines else "  {}\n")


def load(text: str):
    return parse_inventory(text, "inventory.yaml")


def secrets_of(loaded) -> dict[str, str]:
    return {m.name: SECRET for m in loaded.machines if m.chap}


def state_after_apply(text: str) -> dict:
    """The snapshot `netprov state pull` takes after `netprov apply` of ``text`` converged."""
    loaded = load(text)
    secrets = secrets_of(loaded)
    files = RENDERER.render(loaded, secrets)
    entries, host_files = [], {}
    for f in files:
        binary = f.kind is Kind.BINARY
        entries.append({"root": f.root.value, "path": f.path, "type": "file", "managed": True,
                        "sha256": "binsha" if binary else f.sha256, "mode": fp.effective_mode(f),
                        "size": len(f.content)})
        if f.root is Root.HOSTS:
            host_files[f.path] = f.content.decode()
    pxe = {"server": "pxe", "roots": {r.value: d for r, d in server_roots(loaded, "pxe").items()},
           "entries": entries, "owned": {"tftp": sorted(f.path for f in files if f.kind is Kind.BINARY)},
           "sources": {f"/usr/lib/ipxe/{b}": "binsha" for b in ("undionly.kpxe", "snponly.efi",
                                                                "snponly-arm64.efi")},
           "host_files": host_files}
    storage = converged(desired_storage(loaded, "nas", secrets), redacted=False).to_json()
    return {"format": 1, "storage": {"nas": storage}, "pxe": {"pxe": pxe}}


def plan(text: str, state: dict, targets=None, allow_destroy: bool = False):
    loaded = load(text)
    return make_plan(loaded, RENDERER, secrets_of(loaded), World(offline_state=state),
                     policy=StoragePolicy(allow_destroy=allow_destroy,
                                          machines=frozenset(targets) if targets is not None else None)).plan


def changed(p) -> dict[str, object]:
    return {str(c.address): c for c in p.changes if c.is_change}


# --- the issue's reproduction, offline --------------------------------------------------------

DEMO = {"israfel": {"mac": "52:54:00:12:34:56", "size": "120G", "chap": True},
        "sachiel": {"mac": "52:54:00:ab:cd:ef", "firmware": "uefi"},
        "ramiel": {"mac": "52:54:00:aa:bb:01"}}
EDITED = {"israfel": DEMO["israfel"], "sachiel": {**DEMO["sachiel"], "mac": "52:54:00:ab:cd:00"}}


def test_issue_reproduction_target_israfel_plans_nothing_of_the_others() -> None:
    state = state_after_apply(inventory(DEMO))
    full = changed(plan(inventory(EDITED), state))
    assert {"pxe.hosts[ramiel.conf]", "pxe.tftp[52-54-00-aa-bb-01.ipxe]",
            "pxe.tftp[52-54-00-ab-cd-ef.ipxe]"} <= set(full)     # the full plan does clean up
    assert not changed(plan(inventory(EDITED), state, {"israfel"}))


def test_target_machine_whose_mac_changed_takes_its_old_script_with_it() -> None:
    state = state_after_apply(inventory(DEMO))
    p = changed(plan(inventory(EDITED), state, {"sachiel"}))
    assert {a: c.action for a, c in p.items()} == {
        "pxe.hosts[sachiel.conf]": Action.UPDATE, "pxe.tftp[52-54-00-ab-cd-00.ipxe]": Action.CREATE,
        "pxe.tftp[52-54-00-ab-cd-ef.ipxe]": Action.DELETE, "dnsmasq[pxe]": Action.UPDATE}
    assert p["pxe.tftp[52-54-00-ab-cd-ef.ipxe]"].machine == "sachiel"
    assert p["dnsmasq[pxe]"].shared and p["dnsmasq[pxe]"].after == {"activation": "sighup"}
    assert "planned for targeted sachiel" in p["dnsmasq[pxe]"].reason


def test_target_removed_machine_means_its_disk_and_its_files_only() -> None:
    state = state_after_apply(inventory(DEMO))
    p = changed(plan(inventory(EDITED), state, {"ramiel"}, allow_destroy=True))
    files = {a for a, c in p.items() if c.system == "pxe:pxe" and c.kind == "file"}
    assert files == {"pxe.hosts[ramiel.conf]", "pxe.tftp[52-54-00-aa-bb-01.ipxe]"}
    assert all(c.machine == "ramiel" for a, c in p.items() if a != "dnsmasq[pxe]")
    assert "zvol[tank/netboot/ramiel]" in p and not any(c.shared for c in p.values() if c.kind != "service")
    # without --allow-destroy the disk's deletion is refused, the files' is not
    p = changed(plan(inventory(EDITED), state, {"ramiel"}))
    assert p["zvol[tank/netboot/ramiel]"].refused and not p["pxe.hosts[ramiel.conf]"].refused


def test_shared_objects_are_marked_and_say_why() -> None:
    p = plan(inventory(EDITED), {"format": 1}, {"sachiel"})       # a fresh NAS and an empty PXE server
    shared = {str(c.address): c for c in p.changes if c.shared and c.is_change}
    assert {"pxe.dnsmasq[netprov.conf]", "pxe.tftp[boot.ipxe]", "pxe.tftp[undionly.kpxe]",
            "portal[0.0.0.0:3260]", "service[iscsitarget]", "dnsmasq[pxe]"} <= set(shared)
    assert all("planned for targeted sachiel" in c.reason and c.machine is None for c in shared.values())
    assert {c.machine for c in p.changes if c.is_change and not c.shared} == {"sachiel"}
    assert all(c.to_json()["shared"] is True for c in shared.values())
    # targeting only a removed machine needs no shared object at all
    p = plan(inventory(EDITED), {"format": 1}, {"ramiel"}, allow_destroy=True)
    assert not [c for c in p.changes if c.is_change]


def test_shared_change_only_when_a_targeted_machine_needs_it() -> None:
    x86 = {"a": {"mac": "52:54:00:00:00:01"}}
    arm = {"b": {"mac": "52:54:00:00:00:02", "firmware": "uefi", "arch": "arm64"}}
    shared_changes = lambda p: {a for a, c in changed(p).items() if c.shared}  # noqa: E731
    # an untargeted ARM64 machine arrives: a's plan needs neither the ARM64 lines nor the ARM64 binary
    state = state_after_apply(inventory(x86))
    assert not changed(plan(inventory({**x86, **arm}), state, {"a"}))
    # targeted, it does
    assert shared_changes(plan(inventory({**x86, **arm}), state, {"b"})) == {
        "pxe.dnsmasq[netprov.conf]", "pxe.tftp[snponly-arm64.efi]", "dnsmasq[pxe]"}
    # the last ARM64 machine leaves: a's plan keeps the ARM64 lines (b's files and lines stay as they are)
    state = state_after_apply(inventory({**x86, **arm}))
    assert not changed(plan(inventory(x86), state, {"a"}))
    assert "pxe.dnsmasq[netprov.conf]" in changed(plan(inventory(x86), state, None))
    # a change of the server's own settings is every machine's: planned, shared, and says why
    p = changed(plan(inventory(x86).replace("10.0.0.200", "10.0.0.199"), state, {"a"}))
    assert set(p) == {"pxe.dnsmasq[netprov.conf]", "dnsmasq[pxe]"} and all(c.shared for c in p.values())
    assert p["dnsmasq[pxe]"].after == {"activation": "restart"}
    assert p["pxe.dnsmasq[netprov.conf]"].reason.endswith("shared by every machine on pxe, planned for targeted a")


def test_target_file_the_server_ties_to_an_untargeted_machine_is_refused() -> None:
    # a and b swap MACs: a's new script is, on the server, still b's
    before = {"a": {"mac": "52:54:00:00:00:01"}, "b": {"mac": "52:54:00:00:00:02"}}
    after = {"a": {"mac": "52:54:00:00:00:02"}, "b": {"mac": "52:54:00:00:00:01"}}
    state = state_after_apply(inventory(before))
    p = changed(plan(inventory(after), state, {"a"}))
    script = p["pxe.tftp[52-54-00-00-00-02.ipxe]"]
    assert script.refused and "b" in script.refused and "--target" in script.refused
    assert "pxe.tftp[52-54-00-00-00-01.ipxe]" not in p          # b's new script, a's old one: left alone
    both = changed(plan(inventory(after), state, {"a", "b"}))
    assert not [c for c in both.values() if c.refused]


def test_failed_machine_keeps_its_old_mac_script() -> None:
    from netprov.engine.run import leave_alone
    state = state_after_apply(inventory(DEMO))
    loaded = load(inventory(EDITED))
    files = [f for f in RENDERER.render(loaded, secrets_of(loaded))]
    fplan = fp.plan_files(files, manifest_from_json(state["pxe"]["pxe"]))
    held = leave_alone(fplan, ["sachiel"])
    touched = {str(c.address) for c in held.pending}
    assert not {"pxe.hosts[sachiel.conf]", "pxe.tftp[52-54-00-ab-cd-00.ipxe]",
                "pxe.tftp[52-54-00-ab-cd-ef.ipxe]"} & touched
    assert "pxe.hosts[ramiel.conf]" in touched


def test_snapshot_keeps_host_files_out_of_the_fingerprint() -> None:
    from netprov.engine.run import manifest_fingerprint
    state = state_after_apply(inventory(DEMO))
    m = manifest_from_json(state["pxe"]["pxe"])
    assert manifest_to_json(m)["host_files"] == state["pxe"]["pxe"]["host_files"]
    bare = manifest_from_json({k: v for k, v in state["pxe"]["pxe"].items() if k != "host_files"})
    assert manifest_fingerprint(m) == manifest_fingerprint(bare)


# --- the property -------------------------------------------------------------------------------

NAMES = ("m0", "m1", "m2", "m3", "m4")
MACS = tuple(f"52:54:00:00:00:{i:02x}" for i in range(1, 9))
SHARED_PATHS = {"netprov.conf", "boot.ipxe", "netprov-embedded.ipxe", "undionly.kpxe", "snponly.efi",
                "snponly-arm64.efi"}


@st.composite
def scenarios(draw):
    """(before, after, targets, allow_destroy): a few machines, random edits, a non-empty target set."""
    machine = st.fixed_dictionaries({"size": st.sampled_from([None, "8G", "32G"]),
                                     "firmware": st.sampled_from([None, "uefi"]),
                                     "arch": st.sampled_from([None, None, "arm64"]),
                                     "chap": st.booleans()})
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    macs = draw(st.permutations(MACS))
    before = {n: {**draw(machine), "mac": macs[i]} for i, n in enumerate(names)}
    for m in before.values():
        if m["arch"]:
            m["firmware"] = "uefi"
    after: dict[str, dict] = {}
    for n, m in before.items():
        edit = draw(st.sampled_from(["keep", "remove", "mac", "size", "firmware", "arch", "chap"]))
        if edit == "remove":
            continue
        m = dict(m)
        if edit == "mac":
            m["mac"] = None                          # assigned below, unique
        elif edit == "size":
            m["size"] = draw(st.sampled_from(["8G", "32G", "64G"]))
        elif edit == "firmware":
            m["firmware"] = None if m["firmware"] else "uefi"
            m["arch"] = None
        elif edit == "arch":
            m["arch"] = None if m["arch"] else "arm64"
            m["firmware"] = "uefi"
        elif edit == "chap":
            m["chap"] = not m["chap"]
        after[n] = m
    for n in draw(st.lists(st.sampled_from([x for x in NAMES if x not in before] or ["m9"]), max_size=2,
                           unique=True)):
        after[n] = {**draw(machine), "mac": None}
    for m in after.values():
        if m["arch"]:
            m["firmware"] = "uefi"
    used = {m["mac"] for m in after.values() if m["mac"]}
    free = [m for m in draw(st.permutations(MACS)) if m not in used]
    for m in after.values():
        if m["mac"] is None:
            m["mac"] = free.pop()
    everyone = sorted(set(before) | set(after))
    targets = frozenset(draw(st.lists(st.sampled_from(everyone), min_size=1, unique=True)))
    return before, after, targets, draw(st.booleans())


def owners(machines: dict[str, dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for n, m in machines.items():
        out.setdefault(host_file_name(n), set()).add(n)
        out.setdefault(script_name(m["mac"]), set()).add(n)
    return out


def _path(address: str) -> str:
    return address.split("[", 1)[1].rstrip("]")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_targeted_plan_changes_only_targeted_machines_and_shared_objects(scenario) -> None:
    before, after, targets, allow_destroy = scenario
    state = state_after_apply(inventory(before))
    text = inventory(after)
    p = plan(text, state, targets, allow_destroy)
    tied_before, tied_after = owners(before), owners(after)
    served = targets & set(after)
    # No file of a machine that is not targeted (one removed from the inventory, or the script of an old
    # MAC, included) is written or deleted; a file the server also ties to one is shown only as refused.
    for c in p.changes:
        if c.is_change and c.kind == "file" and _path(str(c.address)) not in SHARED_PATHS:
            involved = tied_before.get(_path(str(c.address)), set()) | tied_after.get(_path(str(c.address)), set())
            assert involved and (involved <= targets or c.refused), (c, involved)
    for c in p.changes:
        if not c.is_change:
            continue
        if c.shared:
            # a shared object, only when a targeted machine in the inventory needs it (or, for dnsmasq's
            # reload, when a targeted machine's host line changes); never removed
            own = [x for x in p.changes if x.system == c.system and x.is_change and not x.shared]
            assert served or (str(c.address).startswith("dnsmasq[") and own), c
            assert c.action is not Action.DELETE and c.machine is None, c
            assert "planned for targeted" in c.reason, c
            if c.kind == "file":
                assert _path(str(c.address)) in SHARED_PATHS, c
            continue
        # every other change is a targeted machine's, and says so
        assert c.machine in targets, c
        if c.kind == "file":
            path = _path(str(c.address))
            involved = tied_before.get(path, set()) | tied_after.get(path, set())
            assert c.machine in involved, c
            if not involved <= targets:
                assert c.refused and "not targeted" in c.reason, c
    # Targeting everyone is the full plan as far as machines go; its shared changes are some of the full
    # plan's (a shared file no longer wanted, or ARM64 support no machine needs any more, is left for a
    # plan without --target to clean up).
    everyone = frozenset(before) | frozenset(after)
    full = {(str(c.address), c.action, c.shared) for c in plan(text, state, None, allow_destroy).changes if c.is_change}
    every = {(str(c.address), c.action, c.shared) for c in plan(text, state, everyone, allow_destroy).changes
             if c.is_change}
    assert {x for x in every if not x[2]} == {x for x in full if not x[2]}
    assert {x for x in every if x[2] and not x[0].startswith("dnsmasq[")} <= full
