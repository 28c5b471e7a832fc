"""Rows of the store as the model's values, and back: the conversions every read and
write of events and bookings goes through, kept apart from the queries."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.core.model import Attendee, Event, PartStat
from agent.core.records import StoredBooking
from agent.core.timestamps import from_store, to_store


def event_row(e: Event) -> dict[str, Any]:
    return {
        "owner": e.owner,
        "id": e.id,
        "uid": e.uid,
        "key": e.key,
        "title": e.title,
        "start": to_store(e.start),
        "end": to_store(e.end),
        "all_day": int(e.all_day),
        "cancelled": int(e.cancelled),
        "transparent": int(e.transparent),
        "kind": e.kind,
        "organizer": e.organizer,
        "attendees": json.dumps([[a.email, str(a.partstat)] for a in e.attendees]),
        "sequence": e.sequence,
    }


EVENT_COLUMNS = (
    'owner, id, uid, key, title, start, "end", all_day, cancelled, transparent, kind, '
    "organizer, attendees, sequence"
)


@functools.lru_cache(maxsize=8192)
def _attendees(text: str | None) -> tuple[Attendee, ...]:
    """The attendees column, parsed once per distinct value (the tuples are immutable
    and shared, which also saves memory: many events have the same attendees)."""
    return tuple(Attendee(sys.intern(a), PartStat(s)) for a, s in json.loads(text or "[]"))


def tuple_event(r: tuple[Any, ...]) -> Event:
    owner, ident, uid, key, title, start, end, all_day, cancelled, transparent = r[:10]
    kind, organizer, attendees, sequence = r[10:]
    return Event(
        owner=sys.intern(owner),
        id=ident,
        uid=uid or "",
        key=key,
        title=sys.intern(title or ""),
        start=from_store(start),
        end=from_store(end),
        all_day=bool(all_day),
        cancelled=bool(cancelled),
        transparent=bool(transparent),
        kind=sys.intern(kind or "default"),
        organizer=sys.intern(organizer) if organizer else None,
        attendees=_attendees(attendees),
        sequence=sequence or 0,
    )


def row_event(r: dict[str, Any]) -> Event:
    return Event(
        owner=r["owner"],
        id=r["id"],
        uid=r["uid"] or "",
        key=r["key"],
        title=r["title"] or "",
        start=from_store(r["start"]),
        end=from_store(r["end"]),
        all_day=bool(r["all_day"]),
        cancelled=bool(r["cancelled"]),
        transparent=bool(r["transparent"]),
        kind=r["kind"] or "default",
        organizer=r["organizer"],
        attendees=tuple(Attendee(a, PartStat(s)) for a, s in json.loads(r["attendees"] or "[]")),
        sequence=r["sequence"] or 0,
    )


def row_booking(r: dict[str, Any]) -> StoredBooking:
    def when(text: str | None) -> datetime | None:
        return from_store(text) if text else None

    return StoredBooking(
        key=r["key"],
        relationship=r["relationship"],
        series=r["series"],
        status=r["status"],
        stage=r["stage"],
        due=when(r["due"]),
        start=when(r["start"]),
        end=when(r["end"]),
        organizer=r["organizer"],
        event_id=r["event_id"],
        reason=r["reason"],
        moves=r["moves"] or 0,
        created_at=when(r["created_at"]),
        updated_at=when(r["updated_at"]),
    )


def among(sql: str, column: str, values: Sequence[str] | None) -> tuple[str, list[Any]]:
    """``sql`` (ending in a condition) narrowed to rows whose ``column`` is one of
    ``values``; None leaves it as it is. A worker's unit names its own few rows."""
    if values is None:
        return sql, []
    if not values:
        return sql + " AND 1 = 0", []
    return sql + f" AND {column} IN ({', '.join('?' for _ in values)})", list(values)
