"""iCalendar in and out: drafts to VEVENTs (with VTIMEZONE), calendars to Events.

Shared by every connector that speaks RFC 5545 (local ICS files, CalDAV, iTIP mail).
Reading isolates failures: each UID's components are expanded on their own, so one
malformed event becomes a ``Skipped`` entry and never hides the rest of the calendar.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from agent.core.model import Attendee, Event, EventDraft, Interval, PartStat, Person, Skipped
from agent.formats import recurrence, zones
from agent.formats.recurrence import MAX_INSTANCES, Unbounded, as_list

zones.install()

PRODID = "-//Cadence//cadence-agent//EN"
KEY_PROPERTY = "X-CADENCE-KEY"

#: PARTSTAT values as iCalendar writes them (ACCEPTED, NEEDS-ACTION, ...)
PARTSTATS = {p.value.upper(): p for p in PartStat}


def mailto(email: str) -> str:
    return f"mailto:{email}"


def address(value: Any) -> str:
    """Return the bare email address of an ORGANIZER or ATTENDEE value."""
    text = str(value).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.lower()


def vtimezone(tzid: str, around: date | None = None) -> icalendar.Timezone:
    """A VTIMEZONE for ``tzid``; with ``around``, covering only a few years around it.

    Short spans on purpose: some servers (Radicale through vobject) misread the
    1970–2038 VTIMEZONE written by default and then place instants at the wrong offset.
    """
    if around is None:
        return icalendar.Timezone.from_tzid(tzid)
    return icalendar.Timezone.from_tzid(
        tzid, first_date=date(around.year - 1, 1, 1), last_date=date(around.year + 3, 1, 1)
    )


def draft_event(
    draft: EventDraft,
    *,
    stamp: datetime,
    sequence: int = 0,
    cancelled: bool = False,
    partstats: dict[str, str] | None = None,
) -> icalendar.Event:
    """Build the VEVENT of an agent booking, times in the organizer's zone."""
    zone = ZoneInfo(draft.timezone)
    event = icalendar.Event()
    event.add("uid", draft.uid)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", draft.start.astimezone(zone))
    event.add("dtend", draft.end.astimezone(zone))
    event.add("summary", draft.title)
    if draft.description:
        event.add("description", draft.description)
    event.add(
        "organizer",
        mailto(draft.organizer.email),
        parameters={"CN": draft.organizer.name},
    )
    for person in draft.attendees:
        status = (partstats or {}).get(person.email, "NEEDS-ACTION")
        event.add(
            "attendee",
            mailto(person.email),
            parameters={
                "CN": person.name,
                "ROLE": "REQ-PARTICIPANT",
                "PARTSTAT": status,
                "RSVP": "TRUE",
            },
        )
    event.add("sequence", sequence)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add(KEY_PROPERTY, draft.key)
    if draft.series:
        event.add("X-CADENCE-SERIES", draft.series)
    if draft.stage:
        event.add("X-CADENCE-STAGE", draft.stage)
    return event


def calendar(
    events: Iterable[Any],
    tzids: Iterable[str] = (),
    method: str | None = None,
    around: date | None = None,
) -> icalendar.Calendar:
    """Wrap events in a VCALENDAR with a VTIMEZONE for every TZID named."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    if method:
        cal.add("method", method)
    for tzid in sorted(set(tzids)):
        if tzid != "UTC":
            cal.add_component(vtimezone(tzid, around))
    for event in events:
        cal.add_component(event)
    return cal


def invitation(
    draft: EventDraft, *, stamp: datetime, sequence: int = 0, method: str = "REQUEST"
) -> str:
    """Return the iTIP (RFC 5546) object for a booking: REQUEST, or CANCEL."""
    event = draft_event(draft, stamp=stamp, sequence=sequence, cancelled=method == "CANCEL")
    text: bytes = calendar(
        [event], [draft.timezone], method=method, around=draft.start.date()
    ).to_ical()
    return text.decode()


# --- reading --------------------------------------------------------------------------

#: byte-order marks, the longest first (UTF-32 LE begins with the UTF-16 LE mark)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: control characters no text calendar holds (tab, line ends and form feed are fine)
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Text:
    """A calendar file's text and how to write it back as it was (encoding and mark)."""

    text: str
    codec: str = "utf-8"
    bom: bytes = b""

    def encode(self, text: str) -> bytes:
        """Encode ``text`` as the file was; raise UnicodeEncodeError if it cannot be."""
        return self.bom + text.encode(self.codec)


def decode(data: bytes) -> Text:
    """Decode a calendar file: by its byte-order mark (UTF-8, UTF-16, UTF-32), else UTF-16
    recognised by its zero bytes, else UTF-8, else Latin-1 (Windows and old exports).

    Raise ValueError for data that is not text (binary, or broken after its mark).
    """
    found: Text | None = None
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                found = Text(data[len(bom) :].decode(codec), codec, bom)
            except UnicodeDecodeError as exc:
                raise ValueError(f"not {codec.upper()} text after its byte-order mark") from exc
            break
    if found is None and data[:4] in (b"B\x00E\x00", b"\x00B\x00E"):
        codec = "utf-16-le" if data[1] == 0 else "utf-16-be"
        try:
            found = Text(data.decode(codec), codec)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not {codec.upper()} text") from exc
    if found is None:
        try:
            found = Text(data.decode("utf-8"))
        except UnicodeDecodeError:
            found = Text(data.decode("latin-1"), "latin-1")
    if _BINARY.search(found.text):
        raise ValueError("binary data, not a text calendar")
    return found


