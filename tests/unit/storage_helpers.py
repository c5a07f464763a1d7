"""Builders shared by the storage unit tests and the golden-case generator (no NAS involved)."""

from __future__ import annotations

import textwrap

from netprov.core.inventory_load import parse_inventory
from netprov.core.storage import ActualStorage, DesiredStorage, desired_storage, mark_comment, secret_digest

SECRET = "Sup3rSecret-001"

BASE = """\
version: 1
storage:
  nas:
    url: wss://nas.lan/api/current
    api_key_env: NAS_API_KEY
    parent: tank/netboot
    portal: 10.0.0.10:3260
{storage_extra}pxe_servers:
  pxe:
    ssh: {{host: pxe.lan}}
    mode: proxy
    interface: eth0
    address: 10.0.0.5
    subnet: 10.0.0.0/24
defaults:
  storage: nas
  pxe_server: pxe
  disk: {{size: 16G, sparse: true}}
machines:
{machines}"""


def inventory_text(machines: str, storage_extra: str = "") -> str:
    return BASE.format(machines=textwrap.indent(textwrap.dedent(machines).strip("\n"), "  ") + "\n",
                       storage_extra=textwrap.indent(textwrap.dedent(storage_extra).strip("\n"), "    ")
                       + ("\n" if storage_extra else ""))


def desired_from(text: str, secrets: dict | None = None, storage: str = "nas") -> DesiredStorage:
    loaded = parse_inventory(text, "inventory.yaml")
    if secrets is None:
        secrets = {m.name: SECRET for m in loaded.machines if m.chap}
    return desired_storage(loaded, storage, secrets)


def converged(desired: DesiredStorage, *, core: bool = False, redacted: bool = True,
              service: dict | None = None) -> ActualStorage:
    """The state a successful apply leaves (ids in machine-name order)."""
    a = ActualStorage(parent=desired.parent, global_={"basename": desired.basename,
                                                      "listen_port": None if core else desired.portal_port},
                      service=service or {"enable": True, "state": "RUNNING"})
    a.portals.append({"id": 1, "tag": 1, "listen": [{"ip": desired.portal_ip, "port": desired.portal_port}],
                      "comment": "netprov:managed"})
    tag = 0
    for i, name in enumerate(sorted(desired.machines), start=1):
        m = desired.machines[name]
        z = {"name": m.zvol, "volsize": m.volsize, "volblocksize": m.volblocksize, "sparse": m.sparse,
             "origin": m.clone_from, "comments": None, "props": {}}
        if m.clone_from:
            z["sparse"] = True
        if core:
            z["comments"] = mark_comment(m.zvol)
        else:
            z["props"] = {"netprov:managed": "true", "netprov:machine": name}
        a.zvols.append(z)
        a.extents.append({"id": i, "name": m.target, "type": "DISK", "disk": m.device, "serial": m.serial,
                          "blocksize": 512, "ro": False, "enabled": True, "comment": mark_comment(m.zvol)})
        a.initiators.append({"id": i, "initiators": [m.initiator_iqn], "comment": mark_comment(m.zvol)})
        auth = None
        if m.chap_user:
            tag += 1
            auth = tag
            secret = desired.secret(name)
            a.auths.append({"id": tag, "tag": tag, "user": m.chap_user, "peeruser": "",
                            "secret": "redacted" if redacted or not secret else secret_digest(secret)})
        a.targets.append({"id": i, "name": m.target, "alias": None, "mode": "ISCSI",
                          "groups": [{"portal": 1, "initiator": i, "authmethod": "CHAP" if auth else "NONE",
                                      "auth": auth}]})
        a.targetextents.append({"id": i, "target": i, "extent": i, "lunid": m.lun})
    return a
