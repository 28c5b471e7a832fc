"""Calendar v3: sync by sync token, free/busy, and the agent's own events.

The agent's events carry a private extended property (what ``find`` filters on) and a
shared one, so that attendees' copies are known as the same booking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any, Literal
from zoneinfo import ZoneInfo

from agent.connectors.base import Busy, ensure_own
from agent.connectors.google import push
from agent.connectors.google.client import Client, GoogleFailure
from agent.connectors.tools import PushBy, pieces
from agent.core.errors import PermanentError
from agent.core.model import (
    Attendee,
    Changes,
    Event,
    EventDraft,
    Interval,
    PartStat,
    Person,
    Skipped,
    SyncToken,
)

#: the extended property that marks the agent's events (keys ≤ 44 characters): private on
#: the organizer's copy (what find() filters on and what makes an event the agent's own),
#: shared so that attendees' copies are known as the same booking
TAG = "cadenceKey"
TAG_SERIES = "cadenceSeries"
FREEBUSY_BATCH = 50  # calendarExpansionMax
FREEBUSY_SPAN = timedelta(days=90)  # longer free/busy ranges are refused
PAGE_SIZE = 2500
#: the partial response changes() asks for: what to_event() reads, and the paging tokens
LIST_FIELDS = (
    "nextPageToken,nextSyncToken,items(id,status,summary,description,location,start,end,"
    "eventType,attendees(email,responseStatus),extendedProperties,organizer(email),"
    "iCalUID,transparency,sequence)"
)
PARTSTAT = {
    "accepted": PartStat.ACCEPTED,
    "declined": PartStat.DECLINED,
    "tentative": PartStat.TENTATIVE,
    "needsAction": PartStat.NEEDS_ACTION,
}


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: dict[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    if "dateTime" in value:
        parsed = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(value.get("timeZone") or "UTC"))
        return parsed, False
    return datetime.combine(date.fromisoformat(value["date"]), clock(), zone), True


def to_event(person: Person, item: dict[str, Any]) -> Event:
    """Map a Calendar v3 event resource to an Event on ``person``'s calendar."""
    start, all_day = _parse_time(item["start"], person.zone)
    end, _ = _parse_time(item["end"], person.zone)
    kind = item.get("eventType", "default")
    attendees = tuple(
        Attendee(
            a["email"].lower(), PARTSTAT.get(a.get("responseStatus", ""), PartStat.NEEDS_ACTION)
        )
        for a in item.get("attendees", [])
        if a.get("email")
    )
    props = item.get("extendedProperties") or {}
    organizer = (item.get("organizer") or {}).get("email")
    key = (props.get("private") or {}).get(TAG)
    if key is None and organizer and organizer.lower() != person.email.lower():
        # an attendee's copy: the private tag stays with the organizer, the shared one
        # tells that this is the same booking
        key = (props.get("shared") or {}).get(TAG)
    return Event(
        owner=person.email,
        id=item["id"],
        title=item.get("summary", ""),
        start=start,
        end=end,
        uid=item.get("iCalUID", ""),
        all_day=all_day,
        cancelled=item.get("status") == "cancelled",
        transparent=item.get("transparency") == "transparent" or kind == "workingLocation",
        kind="outOfOffice" if kind == "outOfOffice" else "default",
        organizer=organizer.lower() if organizer else None,
        attendees=attendees,
        key=key,
        sequence=int(item.get("sequence", 0)),
        description=item.get("description", ""),
        location=item.get("location", ""),
    )


