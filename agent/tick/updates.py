"""The updated recaps that answer recorded replies (``recap: {collect_replies: true}``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agent.core.model import Relationship
from agent.rules import mailplan, planning
from agent.rules.actions import Action
from agent.tick.executor import Journal
from agent.tick.host import Host


def plan(
    engine: Host,
    journal: Journal,
    snap: planning.Snapshot,
    relationships: Iterable[Relationship],
    mine: Sequence[str] | None = None,
) -> list[Action]:
    """One update per recorded reply of these relationships that still needs one.

    A worker of the task queue plans its scheduling unit's alone (``mine``, their ids,
    the replies it reads); one process, all."""
    assert snap.mail is not None
    out: list[Action] = []
    by_id = {r.id: r for r in relationships}
    for row in engine.store.replies(status="recorded", relationships=mine):
        if not row["update_key"]:
            continue  # past recap.max_updates_per_day: recorded without one
        if snap.mail.sent(row["update_key"]):
            continue  # "uncertain": it may have gone out; never send it twice
        rel = by_id.get(row["relationship"])
        if rel is None:
            continue
        sender = engine.settings.people.get(row["sender"])
        send = mailplan.update(
            snap.mail,
            row,
            rel,
            snap.meetings.get(rel.id, []),
            snap.states.get(rel.id, []),
            sender.name if sender else row["sender"],
        )
        if send is None:
            journal.audit_quietly(
                "reply",
                f"meeting {row['meeting']} is no longer on the calendars: no update sent",
            )
            continue
        out.append(send)
    return out
