"""Replies to recaps: read from mailers that can read, matched to the recap, recorded.

Opt-in per program (``recap: {collect_replies: true}``). A reply is matched to the
recap by In-Reply-To and References, and its checklist lines are recorded as actions
in the store, once per Message-ID. Like the sync step this reads from providers and
writes to the store before planning; the planner then plans the updated recap that
answers each recorded reply.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.connectors.base import MAX_REPLY_BYTES, IncomingMail, ReplyReader
from agent.core import faults
from agent.core.timestamps import to_store
from agent.rules import authresults, replies
from agent.settings import idp
from agent.tick.executor import ActionRecord
from agent.tick.plans import plan_path, recorded_actions

if TYPE_CHECKING:
    from agent.core.model import Relationship
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
        seen = engine.store.read_refs()
        for incoming in mailer.replies():
            if incoming.ref in seen:
                continue  # read at an earlier tick; parsing it again would change nothing
            try:
                _take(engine, journal, now, incoming, account)
            except Exception as exc:
                journal.error(f"reply {incoming.ref}", exc)


def _too_large(journal: Journal, now: datetime, engine: Host, incoming: IncomingMail) -> None:
    """Refuse a reply by its size, unparsed; remember it so it is not read again."""
    reason = f"{incoming.length} bytes, more than the {MAX_REPLY_BYTES} a reply may have"
    mid = "<" + hashlib.sha256(incoming.ref.encode()).hexdigest()[:32] + "@cadence.too-large>"
    if not journal.dry_run and not engine.store.reply(mid):
        row = {"message_id": mid, "ref": incoming.ref, "received_at": to_store(now)}
        engine.store.save_reply({**row, "status": "ignored", "reason": reason}, [], now)
    journal.audit("reply", f"reply {incoming.ref} refused unread: {reason}")


def trust(engine: Host, account: str, rel: Relationship) -> str:
    """Whose replies count for ``rel``: the program's ``recap.trust``, else ``from`` on
    the local provider (its inbox is a folder the operator fills) and ``authenticated``
    on every remote one."""
    if rel.program.recap_trust:
        return rel.program.recap_trust
    provider = getattr(engine.settings.accounts.get(account), "provider", None)
    return "from" if provider == "local" else "authenticated"


def _refusal(
    engine: Host, account: str, rel: Relationship, reply: replies.Reply, now: datetime
) -> str:
    """Why a reply from someone in ``rel`` is not recorded, or "" when it is."""
    if trust(engine, account, rel) == "authenticated":
        why = authresults.verdict(list(reply.authentication), reply.sender)
        if why:
            return f"not authenticated: {why} (recap.trust: authenticated)"
    limit = rel.program.max_reply_actions
    if len(reply.items) > limit:
        return f"{len(reply.items)} action lines, more than the {limit} a reply may record"
    since = to_store(now - timedelta(days=1))
    recent = [
        r
        for r in engine.store.replies(employee=rel.employee.email, status="recorded")
        if r["relationship"] == rel.id and (r["recorded_at"] or "") >= since
    ]
    if len(recent) >= rel.program.max_updates_per_day:
        return (
            f"{len(recent)} replies already recorded for {rel.id} in 24 hours, "
            f"the most updated recaps a day (recap.max_updates_per_day)"
        )
    return ""


def _take(
    engine: Host, journal: Journal, now: datetime, incoming: IncomingMail, account: str
) -> None:
    store, dry_run = engine.store, journal.dry_run
    if incoming.length > MAX_REPLY_BYTES:
        _too_large(journal, now, engine, incoming)
        return
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
    else:
        reason = _refusal(engine, account, rel, reply, now)
    if reason or rel is None or recap is None:
        if not dry_run:
            store.save_reply({**row, "status": "ignored", "reason": reason}, [], now)
        if recap is not None:  # mail about our recaps deserves a word in the log
            journal.audit("reply", f"reply {mid} ignored: {reason}", recap["relationship"])
        return
    path = plan_path(engine.settings, rel.employee)
    plan = (
        engine.plans.load(engine.settings, [rel.employee])[0][rel.employee.email] if path else None
    )
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
    row.update(
        meeting=recap["meeting"],
        relationship=rel.id,
        employee=rel.employee.email,
        status="recorded",
        reason="; ".join(reply.problems) or None,
        update_key=f"{recap['meeting']}:update:{hashlib.sha256(mid.encode()).hexdigest()[:12]}",
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
    journal.record(ActionRecord("reply", rel.id, None, actions_note, "done", data))


def _item_json(item: replies.Item) -> dict[str, Any]:
    return {
        "title": item.title,
        "done": item.done,
        "due": item.due.isoformat() if item.due else None,
        "goal": item.goal,
    }
