"""The agent's own events: created with ``If-None-Match``, changed with ``If-Match`` on the
ETag and SEQUENCE raised, found by their object name or by the agent's tag.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from urllib.parse import quote, urljoin
from xml.sax.saxutils import escape

from icalendar.cal import Component

from agent.connectors.base import ensure_own
from agent.connectors.caldav.client import CALDAV, DAV, StoredObject, Transport
from agent.connectors.caldav.ics import (
    add_timezones,
    draft_ics,
    master_event,
    sequence_of,
    zone_of,
)
from agent.core.errors import PermanentError, TransientError
from agent.core.model import (
    Event,
    EventDraft,
    Interval,
    Person,
)
from agent.formats import ical, zones

KEY_PROPERTY = ical.KEY_PROPERTY


class OwnEvents(Transport):
    """``create``, ``find``, ``move`` and ``cancel`` of the Calendar protocol."""

    def create(self, draft: EventDraft) -> Event:
        """PUT the meeting on the organizer's calendar; on 412 read back the existing one."""
        organizer = draft.organizer
        url = self.calendar_url(organizer) + quote(f"{draft.key}.ics")
        ics = draft_ics(draft, self.clock())
        headers = {"If-None-Match": "*", "Content-Type": "text/calendar; charset=utf-8"}
        response = self._send("PUT", url, ics, headers, accept=(412,))
        if response.status != 412:
            return master_event(organizer, ics)
        self.log.info("booking %s already on %s's calendar: using it", draft.key, organizer.email)
        found = self.find(organizer, draft.key)
        if found is None:
            raise PermanentError(f"{url} exists but is not the agent's booking {draft.key}")
        return found

    def _get(self, url: str) -> StoredObject | None:
        response = self._send("GET", url, accept=(404, 410))
        if response.status in (404, 410):
            return None
        etag = response.headers.get("ETag")
        return StoredObject(self._path(url, url), etag, response.raw)

    def _own(self, person: Person, key: str) -> tuple[str, StoredObject] | None:
        calendar = self.calendar_url(person)
        url = calendar + quote(f"{key}.ics")
        obj = self._get(url)
        if obj is None:
            # created elsewhere (e.g. copied by a client): search by the agent's tag
            body = (
                f'<C:calendar-query xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
                f'<C:prop-filter name="{KEY_PROPERTY}">'
                f'<C:text-match collation="i;octet">{escape(key)}</C:text-match>'
                "</C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"
                "</C:calendar-query>"
            )
            found = self._objects(calendar, self._report(calendar, body, 1))
            if not found:
                return None
            obj = found[0]
            url = urljoin(calendar, quote(obj.path))
        return url, obj

    def find(self, person: Person, key: str) -> Event | None:
        """Return the agent's event with booking ``key`` on the person's calendar."""
        located = self._own(person, key)
        if located is None:
            return None
        _, obj = located
        event = master_event(person, obj.data)
        return event if event.key == key else None

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        """Move one of the agent's events to ``to``, raising its SEQUENCE.

        Attendees' answers were about the old time: they are reset to NEEDS-ACTION
        (RSVP requested), as calendar programs do when an organizer reschedules.
        """

        def change(vevent: Component) -> bool:
            zone = zone_of(vevent)
            for name, value in (("DTSTART", to.start), ("DTEND", to.end)):
                vevent.pop(name, None)
                vevent.add(name, value.astimezone(zone))
            vevent.pop("DURATION", None)
            organizer = str(vevent.get("ORGANIZER", "")).lower()
            values = vevent.get("ATTENDEE", [])
            for attendee in values if isinstance(values, list) else [values]:
                if str(attendee).lower() != organizer:
                    attendee.params["PARTSTAT"] = "NEEDS-ACTION"
                    attendee.params["RSVP"] = "TRUE"
            return True

        ensure_own(event)
        assert event.key is not None
        moved = self.rewrite_own(person, event.key, change)
        if moved is None:
            raise PermanentError(f"event {event.key} not found on {person.email}'s calendar")
        return moved

    def cancel(self, person: Person, event: Event) -> None:
        """Cancel one of the agent's events (STATUS:CANCELLED, SEQUENCE raised)."""

        def change(vevent: Component) -> bool:
            if str(vevent.get("STATUS", "")).upper() == "CANCELLED":
                return False
            for name, value in (("STATUS", "CANCELLED"), ("TRANSP", "TRANSPARENT")):
                vevent.pop(name, None)
                vevent.add(name, value)
            return True

        ensure_own(event)
        assert event.key is not None
        if self.rewrite_own(person, event.key, change) is None:
            self.log.info("event %s is no longer on %s's calendar", event.key, person.email)

    def rewrite_own(
        self, person: Person, key: str, change: Callable[[Component], bool], *, bump: bool = True
    ) -> Event | None:
        """Apply ``change`` to the agent's event ``key`` and store it if it changed.

        With ``bump`` the SEQUENCE is raised (a change by the organizer); recording an
        attendee's answer leaves it alone (RFC 5546). Return None when there is no such
        event; raise PermanentError when the object there is not the agent's.
        """
        located = self._own(person, key)
        if located is None:
            return None
        url, obj = located
        cal = zones.parse(obj.data)
        masters = [v for v in cal.walk("VEVENT") if "RECURRENCE-ID" not in v]
        if len(masters) != 1 or str(masters[0].get(KEY_PROPERTY, "")) != key:
            raise PermanentError(f"refusing to change {url}: it is not the agent's event")
        vevent = masters[0]
        sequence = sequence_of(vevent) + (1 if bump else 0)
        if not change(vevent):
            return master_event(person, obj.data)
        vevent.pop("SEQUENCE", None)
        vevent.add("SEQUENCE", sequence)
        for name in ("DTSTAMP", "LAST-MODIFIED"):
            vevent.pop(name, None)
            vevent.add(name, self.clock().astimezone(UTC).replace(microsecond=0))
        add_timezones(cal, vevent.decoded("DTSTART"))
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if obj.etag:
            headers["If-Match"] = obj.etag
        response = self._send("PUT", url, cal.to_ical().decode(), headers, accept=(412,))
        if response.status == 412:
            raise TransientError(f"{url} changed while the agent was updating it; retry")
        return master_event(person, cal.to_ical().decode())
