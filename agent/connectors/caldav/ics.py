"""iCalendar and time helpers of the caldav provider: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from icalendar.cal import Component

from agent.core.errors import PermanentError
from agent.core.model import Event, EventDraft, Interval, Person
from agent.formats import ical


def draft_ics(draft: EventDraft, now: datetime) -> str:
    """Return the calendar object resource (no METHOD) for a booking.

    The VEVENT is the core's (``agent.formats.ical``); attendees get ``SCHEDULE-AGENT=CLIENT``
    because Cadence mails the invitation itself and a scheduling server (RFC 6638) must
    not send a second one.
    """
    vevent = ical.draft_event(draft, stamp=now.replace(microsecond=0))
    values = vevent.get("ATTENDEE", [])
    for attendee in values if isinstance(values, list) else [values]:
        attendee.params["SCHEDULE-AGENT"] = "CLIENT"
    cal = ical.calendar([vevent])
    add_timezones(cal, draft.start.astimezone(ZoneInfo(draft.timezone)))
    return str(cal.to_ical().decode())


def add_timezones(cal: icalendar.Calendar, around: datetime) -> None:
    """Add a VTIMEZONE for every TZID that lacks one, covering a few years around ``around``.

    The span is kept short on purpose: Radicale (through vobject 0.9.9) misreads the
    1970-2038 VTIMEZONE that icalendar writes by default and then places every instant
    at the standard-time offset; a span of a few years is read correctly.
    """
    year = around.year
    cal.add_missing_timezones(first_date=date(year - 1, 1, 1), last_date=date(year + 3, 1, 1))


#: the span searched when one event is read on its own (the agent's events are single)
EVER = Interval(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


def master_event(person: Person, data: str) -> Event:
    """Return the one event of a calendar object holding a single (non-recurring) event."""
    events, skipped = ical.read_events(data, person, EVER)
    if skipped or not events:
        reason = skipped[0].reason if skipped else "no VEVENT"
        raise PermanentError(f"unreadable event on {person.email}'s calendar: {reason}")
    return events[0]


def sequence_of(vevent: Component) -> int:
    try:
        return int(vevent.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def zone_of(vevent: Component) -> Any:
    start = vevent.decoded("DTSTART")
    if isinstance(start, datetime) and start.tzinfo is not None:
        return start.tzinfo
    return UTC


def stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def widen_to_local_days(period: Interval, person: Person, window: Interval) -> Interval:
    """Stretch an edge at 00:00 UTC to the owner's local midnight of that date."""
    start, end = period.start, period.end
    if start.time() == time():
        start = min(start, datetime.combine(start.date(), time(), person.zone))
    if end.time() == time():
        end = max(end, datetime.combine(end.date(), time(), person.zone))
    return Interval(max(start, window.start), min(end, window.end))