class GoogleCalendar(PushBy):
    """Calendar v3 for the people of one Google account."""

    sends_invitations: Literal[True] = True
    concurrent_writes: Literal[True] = True  # each thread has its own connection
    push_provider = "google"
    push_module = push

    def __init__(self, client: Client) -> None:
        self.c = client
        self.events = client.calendar.events()

    def close(self) -> None:
        self.c.close()

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Full sync of ``window`` (since=None) or the changes since a sync token."""
        params: dict[str, Any] = {
            "calendarId": person.email,
            "singleEvents": True,
            "maxResults": PAGE_SIZE,
            "fields": LIST_FIELDS,
        }
        if since is None:
            params.update(timeMin=_rfc3339(window.start), timeMax=_rfc3339(window.end))
        else:
            params["syncToken"] = since
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[Skipped] = []
        body: dict[str, Any] = {}
        page: str | None = None
        while True:
            extra = {"pageToken": page} if page else {}
            body = self.c.execute(self.events.list(**params, **extra), person.email)
            for item in body.get("items", []):
                ref = str(item.get("id", "?"))
                try:
                    if item.get("status") == "cancelled" and "start" not in item:
                        removed.append(item["id"])  # a deletion reported by id only
                        continue
                    event = to_event(person, item)
                except Exception as exc:  # one unreadable item never fails the sync
                    skipped.append(Skipped(person.email, ref, f"unreadable event: {exc!r}"))
                    continue
                if since is not None and not event.interval.overlaps(window):
                    removed.append(event.id)  # moved out of the window we keep
                else:
                    events.append(event)
            page = body.get("nextPageToken")
            if not page:
                break
        cursor = body.get("nextSyncToken")
        if not cursor:
            raise PermanentError(f"Google sent no sync token for {person.email}")
        return Changes(
            cursor=cursor,
            events=tuple(events),
            removed=tuple(removed),
            full=since is None,
            skipped=tuple(skipped),
        )

    def busy(self, people: Sequence[Person], window: Interval) -> Busy:
        """Busy time of everyone through freebusy.query, 50 calendars per query; a
        calendar that Google answers with ``errors`` fails alone."""
        result = Busy({p.email: [] for p in people})
        if not people:
            return result
        emails = list(result)
        requests = [
            self.c.calendar.freebusy().query(
                body={
                    "timeMin": _rfc3339(piece.start),
                    "timeMax": _rfc3339(piece.end),
                    "items": [{"id": e} for e in emails[i : i + FREEBUSY_BATCH]],
                }
            )
            for i in range(0, len(emails), FREEBUSY_BATCH)
            for piece in pieces(window, FREEBUSY_SPAN)
        ]
        # with delegation any colleague's free/busy is visible to a person of the domain
        user = people[0].email
        if len(requests) == 1:
            answers = [self.c.execute(requests[0], user)]
        else:
            answers = self.c.batch(requests, user)
        by_lower = {e.lower(): e for e in emails}
        for answer in answers:
            for ident, cal in answer.get("calendars", {}).items():
                email_address = by_lower.get(ident.lower(), ident)
                if email_address in result.failed:
                    continue  # another piece of the window already failed for them
                if cal.get("errors"):
                    reasons = ", ".join(str(e.get("reason")) for e in cal["errors"])
                    result.fail(
                        email_address, f"free/busy of {email_address} unavailable: {reasons}"
                    )
                    continue
                for span in cal.get("busy", []):
                    start, _ = _parse_time({"dateTime": span["start"]}, ZoneInfo("UTC"))
                    end, _ = _parse_time({"dateTime": span["end"]}, ZoneInfo("UTC"))
                    result.setdefault(email_address, []).append(Interval(start, end))
        for spans in result.values():
            spans.sort()
        return result

    def _body(self, draft: EventDraft) -> dict[str, Any]:
        zone = ZoneInfo(draft.timezone)
        body: dict[str, Any] = {
            "id": draft.key,
            "summary": draft.title,
            "description": draft.description,
            "start": {
                "dateTime": draft.start.astimezone(zone).isoformat(),
                "timeZone": draft.timezone,
            },
            "end": {"dateTime": draft.end.astimezone(zone).isoformat(), "timeZone": draft.timezone},
            "attendees": [
                {
                    "email": draft.organizer.email,
                    "displayName": draft.organizer.name,
                    "responseStatus": "accepted",
                },
                *({"email": p.email, "displayName": p.name} for p in draft.attendees),
            ],
            "extendedProperties": {
                "private": {TAG: draft.key, TAG_SERIES: draft.series},
                "shared": {TAG: draft.key},
            },
            "guestsCanModify": False,
            "reminders": {"useDefault": True},
        }
        if draft.conference == "auto":
            body["conferenceData"] = {
                "createRequest": {
                    "requestId": draft.key,
                    "conferenceSolutionKey": {"type": "hangoutsMeet"},
                }
            }
        return body

    def create(self, draft: EventDraft) -> Event:
        """Insert with the key as event id; a 409 means a retry: use (or restore) that event."""
        organizer = draft.organizer
        where = {"calendarId": organizer.email, "conferenceDataVersion": 1, "sendUpdates": "all"}
        body = self._body(draft)
        try:
            item = self.c.execute(self.events.insert(body=body, **where), organizer.email)
        except GoogleFailure as exc:
            if exc.status != 409:
                raise
            item = self.c.execute(
                self.events.get(calendarId=organizer.email, eventId=draft.key), organizer.email
            )
            private = (item.get("extendedProperties") or {}).get("private") or {}
            cancelled = item.get("status") == "cancelled"
            # a deleted event may come back with little more than its id; the id is the
            # key's hash, so it is ours all the same, and the patch tags it again
            if private.get(TAG) != draft.key and not cancelled:
                raise PermanentError(
                    f"event id {draft.key} on {organizer.email} exists and is not the agent's"
                ) from exc
            if cancelled:
                # deleted events keep their id: restore by patch, never re-insert
                restore = {k: v for k, v in body.items() if k not in ("id", "conferenceData")}
                restore["status"] = "confirmed"
                item = self.c.execute(
                    self.events.patch(eventId=draft.key, body=restore, **where), organizer.email
                )
        return to_event(organizer, item)

    def find(self, person: Person, key: str) -> Event | None:
        """The agent's event tagged ``key`` on the person's calendar, if there is one."""
        body = self.c.execute(
            self.events.list(
                calendarId=person.email,
                privateExtendedProperty=f"{TAG}={key}",
                singleEvents=True,
                maxResults=10,
            ),
            person.email,
        )
        for item in body.get("items", []):
            if item.get("status") != "cancelled":
                return to_event(person, item)
        return None

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        ensure_own(event)
        zone = person.zone
        body = {
            "start": {
                "dateTime": to.start.astimezone(zone).isoformat(),
                "timeZone": person.timezone,
            },
            "end": {"dateTime": to.end.astimezone(zone).isoformat(), "timeZone": person.timezone},
        }
        item = self.c.execute(
            self.events.patch(
                calendarId=person.email,
                eventId=event.id,
                body=body,
                conferenceDataVersion=1,
                sendUpdates="all",
            ),
            person.email,
        )
        return to_event(person, item)

    def cancel(self, person: Person, event: Event) -> None:
        ensure_own(event)
        try:
            self.c.execute(
                self.events.delete(calendarId=person.email, eventId=event.id, sendUpdates="all"),
                person.email,
            )
        except GoogleFailure as exc:
            if exc.status not in (404, 410):  # already gone: cancelling again is done
                raise

    def push_client(self) -> Client:
        return self.c
