"""A boot file holding a CHAP secret never shows its sha256: not in the plan's JSON, its text, its markdown,
nor the PXE server's fingerprint (pure: offline plans over a snapshot of the server).

Everything else in such a file follows from the inventory and the templates, so its hash would let anyone
who sees a plan test guesses of the secret offline. Each test computes the real hash from the rendered
``BootFile`` and searches the output for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from netprov.core.boot_render import Renderer, script_name
from netprov.core.bootfiles import Kind, Root
from netprov.core.fileplan import FilePayload, secret_digests
from netprov.core.inventory_load import parse_inventory
from netprov.core.manifest import RemoteEntry, manifest_fingerprint
from netprov.core.plan import Action
from netprov.core.secrets import MASK
from netprov.core.storage import StoragePolicy
from netprov.engine.run import make_plan, offline_world, server_roots
from netprov.plan_view import plan_json, plan_lines, plan_markdown

SECRET = "Guessable-0001"
OLD_SECRET = "Guessable-0000"
MAC, GONE_MAC = "52:54:00:00:00:01", "52:54:00:00:00:09"
INV = (Path(__file__).resolve().parent.parent / "inventories" / "base.yaml").read_text().replace(
    f"    mac: {MAC}\n", f"    mac: {MAC}\n    chap: {{secret_env: ALPHA_CHAP}}\n")


def _render(secret: str):
    loaded = parse_inventory(INV, "inv.yaml")
    return loaded, Renderer().render(loaded, {"alpha": secret})


def _script(files):
    return next(f for f in files if f.path == script_name(MAC))


def _state(held: dict[str, tuple[bytes, int]]) -> dict:
    """An offline snapshot of the PXE server holding the rendered files of OLD_SECRET plus ``held``
    (path under the TFTP root -> content, mode)."""
    loaded, files = _render(OLD_SECRET)
    entries = [{"root": f.root.value, "path": f.path, "type": "file", "sha256": f.sha256, "managed": True,
                "mode": 0o640 if f.secret else f.mode, "size": len(f.content)}
               for f in files if f.kind is not Kind.BINARY and f.path not in held]
    entries += [{"root": "tftp", "path": path, "type": "file", "sha256": hashlib.sha256(content).hexdigest(),
                 "managed": True, "mode": mode, "size": len(content)}
                for path, (content, mode) in held.items()]
    roots = {r.value: d for r, d in server_roots(loaded, "pxe").items()}
    return {"format": 1, "storage": {}, "pxe": {"pxe": {"server": "pxe", "roots": roots, "entries": entries,
                                                        "sources": {}, "owned": {}}}}


def _plan(state: dict, secret: str = SECRET):
    loaded = parse_inventory(INV, "inv.yaml")
    return make_plan(loaded, Renderer(), {"alpha": secret}, offline_world(loaded, state),
                     policy=StoragePolicy(stamp="20261207T000000Z")).plan


def _outputs(plan) -> dict[str, str]:
    return {"json": plan_json(plan), "markdown": plan_markdown(plan),
            "text": "\n".join(line for line, _ in plan_lines(plan)),
            "text -v": "\n".join(line for line, _ in plan_lines(plan, verbose=True)),
            "changes": repr([c.to_json() for c in plan.changes]), "repr": repr(plan.changes),
            "fingerprints": repr(plan.fingerprints)}


def test_a_created_secret_script_shows_no_hash_anywhere() -> None:
    _, files = _render(SECRET)
    script = _script(files)
    real = hashlib.sha256(script.content).hexdigest()
    assert script.secret and real == script.sha256
    plan = _plan({"format": 1, "storage": {}, "pxe": {}})
    change = next(c for c in plan.changes if isinstance(c.payload, FilePayload) and c.payload.path == script.path)
    assert change.action is Action.CREATE and change.payload.after_sha256 == real, "the executor keeps it"
    assert change.sides[1] == {"sha256": MASK, "mode": "0640"}
    shown = change.to_json()["payload"]
    assert shown["after_sha256"] == MASK and shown["secret"] is True
    for name, text in _outputs(plan).items():
        assert real not in text, name
    # Files without a secret keep their hashes (they are derivable anyway, and people compare them).
    hosts = next(f for f in files if f.root is Root.HOSTS)
    assert hosts.sha256 in plan_json(plan)


def test_an_updated_and_a_deleted_secret_script_show_neither_hash() -> None:
    old = _script(_render(OLD_SECRET)[1])
    gone = old.content.replace(b"52-54-00-00-00-01", b"52-54-00-00-00-09")   # an old MAC's script, 0640
    plan = _plan(_state({old.path: (old.content, 0o640), script_name(GONE_MAC): (gone, 0o640)}))
    new = _script(_render(SECRET)[1])
    hashes = {"new": new.sha256, "old": old.sha256, "gone": hashlib.sha256(gone).hexdigest()}
    by_path = {c.payload.path: c for c in plan.changes if isinstance(c.payload, FilePayload)}
    assert by_path[new.path].action is Action.UPDATE
    assert by_path[script_name(GONE_MAC)].action is Action.DELETE
    assert by_path[new.path].payload.before_sha256 == hashes["old"], "the executor re-checks the real hash"
    assert by_path[new.path].sides == ({"sha256": MASK, "mode": "0640"}, {"sha256": MASK, "mode": "0640"})
    assert by_path[script_name(GONE_MAC)].sides == ({"sha256": MASK, "mode": "0640"}, None)
    for name, text in _outputs(plan).items():
        for which, h in hashes.items():
            assert h not in text, (name, which)


def test_a_secret_left_on_the_server_keeps_its_hash_hidden_when_the_new_file_has_none() -> None:
    # The machine's CHAP is gone from the inventory: the new script holds no secret, the old one (0640) did.
    old = _script(_render(OLD_SECRET)[1])
    plain = INV.replace("    chap: {secret_env: ALPHA_CHAP}\n", "")
    loaded = parse_inventory(plain, "inv.yaml")
    plan = make_plan(loaded, Renderer(), {}, offline_world(loaded, _state({old.path: (old.content, 0o640)})),
                     policy=StoragePolicy(stamp="20261207T000000Z")).plan
    c = next(c for c in plan.changes if isinstance(c.payload, FilePayload) and c.payload.path == old.path)
    assert c.action is Action.UPDATE and not c.payload.secret and c.payload.old_secret
    assert c.sides[0] == {"sha256": MASK, "mode": "0640"}
    assert old.sha256 not in plan_json(plan)


def test_the_pxe_fingerprint_does_not_depend_on_a_secret_scripts_content() -> None:
    """A guesser knows every other value in the manifest: if the fingerprint changed with the secret, a
    published fingerprint would confirm a guess. Two servers that differ only in the secret agree."""
    old = _script(_render(OLD_SECRET)[1])
    other = _script(_render("Guessable-0002")[1])     # same length: same size
    a = _plan(_state({old.path: (old.content, 0o640)}))
    b = _plan(_state({old.path: (other.content, 0o640)}))
    assert a.fingerprints["pxe:pxe"] == b.fingerprints["pxe:pxe"]
    # ... while any file without a secret still counts by its content.
    c = _plan(_state({old.path: (old.content, 0o640), "extra.ipxe": (b"#!ipxe\n# netprov\n", 0o644)}))
    d = _plan(_state({old.path: (old.content, 0o640), "extra.ipxe": (b"#!ipxe\n# netprov \n", 0o644)}))
    assert c.fingerprints["pxe:pxe"] != d.fingerprints["pxe:pxe"]


def test_fingerprint_masks_a_file_whose_text_has_a_secret_line_whatever_its_mode() -> None:
    from netprov.core.manifest import RemoteManifest
    e = RemoteEntry(Root.TFTP, "x.ipxe", "file", "a" * 64, True, 0o644, 10)
    text = {(Root.TFTP, "x.ipxe"): b"#!ipxe\nset password Guessable-0001\n"}
    m1 = RemoteManifest("pxe", entries={(Root.TFTP, "x.ipxe"): e}, old_text=text)
    m2 = RemoteManifest("pxe", entries={(Root.TFTP, "x.ipxe"): replace(e, sha256="b" * 64, size=11)},
                        old_text=text)
    assert manifest_fingerprint(m1) == manifest_fingerprint(m2)
    plain = RemoteManifest("pxe", entries={(Root.TFTP, "x.ipxe"): replace(e, sha256="b" * 64)})
    assert manifest_fingerprint(plain) != manifest_fingerprint(replace(plain, entries={
        (Root.TFTP, "x.ipxe"): e}))


def test_keyed_digests_see_a_changed_secret_and_depend_on_the_key() -> None:
    empty = {"format": 1, "storage": {}, "pxe": {}}
    a, b = _plan(empty), _plan(empty, "Other-secret-1")
    assert [c.to_json() for c in a.changes] == [c.to_json() for c in b.changes], "the JSON alone can't tell"
    key = b"k" * 32
    da, db = secret_digests(a.changes, key), secret_digests(b.changes, key)
    assert list(da) == [f"pxe.tftp[{script_name(MAC)}]"]
    assert da != db and da == secret_digests(a.changes, key)
    assert da != secret_digests(a.changes, b"j" * 32)
    assert _script(_render(SECRET)[1]).sha256 not in repr(da)


def test_the_nas_fingerprint_does_not_depend_on_a_chap_secret() -> None:
    """A plan shows each NAS's fingerprint; the auth rows' secret digests are masked in it, so it can't be
    used to test guesses of a secret. Everything else still counts (the tag)."""
    from netprov.core.storage import ActualStorage, secret_digest, state_fingerprint

    def nas(secret: str, tag: int = 1) -> ActualStorage:
        return ActualStorage(parent="tank/nb", auths=[{"id": 1, "tag": tag, "user": "m1", "peeruser": "",
                                                       "secret": secret_digest(secret)}])
    assert state_fingerprint(nas("Guess-me-0001")) == state_fingerprint(nas("Guess-me-0002"))
    assert state_fingerprint(nas("Guess-me-0001")) != state_fingerprint(nas("Guess-me-0001", tag=2))
