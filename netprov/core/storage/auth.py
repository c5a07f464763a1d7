"""The CHAP auth group of a machine (docs/adr/0005-chap-auth-tags.md).

An auth tag is netprov's when a netprov target of the machine uses it. A target's group must hold the
machine's credential alone: a second row on its tag (whoever made it), or a tag other targets use, is
drift and the machine moves to a fresh auth group; other rows are never adopted or deleted (the machine's
own row in the group it leaves is deleted when its secret's digest proves it is the machine's). An auth
row no target uses is netprov's leftover (an apply stopped between the auth create and the target
create) only when every row on its tag has the machine's CHAP user and no peer user, no other machine of
the inventory has that user, and the row's secret is readable and is the machine's (by digest): the
machine reuses one such row and the others are deleted. Any other unused auth row is left alone (it
cannot be told apart from one a person made).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netprov.core.plan import Action, Address, Change
from netprov.core.secrets import MASK
from netprov.core.storage.context import Ctx, Step
from netprov.core.storage.model import DesiredMachine
from netprov.core.storage.ownership import secret_digest
from netprov.core.storage.payloads import (
    AuthCreate,
    AuthDelete,
    AuthKept,
    AuthUpdate,
    auth_address,
    auth_tag_address,
)


@dataclass
class AuthStep(Step):
    tag: int | None = None                       # the auth tag the machine's target uses now
    rows: list[dict] = field(default_factory=list)
    own: bool = False                            # that tag holds the machine's credential alone

    def label(self, machine: str, tag: int | None) -> Address | None:
        """How a target group's auth tag is shown: the machine's auth group, or a bare tag."""
        if tag is None:
            return None
        return auth_address(machine) if tag == self.tag and self.own else auth_tag_address(tag)


def plan_auth(cx: Ctx, m: DesiredMachine, t: dict | None) -> AuthStep:
    """``t``: the machine's target as it is (None: none yet); its group's auth tag is the machine's."""
    ix = cx.ix
    tag = next((g["auth"] for g in (t.get("groups") or []) if g.get("auth") is not None), None) if t else None
    rows = ix.auths_by_tag.get(tag, []) if tag is not None else []
    shared_tag = tag is not None and any(ix.target_owner.get(tid) != m.name for tid in ix.tag_users.get(tag, [])
                                         if t is None or tid != t["id"])
    # a second credential in the target's auth group (another machine's, a race's, a person's): the
    # target would accept it. Never converged: the machine moves to a fresh auth group of its own.
    crowded = tag is not None and len(rows) > 1
    step = AuthStep(tag=tag, rows=rows, own=bool(rows) and not shared_tag and not crowded)
    if m.chap_user:
        secret = cx.d.secret(m.name)
        if step.own:
            step.deletes += _delete_leftovers(cx, m, leftover_auths(cx, m, secret))
            step.changes.append(_existing(cx, m, step, secret))
        else:
            _fresh(cx, m, step, t, shared_tag, secret)
    elif step.own:
        # CHAP turned off: delete the machine's auth group after the target stops using it
        step.deletes.append(cx.change("auth", auth_address(m.name), Action.DELETE, "CHAP is off for this machine",
                                      AuthDelete(tuple(r["id"] for r in rows), tag, rows[0].get("user")),
                                      machine=m.name, before={"user": rows[0].get("user"), "secret": MASK}))
    return step


def _no_secret(m: DesiredMachine, secret: str | None) -> str | None:
    return None if secret is not None else (
        f"CHAP secret for {m.name} is not available (set the variable or file the inventory names); "
        "apply refuses this change")


