"""The storage half of plan: desired iSCSI disks vs what the NAS holds -> ordered changes.

PURE: no I/O, no clock, no environment. ``desired_storage`` turns the resolved inventory into
``DesiredStorage``; the adapter reads the NAS into a normalised ``ActualStorage`` (JSON
round-trippable: offline ``--state`` plans and fingerprints use that form); ``plan_storage``
compares them under a ``StoragePolicy`` and returns ``list[Change]`` in execution order, each
change carrying a typed payload (``payloads.py``) for the executor.

Per machine netprov keeps exactly one bootable disk: a zvol ``<parent>/<machine>``, a DISK
extent on it, an initiator group admitting only the machine's initiator IQN, a CHAP auth
group when CHAP is on, a target whose one group ties portal + initiator group (+ auth) together,
and the target->extent mapping at ``storage.lun``. Shared objects (global basename, a portal,
the iSCSI service) are read, created or started only when missing, never changed otherwise.

The modules:

* ``model``: DesiredMachine, DesiredStorage, ActualStorage, StoragePolicy, the fingerprint, the net's names;
* ``ownership``: the marks (decided there, one place) and the index of what the NAS holds, by machine;
* ``payloads``: one frozen payload per change kind, and every storage address;
* ``context``: what the planners share (``Ctx``) and what each step of a chain returns (``Step``);
* one planner per kind: ``zvol`` (with the rename and the net), ``extent``, ``initiator``, ``auth``,
  ``target``, ``mapping``; ``shared`` (basename, portal, service); ``orphans`` (removed machines);
* ``planner``: the driver (``plan_storage``).

Anything without the mark is never changed or deleted. A name clash with an unmanaged object is a
refused change (``adopt=True`` takes it over explicitly). The scope of an inventory's storage is
its ``parent``: orphans are marked objects whose zvol lies directly under ``parent`` and whose
machine is no longer in the inventory.

Ordering: shared objects that machines depend on first (global check, portal), then each machine's
chain (zvol, extent, initiator, auth, target, mapping; then that machine's deletes in reverse), then
orphan machines (mapping, target, auth, initiator, extent, zvol), then the service (enable/start
last, so the creates before it cause no reloads of a stopped service). Every DELETE is independent
of the forward changes of the same run, so an engine may run all non-deletes first and the deletes
later (it does: boot files are switched in between). A zvol REPLACE is therefore one
self-contained change: apply deletes the zvol's mappings and extents itself (TrueNAS refuses that
while a session is logged in; the zvol delete's own cascade would not), then the zvol, then
creates it again; the extent and mapping CREATEs follow it in the chain.

The net (ADR 0006): a zvol DELETE or REPLACE first keeps the old disk (snapshot ``<zvol>@netprov-<stamp>``,
clone to ``<zvol>.netprov-retired-<stamp>``, promote; only then the delete) unless ``StoragePolicy.snapshot`` is
off; the stamp comes from the policy. A machine with ``renamed_from`` takes over the old name's objects: its zvol
change is an UPDATE that moves the disk (same steps, then the extents are re-pointed and the old name removed) and
the extent, initiator group and target are updated in place, never re-created.

Refusals: shrink or volblocksize change (REPLACE; needs ``allow_destroy``), removed machines
(DELETE; needs ``allow_destroy``), anything touching a target with a logged-in session (never),
name clashes with unmanaged objects (needs ``adopt``), a missing golden snapshot or parent dataset,
a CHAP secret that is not available (the change is planned; apply refuses it), a NAS basename that
differs from the inventory's (netprov never changes it). After a refused zvol, extent or target
change nothing more is planned for that machine; apply stops a machine's chain at its first refused
change. ``before``/``after`` hold only managed fields (identity + what differs);
secrets appear only as ``********``; sizes as ``16G`` strings.
"""

from netprov.core.storage.model import (
    EXTENT_BLOCKSIZE,
    KINDS,
    SERVICE,
    ActualStorage,
    DesiredMachine,
    DesiredStorage,
    StoragePolicy,
    desired_storage,
    net_names,
    pick_portal,
    retired_comment,
    state_fingerprint,
    summarize,
)
from netprov.core.storage.ownership import MARK, PROP_MACHINE, PROP_MANAGED, mark_comment, parse_mark, secret_digest
from netprov.core.storage.planner import plan_storage

__all__ = [
    "EXTENT_BLOCKSIZE", "KINDS", "MARK", "PROP_MACHINE", "PROP_MANAGED", "SERVICE", "ActualStorage",
    "DesiredMachine", "DesiredStorage", "StoragePolicy", "desired_storage", "mark_comment", "net_names",
    "parse_mark", "pick_portal", "plan_storage", "retired_comment", "secret_digest", "state_fingerprint",
    "summarize",
]
