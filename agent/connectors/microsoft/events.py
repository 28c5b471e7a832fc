"""Between Graph's JSON and Cadence's values: time zones, the agent's tag, events and the
delta cursor.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.errors import CursorExpired, PermanentError
from agent.core.model import (
    Attendee,
    Event,
    PartStat,
    Person,
)

try:  # the CLDR Windows → IANA table that ships with icalendar
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
except ImportError:  # pragma: no cover - older icalendar
    WINDOWS_TO_OLSON = {}


#: The agent's tag on the events it creates (a GUID of its own, a case-sensitive name).
KEY_PROPERTY = "String {8e1a6c44-3f8e-4d7a-9c1b-5a2d0ce0a11e} Name CadenceKey"
#: PidLidAppointmentSequence, which Exchange raises when the organizer changes the time.
SEQUENCE_PROPERTY = "Integer {00062002-0000-0000-C000-000000000046} Id 0x8201"
#: transactionId = prefix + booking key; delta cannot $expand the tag, so changes() reads
#: the key back from here.
TRANSACTION_PREFIX = "cadence-"
#: The booking reference written into the body, the one part attendees' copies share.
REFERENCE = re.compile(r"\[cadence:([0-9A-Za-z_-]{8,64})\]")
PARTSTAT = {
    "accepted": PartStat.ACCEPTED,
    "organizer": PartStat.ACCEPTED,
    "declined": PartStat.DECLINED,
    "tentativelyaccepted": PartStat.TENTATIVE,
}
_IANA_TO_WINDOWS = {iana: win for win, iana in WINDOWS_TO_OLSON.items()}
try:  # tzlocal (an APScheduler dependency) maps every IANA zone, not only the main ones
    from tzlocal.windows_tz import tz_win

    _IANA_TO_WINDOWS.update(tz_win)
except ImportError:  # pragma: no cover
    pass


def zone_of(name: str) -> ZoneInfo:
    """Resolve a time zone name as Graph writes it (Windows, IANA or UTC)."""
    if name in ("UTC", "tzone://Microsoft/Utc", "Coordinated Universal Time"):
        return ZoneInfo("UTC")
    return ZoneInfo(WINDOWS_TO_OLSON.get(name, name))


def parse_dtz(value: Mapping[str, Any]) -> datetime:
    """A Graph dateTimeTimeZone as an aware UTC datetime."""
    naive = datetime.fromisoformat(str(value["dateTime"])[:26].rstrip("Z"))
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=zone_of(str(value.get("timeZone") or "UTC"))).astimezone(UTC)


def format_dtz(dt: datetime, zone: str) -> dict[str, str]:
    """Local wall time in ``zone`` under its Windows name, or UTC where there is none."""
    windows = _IANA_TO_WINDOWS.get(zone)
    if zone == "UTC" or windows is None:
        return {"dateTime": dt.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}
    local = dt.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(), "timeZone": windows}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_path(person_or_email: Person | str) -> str:
    email = person_or_email if isinstance(person_or_email, str) else person_or_email.email
    return "/users/" + urllib.parse.quote(email, safe="@")


def key_filter(key: str) -> dict[str, str]:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,200}", key):
        raise PermanentError(f"not a booking key: {key!r}")
    return {
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' "
        f"and ep/value eq '{key}')",
        "$expand": _EXPAND,
    }


_EXPAND = (
    f"singleValueExtendedProperties($filter=id eq '{KEY_PROPERTY}' or id eq '{SEQUENCE_PROPERTY}')"
)


def read_cursor(since: str) -> dict[str, str]:
    """Read a cursor written by changes(); raise CursorExpired for anything else."""
    try:
        value = json.loads(since)
        if (
            isinstance(value, dict)
            and str(value.get("link", "")).startswith("https://")
            and datetime.fromisoformat(str(value["end"])).tzinfo is not None
            and datetime.fromisoformat(str(value["start"])).tzinfo is not None
        ):
            return {k: str(v) for k, v in value.items()}
    except (ValueError, KeyError):
        pass
    raise CursorExpired(f"not a Microsoft Graph cursor: {since[:40]!r}")


def to_event(owner: Person, item: Mapping[str, Any]) -> Event:
    """Map one Graph event (or occurrence) onto an Event of ``owner``'s calendar."""
    if item.get("isAllDay"):
        first = date.fromisoformat(str(item["start"]["dateTime"])[:10])
        last = date.fromisoformat(str(item["end"]["dateTime"])[:10])
        start = datetime.combine(first, time(0), owner.zone)
        end = datetime.combine(max(last, first + timedelta(days=1)), time(0), owner.zone)
    else:
        start, end = parse_dtz(item["start"]), parse_dtz(item["end"])
    props = {
        str(p.get("id", "")).lower(): p.get("value")
        for p in item.get("singleValueExtendedProperties") or []
    }
    key = props.get(KEY_PROPERTY.lower())
    tx = item.get("transactionId") or ""
    if not key and isinstance(tx, str) and tx.startswith(TRANSACTION_PREFIX):
        key = tx[len(TRANSACTION_PREFIX) :]
    body = item.get("body") or {}
    if not key and not item.get("isOrganizer", True):
        # An invitation's copy carries neither tag nor transactionId, only the body: the
        # reference there lets both copies count as one meeting. Such a copy can never be
        # moved or cancelled by the agent (only the organizer's can), so it is safe.
        found = REFERENCE.search(str(body.get("content") or ""))
        key = found.group(1) if found else None
    sequence = int(props.get(SEQUENCE_PROPERTY.lower()) or 0)
    organizer = ((item.get("organizer") or {}).get("emailAddress") or {}).get("address")
    attendees = {}
    for a in item.get("attendees") or []:
        address = ((a.get("emailAddress") or {}).get("address") or "").lower()
        if address:
            response = str((a.get("status") or {}).get("response", "none")).lower()
            attendees[address] = Attendee(address, PARTSTAT.get(response, PartStat.NEEDS_ACTION))
    if not item.get("isOrganizer", True):
        # the owner's own answer lives in responseStatus on their copy
        response = str((item.get("responseStatus") or {}).get("response", "none")).lower()
        me = owner.email.lower()
        attendees[me] = Attendee(me, PARTSTAT.get(response, PartStat.NEEDS_ACTION))
    show_as = str(item.get("showAs") or "busy")
    return Event(
        owner=owner.email,
        id=str(item["id"]),
        title=str(item.get("subject") or ""),
        start=start,
        end=end,
        uid=str(item.get("iCalUId") or ""),
        all_day=bool(item.get("isAllDay")),
        cancelled=bool(item.get("isCancelled")),
        transparent=show_as in ("free", "workingElsewhere"),
        kind="outOfOffice" if show_as == "oof" else "default",
        organizer=organizer.lower() if organizer else None,
        attendees=tuple(attendees.values()),
        key=str(key) if key else None,
        sequence=sequence,
        description=str(body.get("content") or "") if body.get("contentType") == "text" else "",
        location=str((item.get("location") or {}).get("displayName") or ""),
    )