def read_events(
    data: bytes | str, owner: Person, window: Interval
) -> tuple[list[Event], list[Skipped]]:
    """Expand every event of an iCalendar text that overlaps ``window``.

    Bytes are decoded as ``decode`` does. Raise ValueError when the data is not
    iCalendar text at all (the only exception it raises); problems inside single
    events are returned as Skipped entries, and so are recurrences that were not
    expanded or were cut (``Skipped.partial``: the first occurrences are returned).
    """
    text = decode(data).text if isinstance(data, bytes) else data
    try:
        cal = zones.parse(text)
        timezones: list[Any] = list(cal.walk("VTIMEZONE"))
        groups: dict[str, list[Any]] = {}
        for index, comp in enumerate(cal.walk("VEVENT")):
            uid = str(comp.get("UID") or f"(no UID, event #{index + 1})")
            groups.setdefault(uid, []).append(comp)
    except ValueError:
        raise
    except Exception as exc:  # the parser's other failures mean the same: not iCalendar
        raise ValueError(f"not iCalendar: {type(exc).__name__}: {exc}") from exc
    skipped: list[Skipped] = []
    events: list[Event] = []
    for uid, comps in groups.items():
        try:
            found, cut = _expand(uid, comps, timezones, owner, window)
        except Unbounded as exc:
            skipped.append(Skipped(owner.email, uid, f"recurrence not expanded: {exc}"))
            continue
        except Exception as exc:  # one bad event never hides the rest
            skipped.append(Skipped(owner.email, uid, f"{type(exc).__name__}: {exc}"))
            continue
        events.extend(found)
        if cut:
            reason = (
                f"recurrence cut: more than {MAX_INSTANCES:,} occurrences in the window, "
                f"the first {MAX_INSTANCES:,} kept"
            )
            skipped.append(Skipped(owner.email, uid, reason, partial=True))
    return events, skipped


def _expand(
    uid: str,
    comps: list[Any],
    timezones: list[Any],
    owner: Person,
    window: Interval,
) -> tuple[list[Event], bool]:
    """The events of one UID in ``window``, and whether occurrences were cut."""
    for comp in comps:
        errors = comp.errors
        if errors:
            raise ValueError(f"malformed property: {errors[0][0]}: {errors[0][1]}")
        if comp.get("DTSTART") is None:
            raise ValueError("no DTSTART")
    recurring = any(c.get("RRULE") or c.get("RDATE") or c.get("RECURRENCE-ID") for c in comps)
    cut = False
    for comp in comps:  # nothing unbounded is left for the expander to walk
        if comp.get("RECURRENCE-ID") is None:  # an override's own rule is never walked
            cut = recurrence.materialise(comp, window, owner.zone) or cut
    mini = icalendar.Calendar()
    for tz in timezones:
        mini.add_component(tz)
    for comp in comps:
        mini.add_component(comp)
    out = []
    for instance in recurring_ical_events.of(mini).between(window.start, window.end):
        out.append(_event(uid, instance, owner, recurring))
    if len(out) > MAX_INSTANCES:  # RDATEs by the million
        out.sort(key=lambda e: e.start)
        return out[:MAX_INSTANCES], True
    return out, cut


def _when(value: Any, zone: ZoneInfo) -> tuple[datetime, bool]:
    """Return an aware datetime and whether the value was a date (all-day)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: the owner's wall clock
            return value.replace(tzinfo=zone), False
        return value, False
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=zone), True
    raise ValueError(f"not a date or time: {value!r}")


def _event(uid: str, comp: Any, owner: Person, recurring: bool) -> Event:
    zone = owner.zone
    start, all_day = _when(comp.decoded("DTSTART"), zone)
    if comp.get("DTEND") is not None:
        end, _ = _when(comp.decoded("DTEND"), zone)
    elif comp.get("DURATION") is not None:
        end = start + comp.decoded("DURATION")
    else:
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    if all_day:  # whole local days, whatever the arithmetic above did across DST
        end = datetime.combine(end.date(), time(0), tzinfo=zone)
    if end < start:
        raise ValueError("ends before it starts")
    attendees = []
    for value in as_list(comp.get("ATTENDEE")):
        status = str(value.params.get("PARTSTAT", "NEEDS-ACTION")).upper()
        attendees.append(Attendee(address(value), PARTSTATS.get(status, PartStat.NEEDS_ACTION)))
    organizer = comp.get("ORGANIZER")
    busy_status = str(comp.get("X-MICROSOFT-CDO-BUSYSTATUS", "")).upper()
    transparent = (
        str(comp.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT" or busy_status == "FREE"
    )
    kind = "outOfOffice" if busy_status == "OOF" else "default"
    ident = uid
    if recurring:
        rid = comp.get("RECURRENCE-ID")
        marker = comp.decoded("RECURRENCE-ID") if rid is not None else comp.decoded("DTSTART")
        marker_dt, _ = _when(marker, zone)
        ident = f"{uid}/{marker_dt.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    key = comp.get(KEY_PROPERTY)
    return Event(
        owner=owner.email,
        id=ident,
        uid=uid,
        title=str(comp.get("SUMMARY", "")),
        start=start,
        end=end,
        all_day=all_day,
        cancelled=str(comp.get("STATUS", "")).upper() == "CANCELLED",
        transparent=transparent,
        kind=kind,
        organizer=address(organizer) if organizer else None,
        attendees=tuple(attendees),
        key=str(key) if key else None,
        sequence=int(comp.get("SEQUENCE", 0) or 0),
        description=str(comp.get("DESCRIPTION", "")),
        location=str(comp.get("LOCATION", "")),
    )
