"""Between EWS items and Cadence's values: the agent's tag, times, events and the cursor."""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from exchangelib import (
    CalendarItem,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
)

from agent.core.errors import CursorExpired
from agent.core.model import Attendee as CadenceAttendee
from agent.core.model import (
    Event,
    Interval,
    PartStat,
    Person,
)

#: The agent's tag: a named MAPI property in a property set of its own.
KEY_SET = "c4a1e6f2-7d3b-4e58-9a0c-2b6f8d1e5a73"
KEY_NAME = "CadenceKey"
#: The booking reference in the body, the one part attendees' copies share.
REFERENCE = re.compile(r"\[cadence:([0-9A-Za-z_-]{8,64})\]")
CURSOR_PREFIX = "ews1:"
RESPONSES = {
    "Accept": PartStat.ACCEPTED,
    "Organizer": PartStat.ACCEPTED,
    "Decline": PartStat.DECLINED,
    "Tentative": PartStat.TENTATIVE,
}
#: What GetItem asks for (the view itself asks for ids and change keys only).
FIELDS = (
    "subject",
    "text_body",
    "start",
    "end",
    "is_all_day",
    "legacy_free_busy_status",
    "location",
    "is_cancelled",
    "organizer",
    "required_attendees",
    "optional_attendees",
    "my_response_type",
    "uid",
    "appointment_sequence_number",
    "cadence_key",
    # all-day items: exchangelib turns start/end into local dates in these zones
    "_start_timezone",
    "_end_timezone",
)


class CadenceKey(ExtendedProperty):  # type: ignore[misc]
    """The booking key on the organizer's item (PS_PUBLIC_STRINGS would clash with others)."""

    property_set_id = KEY_SET
    property_name = KEY_NAME
    property_type = "String"


if "cadence_key" not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register("cadence_key", CadenceKey)


def ews_time(dt: datetime, zone: str | EWSTimeZone = "UTC") -> EWSDateTime:
    """``dt`` as exchangelib's datetime, in ``zone`` (the zone Exchange stores it in)."""
    tz = zone if isinstance(zone, EWSTimeZone) else EWSTimeZone(zone)
    utc = dt.astimezone(UTC).replace(tzinfo=None)
    return EWSDateTime.from_datetime(utc).replace(tzinfo=EWSTimeZone("UTC")).astimezone(tz)


def aware(value: Any, zone: Any = UTC) -> datetime:
    """An aware datetime from what exchangelib returns (naive values are in ``zone``)."""
    if isinstance(value, datetime):
        dt = datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            tzinfo=value.tzinfo or zone,
        )
        return dt.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), zone).astimezone(UTC)
    raise ValueError(f"not a date or time: {value!r}")


def to_event(owner: Person, item: Any) -> Event:
    """Map one CalendarItem (or occurrence) onto an Event of ``owner``'s calendar."""
    if item.is_all_day:
        if isinstance(item.start, datetime) or not isinstance(item.start, date):
            first = aware(item.start).astimezone(owner.zone).date()
            last = aware(item.end).astimezone(owner.zone).date()
        else:  # exchangelib's dates: the first and the last day (inclusive)
            first, last = item.start, item.end + timedelta(days=1)
        start = datetime.combine(first, time(0), owner.zone)
        end = datetime.combine(max(last, first + timedelta(days=1)), time(0), owner.zone)
    else:
        start, end = aware(item.start), aware(item.end)
    organizer = item.organizer.email_address.lower() if item.organizer else None
    me = owner.email.lower()
    attendees: dict[str, CadenceAttendee] = {}
    for a in list(item.required_attendees or []) + list(item.optional_attendees or []):
        address = (a.mailbox.email_address or "").lower() if a.mailbox else ""
        if address:
            status = RESPONSES.get(a.response_type or "", PartStat.NEEDS_ACTION)
            attendees[address] = CadenceAttendee(address, status)
    if organizer and organizer != me and item.my_response_type:
        # the owner's own answer lives in MyResponseType on their copy
        attendees[me] = CadenceAttendee(
            me, RESPONSES.get(item.my_response_type, PartStat.NEEDS_ACTION)
        )
    text = item.text_body or ""
    key = item.cadence_key
    if not key and organizer and organizer != me:
        # An invitation's copy has no tag, only the body: the reference there makes both
        # copies one meeting. The agent never changes such a copy (only the organizer's).
        found = REFERENCE.search(text)
        key = found.group(1) if found else None
    busy_status = str(item.legacy_free_busy_status or "Busy")
    return Event(
        owner=owner.email,
        id=str(item.id),
        title=str(item.subject or ""),
        start=start,
        end=end,
        uid=str(item.uid or ""),
        all_day=bool(item.is_all_day),
        cancelled=bool(item.is_cancelled),
        transparent=busy_status in ("Free", "WorkingElsewhere"),
        kind="outOfOffice" if busy_status == "OOF" else "default",
        organizer=organizer,
        attendees=tuple(attendees.values()),
        key=str(key) if key else None,
        sequence=int(item.appointment_sequence_number or 0),
        description=REFERENCE.sub("", text).strip(),
        location=str(item.location or ""),
    )


def encode_cursor(anchor: Interval, items: Mapping[str, str]) -> str:
    data = {"start": anchor.start.isoformat(), "end": anchor.end.isoformat(), "items": items}
    packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return CURSOR_PREFIX + base64.urlsafe_b64encode(packed).decode()


def decode_cursor(cursor: str) -> tuple[Interval, dict[str, str]]:
    """Read a cursor written by changes(); raise CursorExpired for anything else."""
    try:
        if cursor.startswith(CURSOR_PREFIX):
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor[5:])))
            anchor = Interval(
                datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
            )
            items = data["items"]
            if isinstance(items, dict):
                return anchor, {str(k): str(v) for k, v in items.items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        pass
    raise CursorExpired(f"not an Exchange cursor: {cursor[:40]!r}")


def diff(before: Mapping[str, str], now: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(changed or new ids, removed ids) between two id → change key maps.

    Why not SyncFolderItems: it reports changes to recurring masters, not to the
    occurrences a calendar view shows, and its first sync walks the whole folder history
    512 items at a time. The view of ids and change keys costs one request too, sees
    occurrence-level changes directly, and an occurrence's change key follows its master.
    """
    changed = [i for i, ck in now.items() if before.get(i) != ck]
    removed = [i for i in before if i not in now]
    return changed, removed


def ews_zone(name: str) -> EWSTimeZone:
    try:
        return EWSTimeZone(name)
    except Exception:  # exchangelib has no Windows name for it: UTC is always known
        return EWSTimeZone("UTC")