def _fresh(cx: Ctx, m: DesiredMachine, step: AuthStep, t: dict | None, shared_tag: bool,
           secret: str | None) -> None:
    """The machine needs an auth group of its own: reuse a leftover of an interrupted apply, or create one."""
    tag, rows = step.tag, step.rows
    no_secret = _no_secret(m, secret)
    if not rows:
        reason = "CHAP is on; auth group does not exist"
    elif shared_tag:
        reason = (f"drift: the target uses auth tag {tag}, which other targets use too; "
                  "the machine gets a fresh auth group of its own")
    else:
        users = ", ".join(sorted(str(r.get("user")) for r in rows))
        reason = (f"drift: auth tag {tag} of target {t['name'] if t else None} holds {len(rows)} credentials "
                  f"(users {users}), so the target accepts more than this machine's; the machine "
                  "gets a fresh auth group of its own (the other rows are never adopted)")
    leftovers = leftover_auths(cx, m, secret)
    addr = auth_address(m.name)
    if leftovers and not no_secret:
        # an earlier apply made this row and stopped before a target used it: reuse it
        row, leftovers = leftovers[0], leftovers[1:]
        step.changes.append(cx.change(
            "auth", addr, Action.UPDATE, f"adopt: reuse auth group tag {row['tag']} (CHAP user {m.chap_user}, "
            "this machine's secret) that an interrupted apply left unused; " + reason,
            AuthUpdate(row["id"], row["tag"], m.name, row.get("user"), verify_tag=row["tag"]), machine=m.name,
            before={"user": row.get("user"), "tag": row["tag"], "used": False},
            after={"user": m.chap_user, "tag": row["tag"], "used": True}))
    else:
        step.changes.append(cx.change("auth", addr, Action.CREATE, reason,
                                      AuthCreate(m.name, str(m.chap_user), needs_secret=no_secret is not None),
                                      machine=m.name, refused=no_secret))
    step.deletes += _delete_leftovers(cx, m, leftovers)
    if rows and secret is not None:
        # this machine's own credential in the group it leaves (proved by the secret's digest)
        own = [r for r in rows if r.get("user") == m.chap_user and r.get("secret") == secret_digest(secret)]
        if own and (len(own) < len(rows) or not shared_tag):
            step.deletes += [cx.change(
                "auth", auth_address(m.name, r["id"]), Action.DELETE,
                f"the machine's credential in auth tag {tag}, which it leaves",
                AuthDelete((r["id"],), tag, r.get("user"), not_used_by=(t["id"],) if t is not None else ()),
                machine=m.name, before={"user": r.get("user"), "tag": tag, "secret": MASK}) for r in own]


def _existing(cx: Ctx, m: DesiredMachine, step: AuthStep, secret: str | None) -> Change:
    """The machine's own auth group: no-op, or drift (user, mutual CHAP user, secret) fixed in place."""
    tag, rows = step.tag, step.rows
    assert tag is not None
    row = next((r for r in rows if r.get("user") == m.chap_user), rows[0])
    before = {"user": row.get("user"), "peeruser": row.get("peeruser") or ""}
    b, a = cx.diff(before, {"user": m.chap_user, "peeruser": ""}, {})
    sets = dict(a)
    notes = []
    set_secret = False
    if secret is None:
        notes.append("secret not compared (not available here)")
    elif row.get("secret") in (None, "redacted"):
        notes.append("secret not compared (the NAS redacts it)")
    elif row.get("secret") != secret_digest(secret):
        set_secret = True
        b["secret"], a["secret"] = MASK, MASK
    addr = auth_address(m.name)
    if not sets and not set_secret:
        return cx.change("auth", addr, Action.NOOP, f"CHAP user {m.chap_user} (tag {tag})"
                         + ("; " + "; ".join(notes) if notes else ""), AuthKept(row["id"], tag), machine=m.name)
    why = []
    if "user" in sets:
        why.append(f"user {before['user']} -> {m.chap_user}")
    if "peeruser" in sets:
        why.append("mutual CHAP user is set on the NAS")
    if set_secret:
        why.append("CHAP secret differs")
    payload = AuthUpdate(row["id"], tag, m.name, row.get("user"), user=sets.get("user"),
                         clear_peer="peeruser" in sets, set_secret=set_secret)
    return cx.change("auth", addr, Action.UPDATE, "drift: " + "; ".join(why), payload, machine=m.name,
                     before=b, after=a, refused=_no_secret(m, secret) if set_secret else None)


def leftover_auths(cx: Ctx, m: DesiredMachine, secret: str | None) -> list[dict]:
    """Auth rows an interrupted apply of this machine left: netprov's by the rule in the module docstring.

    A row is the machine's leftover only when no target uses its tag, its tag holds no other user's
    row, it has no peer user, its user is the machine's CHAP user (and no other machine of the
    inventory has that user) and its secret is readable and is this machine's secret (by digest).
    """
    if not m.chap_user or secret is None or cx.chap_users.get(m.chap_user, 0) > 1:
        return []
    digest = secret_digest(secret)
    return [r for r in cx.ix.unused_auths_by_user.get(m.chap_user, []) if r.get("secret") == digest]


def _delete_leftovers(cx: Ctx, m: DesiredMachine, rows: list[dict]) -> list[Change]:
    return [cx.change("auth", auth_address(m.name, r["id"]), Action.DELETE,
                      f"leftover: auth group tag {r['tag']} with this machine's CHAP user and secret, which no "
                      "target uses (an interrupted apply made it)",
                      AuthDelete((r["id"],), r["tag"], r.get("user"), unused=True), machine=m.name,
                      before={"user": r.get("user"), "tag": r["tag"], "secret": MASK})
            for r in rows]
