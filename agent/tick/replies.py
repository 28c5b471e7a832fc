"""Replies to recaps: read from mailers that can read, matched to the recap, recorded.

Opt-in per program (``recap: {collect_replies: true}``). A reply is matched to the
recap by In-Reply-To and References, and its checklist lines are recorded as actions
in the store, once per Message-ID. Like the sync step this reads from providers and
writes to the store before planning; the planner then plans the updated recap that
answers each recorded reply.

A reply is refused, with an audit row giving the reason, when its sender is not
authenticated (``recap.trust``), when it is larger than ``recap.max_reply_size`` or
holds more than ``recap.max_actions`` action lines; past
``recap.max_updates_per_day`` its actions are recorded without an updated recap.
How far each inbox was read is kept in the store after every account's replies are
recorded, so a restart goes on from there.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agent.connectors.base import IncomingMail, ReplyReader
from agent.core import faults
from agent.core.timestamps import to_store
from agent.rules import intake, replies
from agent.settings import idp
from agent.tick.executor import ActionRecord
from agent.tick.plans import recorded_actions

if TYPE_CHECKING:
    from datetime import datetime

    from agent.tick.executor import Journal
    from agent.tick.host import Host


def collect(engine: Host, journal: Journal, now: datetime) -> None:
    """Read new replies to recaps and record their actions."""
    for account in engine.settings.reply_accounts:
        _, mailer = engine.connection(account)
        if not isinstance(mailer, ReplyReader):
            journal.audit_quietly(
                "replies", f"account {account} cannot read replies to recaps yet; none collected"
            )
            continue
        provider = str(getattr(engine.settings.accounts[account], "provider", ""))
        seen = engine.store.read_refs()
        if not mailer.marks():  # a new reader: go on from where the last run stopped
            mailer.resume(engine.store.reply_marks(account), seen)
        failed = False
        for incoming in mailer.replies():
            if incoming.ref in seen:
                continue  # read at an earlier tick; parsing it again would change nothing
            try:
                _take(engine, journal, now, incoming, provider)
            except Exception as exc:
                failed = True
                journal.error(f"reply {incoming.ref}", exc)
        if not failed and not journal.dry_run:
            # only once every reply read is in the store: a reply that failed is read
            # again after a restart (the reader itself does not return it again)
            engine.store.save_reply_marks(account, mailer.marks(), now)


def _take(
    engine: Host, journal: Journal, now: datetime, incoming: IncomingMail, provider: str
) -> None:
    store, dry_run = engine.store, journal.dry_run
    reply = replies.parse(incoming.raw)
    mid = reply.message_id or (
        "<" + hashlib.sha256(incoming.raw).hexdigest()[:32] + "@cadence.unidentified>"
    )
    if store.reply(mid):
        return  # read before: each reply counts once
    row: dict[str, Any] = {
        "message_id": mid,
        "ref": incoming.ref,
        "sender": reply.sender,
        "received_at": to_store(reply.date) if reply.date else to_store(now),
        "items": json.dumps([_item_json(i) for i in reply.items]),
        "notes": reply.notes,
    }
    recap = None
    for parent in reply.parents:
        found = store.outbox_by_message_id(parent)
        if found and found["kind"] in ("recap", "update"):
            recap = found
            break
    rel = next(
        (r for r in engine.settings.relationships if recap and r.id == recap["relationship"]),
        None,
    )
    reason = ""
    if recap is None or rel is None:
        reason = "not a reply to a recap"
    elif not rel.program.collect_replies:
        reason = f"program {rel.program.name} does not collect replies"
    elif reply.sender not in (rel.employee.email, rel.partner.email):
        reason = f"{reply.sender or 'an unknown sender'} is not in {rel.id}"
    if reason or rel is None or recap is None:
        if not dry_run:
            store.save_reply({**row, "status": "ignored", "reason": reason}, [], now)
        if recap is not None:  # mail about our recaps deserves a word in the log
            journal.audit("reply", f"reply {mid} ignored: {reason}", recap["relationship"])
        return
    rules = rel.program.intake
    refusal = None
    if intake.trust_for(rules, provider) == "authenticated":
        refusal = intake.authenticity(
            reply.from_addresses, reply.authentication, rules.authserv_ids
        )
    refusal = (
        refusal
        or intake.size_refusal(incoming.length, rules)
        or (None if incoming.whole else "the reply was not read whole; not recorded")
        or intake.actions_refusal(len(reply.items), rules)
    )
    if refusal:
        about = {"message_id": mid, "from": reply.sender, "ref": incoming.ref}
        if not dry_run:
            refused = {**row, "items": "[]", "notes": "", "status": "refused", "reason": refusal}
            store.save_reply(
                {**refused, "meeting": recap["meeting"], "relationship": rel.id}, [], now
            )
        journal.audit("reply", f"reply {mid} refused: {refusal}", rel.id, None, about)
        return
    plan = engine.plans.load(engine.settings, [rel.employee], store)[0][rel.employee.email]
    actions_now = replies.merge(plan, recorded_actions(store, rel.employee.email))
    known = {idp.normalize(a.title): a for a in actions_now.all}
    actions = [
        {
            "employee": rel.employee.email,
            "norm": idp.normalize(item.title),
            "title": item.title,
            "goal": replies.goal_for(item, plan, known),
            "due": item.due.isoformat() if item.due else None,
            "status": "done" if item.done else "open",
            "relationship": rel.id,
            "meeting": recap["meeting"],
            "source": mid,
        }
        for item in reply.items
    ]
    if not actions:
        actions_note = "no action lines"
    else:
        actions_note = ", ".join(
            f"{'done' if a['status'] == 'done' else 'open'}: {a['title']}" for a in actions
        )
    held = intake.update_refusal(store.updates_since(rel.id, now - timedelta(days=1)), rules)
    row.update(
        meeting=recap["meeting"],
        relationship=rel.id,
        employee=rel.employee.email,
        status="recorded",
        reason="; ".join([*reply.problems, *([held] if held else [])]) or None,
        update_key=None
        if held
        else f"{recap['meeting']}:update:{hashlib.sha256(mid.encode()).hexdigest()[:12]}",
    )
    data = {"message_id": mid, "from": reply.sender, "actions": len(actions)}
    if dry_run:
        journal.record(ActionRecord("reply", rel.id, None, actions_note, "planned", data))
        return
    store.save_reply(row, actions, now)
    faults.point("reply:recorded")  # recorded, its updated recap not yet sent
    journal.audit("reply", f"reply from {reply.sender}: {actions_note}", rel.id, None, data)
    for problem in reply.problems:
        journal.audit("reply", f"reply {mid}: {problem}", rel.id)
    if held:
        journal.audit("reply", f"reply {mid}: no updated recap: {held}", rel.id, None, data)
    journal.record(ActionRecord("reply", rel.id, None, actions_note, "done", data))


def _item_json(item: replies.Item) -> dict[str, Any]:
    return {
        "title": item.title,
        "done": item.done,
        "due": item.due.isoformat() if item.due else None,
        "goal": item.goal,
    }
