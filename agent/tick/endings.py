"""The reporting lines that ended lately, as the pure ``rules.handover`` needs them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from agent.core import locales
from agent.core.directory import Line
from agent.core.model import Person
from agent.core.timestamps import from_store
from agent.rules import handover, mailplan, planning
from agent.rules.actions import Action
from agent.store.directory import DirectoryRows
from agent.tick.host import Host

#: how long after a reporting line ended Cadence still cancels and mails for it
ENDED_WITHIN = timedelta(days=14)


def ended(engine: Host, now: datetime) -> list[Line]:
    """The lines that ended in the last ``ENDED_WITHIN`` (their mails are among those
    the chores plan)."""
    if engine.settings.directory is None:
        return []
    return DirectoryRows(engine.store).lines(ended_after=now - ENDED_WITHIN)


def plan(
    engine: Host, snap: planning.Snapshot, mail: mailplan.MailContext, now: datetime
) -> list[Action]:
    """Cancellations, notes and hand-overs for the lines that ended in the last
    ``ENDED_WITHIN``; nothing without a ``directory:``.

    An ended line belongs to no scheduling unit any more: its bookings are read here,
    not taken from the snapshot, which in the task queue's chores holds no unit's."""
    settings = engine.settings
    if settings.directory is None:
        return []
    rows = DirectoryRows(engine.store)
    recent = rows.lines(ended_after=now - ENDED_WITHIN)
    if not recent:
        return []
    present = frozenset(rows.entries()) | frozenset(engine.configured.people)
    people = settings.people
    found = []
    for line in recent:
        employee, leader = people.get(line.employee), people.get(line.leader)
        if employee is None or leader is None:
            continue  # erased
        ahead = [
            (b, engine.store.event_by_key(b.key))
            for b in engine.store.bookings(line.id)
            if b.status != "cancelled" and b.start is not None and b.start > now
        ]
        found.append(
            handover.Ending(
                line,
                employee,
                leader,
                people.get(line.successor or ""),
                ahead,
                last=last_held(
                    engine.store.meetings(line.id), employee, employee.language or mail.language
                ),
                first_by=(line.until or now) + settings.directory.first_within,
            )
        )
    return handover.plan(found, mail, present)


def last_held(
    rows: list[dict[str, Any]], employee: Person, language: str = locales.SOURCE
) -> str | None:
    """The last held meeting among stored ``meetings`` rows, as a phrase in ``language``
    (the hand-over's, the employee's)."""
    held = [r for r in rows if r["status"] == "held"]
    if not held:
        return None
    last = max(held, key=lambda r: r["start"])
    local = from_store(last["start"]).astimezone(employee.zone)
    what = (last["stage"] or last["series"]).replace("_", " ").capitalize()
    return f"{what}, {locales.full_day(local, language)}"
