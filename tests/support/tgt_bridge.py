"""Serve a (simulated) TrueNAS's iSCSI configuration from the boot lab's tgtd.

netprov talks to TrueNAS (in tests: ``truenas_sim.Simulator``); the VMs of the boot lab log
in to a real tgtd. This bridge reads the NAS's iSCSI state, through a ``TrueNASClient`` or from a
dict of query results, and configures tgtd the same way, so a VM boots exactly what netprov created.

    state = nas_state(client)          # or a dict with the keys below
    report = configure(lab.tgt, state, image_dir, lun_shift=1, secrets=secrets_from_env())
    report.luns                         # [BridgedLun(iqn=..., nas_lunid=0, tgt_lun=1, image=...), ...]
    report.notes                        # what was skipped / not mapped, in words

State keys (results of, in order): ``targets`` ``iscsi.target.query``, ``extents``
``iscsi.extent.query``, ``targetextents`` ``iscsi.targetextent.query``, ``initiators``
``iscsi.initiator.query``, ``auths`` ``iscsi.auth.query``, ``global`` ``iscsi.global.config``
(shapes: the entry models, middleware TS-25.04.2.4 src/middlewared/middlewared/api/v25_04_2/iscsi_*.py).

TrueNAS semantics that ARE mapped
---------------------------------
* **Target IQN** = ``<global.basename>:<target.name>`` (what SCALE's scst.conf always writes; CORE
  uses a name that already starts with ``iqn.``/``eui.``/``naa.`` verbatim: ``core_naming=True``).
* **A target with no LUN mapped is not exported** (SCST writes it ``enabled 0``): no tgt target.
* **LUN mapping** (``iscsi.targetextent``): each mapping becomes a tgt logical unit backed by an image
  file. tgt reserves LUN 0 for its controller, so TrueNAS's ``lunid`` N becomes tgt LUN
  ``N + lun_shift``. With the default ``lun_shift=0`` a ``lunid`` 0 is an error: either create the
  mapping with ``lunid: 1`` on the NAS (valid on TrueNAS: 0-16382) so scripts and tgt agree, or pass
  ``lun_shift=1`` and make the boot scripts name LUN N+1.
* **Extents**: DISK ``zvol/<pool>/<path>`` (``+`` in the path = a space in the dataset name) and FILE
  ``path`` both become an image file (by default an 8 MiB boot disk from
  :func:`tests.support.diskimage.build_disk` printing ``NETPROV-BOOT-OK <zvol basename>``). One
  image per zvol/file, so an extent mapped to two targets (CORE) serves the same bytes.
  ``enabled: false`` extents are not exported; ``ro: true`` -> tgt ``readonly=1``. An existing
  image file is reused (never rewritten under a running VM).
* **Initiator groups** (``groups[].initiator`` -> ``iscsi.initiator``): the union of the groups'
  ``initiators`` becomes tgt name bindings. No group, a null group or an empty ``initiators`` list
  means "allow all" (TrueNAS stores that as ``ALL``) -> tgt ``--initiator-address ALL``.
* **CHAP** (``authmethod`` CHAP / CHAP_MUTUAL, ``auth`` = an ``iscsi.auth`` **tag**, not an id): every
  auth entry with that tag becomes a tgt incoming account (user/secret) bound to the target; for
  CHAP_MUTUAL the entry's ``peeruser``/``peersecret`` become the target's outgoing account.
* **Redacted secrets** (``"********"`` or missing, when the API key lacks the write role): taken from
  ``secrets`` (a user -> secret mapping, e.g. :func:`secrets_from_env`); a redacted secret with no
  replacement is an error naming the user, never a silent boot failure.

TrueNAS semantics that are NOT mapped (tgt cannot express them, or the lab does not need them)
-----------------------------------------------------------------------------------------------
* **Portals**: tgtd listens only on the lab's portal address (the server namespace's IP, port 3260);
  the NAS portals' ``listen`` IPs and ``global.listen_port`` are ignored.
* **Per-group auth**: TrueNAS applies authmethod per (portal, initiator group) pair; tgt has one
  account list per target, so if any group wants CHAP, every login to that target needs CHAP.
* **Networks** (``auth_networks`` on SCALE targets, ``auth_network`` on CORE initiator groups): tgt
  admits a login when the address ACL *or* the name ACL matches, so it cannot AND networks with
  names; networks are mapped to address ACLs only when no initiator names are given, else ignored
  (noted in the report).
* **tgt refuses an initiator outside the ACL with "target not found"** (iPXE: ``No such device``,
  ``2c0d603b``); SCST/ctld's wording may differ ("authorization failure").
* Discovery auth, iSNS, ALUA, extent ``blocksize`` other than 512, ``serial``/``naa``/``rpm``/
  ``xen``/``insecure_tpc``, ``avail_threshold``, ``iscsi_parameters``, sessions (``force`` on
  delete), the zvol's real size and contents (the image is a fresh 8 MiB boot disk, not a clone of a
  golden snapshot).

Public API: :func:`nas_state`, :func:`secrets_from_env`, :func:`plan`, :func:`configure`,
:class:`BridgedLun`, :class:`BridgeReport`, :class:`BridgeError`, :data:`REDACTED`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import diskimage
from tests.support.tgt import SyncResult, Target, Tgtd

REDACTED = "********"
QUERIES = {
    "targets": "iscsi.target.query",
    "extents": "iscsi.extent.query",
    "targetextents": "iscsi.targetextent.query",
    "initiators": "iscsi.initiator.query",
    "auths": "iscsi.auth.query",
}


class BridgeError(RuntimeError):
    pass


@dataclass(frozen=True)
class BridgedLun:
    """One NAS LUN mapping as tgt serves it."""

    target_name: str
    iqn: str
    nas_lunid: int
    tgt_lun: int
    extent_name: str
    backing: str          # "tank/netprov/m1" (zvol dataset) or the FILE extent's path
    image: Path
    disk_name: str        # the name in the disk's marker: NETPROV-BOOT-OK <disk_name>

    @property
    def uri_lun(self) -> str:
        """The LUN field of an iPXE ``iscsi:`` URI for this LUN (hex)."""
        return f"{self.tgt_lun:x}"


@dataclass
class BridgeReport:
    targets: list[Target] = field(default_factory=list)
    luns: list[BridgedLun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sync: SyncResult | None = None   # set by configure(): targets added / changed / removed / unchanged

    def lun_for(self, target_name: str) -> BridgedLun:
        for lun in self.luns:
            if lun.target_name == target_name:
                return lun
        raise KeyError(target_name)


def nas_state(client: Any) -> dict:
    """Read everything the bridge needs through a ``TrueNASClient`` (``call``/``query``)."""
    state = {key: client.call(method, [], {}) for key, method in QUERIES.items()}
    state["global"] = client.call("iscsi.global.config")
    return state


def secrets_from_env(prefix: str = "NETPROV_E2E_CHAP_", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """CHAP secrets from the environment: ``NETPROV_E2E_CHAP_<USER>=<secret>``, where ``<USER>``
    is the CHAP user upper-cased with every character outside ``[A-Z0-9]`` replaced by ``_``.
    Returns a mapping keyed by that normalised name; :func:`plan` looks users up the same way."""
    env = os.environ if environ is None else environ
    return {k[len(prefix):]: v for k, v in env.items() if k.startswith(prefix)}


def _env_key(user: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", user.upper())


def _secret(value: Any, user: str, secrets: Mapping[str, str], what: str) -> str:
    if isinstance(value, str) and value and value != REDACTED:
        return value
    for key in (user, _env_key(user)):
        if key in secrets:
            return secrets[key]
    raise BridgeError(
        f"the NAS returned the {what} of CHAP user {user!r} redacted and no replacement was given: "
        f"pass secrets={{{user!r}: ...}} or set NETPROV_E2E_CHAP_{_env_key(user)}")


def _zvol_dataset(disk: str) -> str:
    if not disk.startswith("zvol/"):
        raise BridgeError(f"DISK extent device {disk!r} does not start with zvol/")
    return disk[len("zvol/"):].replace("+", " ")


def _iqn(basename: str, name: str, core_naming: bool) -> str:
    if core_naming and name.startswith(("iqn.", "eui.", "naa.")):
        return name
    return f"{basename}:{name}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._") or "disk"


def plan(state: Mapping[str, Any], image_dir: Path | str, *, lun_shift: int = 0,
         secrets: Mapping[str, str] | None = None, core_naming: bool = False,
         disk_name: Callable[[str, dict], str] | None = None,
         make_image: Callable[[Path, str], Path] | None = None) -> BridgeReport:
    """Turn NAS state into tgt :class:`Target` values (building the images); nothing is applied.

    ``disk_name(backing, extent)`` names the machine in the disk's marker (default: the last path
    component of the zvol/file, e.g. ``tank/netprov/m1`` -> ``m1``); ``make_image(path, name)``
    builds an image (default :func:`tests.support.diskimage.build_disk`). An image file that already
    exists is reused, not rebuilt: tgtd may be serving it to a running VM (a second ``configure``
    after another ``netprov apply``), and the marker name comes from the same backing anyway."""
    secrets = dict(secrets or {})
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    make_image = make_image or (lambda p, n: diskimage.build_disk(p, n))
    disk_name = disk_name or (lambda backing, ext: backing.rstrip("/").rsplit("/", 1)[-1])
    basename = state["global"]["basename"]
    extents = {e["id"]: e for e in state["extents"]}
    initiator_groups = {g["id"]: g for g in state["initiators"]}
    auths_by_tag: dict[int, list[dict]] = {}
    for a in state["auths"]:
        auths_by_tag.setdefault(a["tag"], []).append(a)
    report = BridgeReport()
    images: dict[str, tuple[Path, str]] = {}

    for t in sorted(state["targets"], key=lambda t: t["id"]):
        name = t["name"]
        iqn = _iqn(basename, name, core_naming)
        maps = sorted((m for m in state["targetextents"] if m["target"] == t["id"]), key=lambda m: m["lunid"])
        luns: list[tuple[int, Path, bool, BridgedLun]] = []
        for m in maps:
            ext = extents.get(m["extent"])
            if ext is None:
                report.notes.append(f"target {name}: mapping {m['id']} names missing extent {m['extent']}: skipped")
                continue
            if not ext.get("enabled", True):
                report.notes.append(f"target {name}: extent {ext['name']} is disabled: not exported")
                continue
            if ext.get("blocksize", 512) != 512:
                report.notes.append(f"extent {ext['name']}: blocksize {ext['blocksize']} not mapped (tgt serves 512)")
            tgt_lun = int(m["lunid"]) + lun_shift
            if tgt_lun == 0:
                raise BridgeError(
                    f"target {name}: extent {ext['name']} is mapped at LUN 0, which tgt reserves for its "
                    "controller: map it at lunid 1 on the NAS, or bridge with lun_shift=1 and boot LUN 1")
            backing = _zvol_dataset(ext["disk"]) if ext.get("type", "DISK") == "DISK" else str(ext["path"])
            if backing not in images:
                dname = disk_name(backing, ext)
                path = image_dir / f"{_safe(backing)}.img"
                images[backing] = (path if path.exists() else make_image(path, dname), dname)
            image, dname = images[backing]
            lun = BridgedLun(name, iqn, int(m["lunid"]), tgt_lun, ext["name"], backing, image, dname)
            luns.append((tgt_lun, image, bool(ext.get("ro", False)), lun))
        if not luns:
            report.notes.append(f"target {name}: no LUN mapped: not exported (SCST writes it 'enabled 0')")
            continue

        groups = t.get("groups") or []
        names: list[str] = []
        allow_all = not groups
        networks: list[str] = list(t.get("auth_networks") or [])
        for g in groups:
            ig = initiator_groups.get(g.get("initiator")) if g.get("initiator") is not None else None
            if ig is None or not ig.get("initiators") or ig.get("initiators") == ["ALL"]:
                allow_all = True
            else:
                names += [n for n in ig["initiators"] if n not in names]
            networks += list((ig or {}).get("auth_network") or [])
        if allow_all:
            names = []
        if networks and names:
            report.notes.append(f"target {name}: networks {networks} not mapped (tgt cannot AND them with "
                                "initiator names); only the names restrict it")
        elif networks and allow_all:
            report.notes.append(f"target {name}: networks {networks} not mapped (allow-all initiators)")

        chap = mutual = None
        extra_accounts: list[tuple[str, str]] = []
        methods = {g.get("authmethod", "NONE") for g in groups}
        if methods & {"CHAP", "CHAP_MUTUAL"}:
            if "NONE" in methods:
                report.notes.append(f"target {name}: groups mix NONE and CHAP; tgt requires CHAP for all")
            tags = {g["auth"] for g in groups if g.get("authmethod") in ("CHAP", "CHAP_MUTUAL")}
            for tag in sorted(tags):
                entries = auths_by_tag.get(tag, [])
                if not entries:
                    raise BridgeError(f"target {name}: auth tag {tag} has no iscsi.auth entries")
                for a in entries:
                    cred = (a["user"], _secret(a.get("secret"), a["user"], secrets, "secret"))
                    if chap is None:
                        chap = cred
                    elif cred not in extra_accounts and cred != chap:
                        extra_accounts.append(cred)
                    if "CHAP_MUTUAL" in methods and a.get("peeruser") and mutual is None:
                        mutual = (a["peeruser"], _secret(a.get("peersecret"), a["peeruser"], secrets, "peer secret"))
        first_lun, first_image, first_ro, _ = luns[0]
        report.targets.append(Target(
            iqn=iqn, backing=first_image, lun=first_lun, initiators=tuple(names), chap=chap, mutual=mutual,
            readonly=first_ro, extra_luns=tuple((n, img, ro) for n, img, ro, _ in luns[1:]),
            extra_accounts=tuple(extra_accounts)))
        report.luns += [lun for *_, lun in luns]
    return report


def configure(tgtd: Tgtd, source: Any, image_dir: Path | str, **kw: Any) -> BridgeReport:
    """Make ``tgtd`` serve what the NAS ``source`` (a ``TrueNASClient`` or a state dict) has.

    Keyword arguments are those of :func:`plan`. Incremental, like the NAS applying a change
    (:meth:`tests.support.tgt.Tgtd.sync`): targets that did not change are left alone, so sessions of
    running machines survive a second ``netprov apply``; new targets are added, changed ones
    re-created, vanished ones removed. ``report.sync`` tells which was which."""
    state = source if isinstance(source, Mapping) else nas_state(source)
    report = plan(state, image_dir, **kw)
    report.sync = tgtd.sync(report.targets)
    return report
