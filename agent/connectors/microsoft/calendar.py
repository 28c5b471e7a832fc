"""The Calendar protocol on Microsoft Graph: ``calendarView/delta`` for changes,
``getSchedule`` for busy time, tagged ``events`` for the agent's own meetings, and the
mailbox settings that fill in what the config leaves out.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any, Literal

from agent.connectors.base import Busy
from agent.connectors.microsoft import push
from agent.connectors.microsoft.events import (
    KEY_PROPERTY,
    TRANSACTION_PREFIX,
    format_dtz,
    iso,
    key_filter,
    parse_dtz,
    read_cursor,
    to_event,
    user_path,
    zone_of,
)
from agent.connectors.microsoft.graph import PREFER_UTC, Graph
from agent.connectors.tools import PushBy, ensure_organizer, live_first, pieces
from agent.core.errors import CadenceError, PermanentError
from agent.core.model import (
    Changes,
    Event,
    EventDraft,
    Interval,
    Person,
    Skipped,
    Span,
    SyncToken,
    WorkingHours,
    merge,
)

log = logging.getLogger("cadence.microsoft")
#: The cursor of a colleague's calendar under a single person's sign-in: not read.
OTHERS_CALENDAR = "not-read:delegated"
MAX_SCHEDULES = 20
SCHEDULE_PERIOD = timedelta(days=61)  # getSchedule wants a period under 62 days
#: A full sync covers this much beyond the requested window, so that the delta link stays
#: valid as the window slides forward; past it the window is re-anchored.
WINDOW_SLACK = timedelta(days=30)
PAGE_SIZE = 1000  # Prefer: odata.maxpagesize; Graph caps it at what it allows
BUSY = {"busy", "tentative", "oof", "unknown"}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class MicrosoftCalendar(PushBy):
    """The Calendar protocol on Microsoft Graph."""

    sends_invitations: Literal[True] = True
    concurrent_writes: Literal[True] = True  # one pooled session; the token is fetched under a lock
    push_provider = "microsoft"
    push_module = push

    def __init__(self, graph: Graph, people: Sequence[Person] = ()) -> None:
        self.graph = graph
        self.people = {p.email.lower(): p for p in people}
        self._providers: dict[str, list[str]] = {}
        self._provider_locks: dict[str, threading.Lock] = {}
        self._providers_lock = threading.Lock()
        #: each person's mailbox settings as read by this connection
        self._settings_read: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self.graph.close()

    # -- sync

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        signed_in = self.graph.signed_in_user()
        if signed_in is not None and person.email.lower() != signed_in:
            # A single person's sign-in reads only their own calendar: meetings with a
            # colleague are on it too, and the colleague's busy time comes from busy().
            return Changes(cursor=OTHERS_CALENDAR, full=since != OTHERS_CALENDAR)
        anchored: dict[str, str] | None = None
        if since:
            anchored = read_cursor(since)
            if window.end > datetime.fromisoformat(anchored["end"]):
                log.info("re-anchoring the delta window of %s", person.email)
                anchored = None
        if anchored is None:
            end = window.end + WINDOW_SLACK
            url = f"{user_path(person)}/calendarView/delta"
            params: dict[str, str] | None = {
                "startDateTime": iso(window.start),
                "endDateTime": iso(end),
            }
            span = {"start": window.start.isoformat(), "end": end.isoformat()}
        else:
            url, params = anchored["link"], None
            span = {"start": anchored["start"], "end": anchored["end"]}
        events: dict[str, Event] = {}
        removed: list[str] = []
        skipped: list[Skipped] = []
        prefer = f"{PREFER_UTC}, odata.maxpagesize={PAGE_SIZE}"
        while True:
            page = self.graph.send("GET", url, params=params, headers={"Prefer": prefer}).json()
            for item in page.get("value", []):
                ref = str(item.get("id", "?"))
                if "@removed" in item:
                    events.pop(ref, None)
                    removed.append(ref)
                    continue
                try:
                    events[ref] = to_event(person, item)
                except Exception as exc:  # one unreadable item never fails the sync
                    skipped.append(Skipped(person.email, ref, f"{type(exc).__name__}: {exc}"))
            if page.get("@odata.nextLink"):
                url, params = page["@odata.nextLink"], None
                continue
            link = page.get("@odata.deltaLink")
            if not link:
                raise PermanentError("Graph delta answered without nextLink or deltaLink")
            break
        cursor = json.dumps({"link": link, **span})
        return Changes(
            cursor=cursor,
            events=tuple(events.values()),
            removed=tuple(r for r in removed if r not in events),
            full=anchored is None,
            skipped=tuple(skipped),
        )

    # -- free/busy

    def busy(self, people: Sequence[Person], window: Interval) -> Busy:
        """Busy intervals from getSchedule: 20 mailboxes per call, periods under 62 days;
        a schedule answered with an ``error`` fails for that mailbox alone."""
        result = Busy({p.email.lower(): [] for p in people})
        emails = list(result)
        if not emails:
            return Busy()
        calls: list[dict[str, Any]] = []
        # a single person asks from their own mailbox; an app from the group's first
        anchor = self.graph.signed_in_user()
        for i in range(0, len(emails), MAX_SCHEDULES):
            group = emails[i : i + MAX_SCHEDULES]
            for piece in pieces(window, SCHEDULE_PERIOD):
                body = {
                    "schedules": group,
                    "startTime": {"dateTime": iso(piece.start)[:-1], "timeZone": "UTC"},
                    "endTime": {"dateTime": iso(piece.end)[:-1], "timeZone": "UTC"},
                    "availabilityViewInterval": 15,
                }
                calls.append(
                    {
                        "method": "POST",
                        "url": f"{user_path(anchor or group[0])}/calendar/getSchedule",
                        "body": body,
                        "headers": {"Content-Type": "application/json", "Prefer": PREFER_UTC},
                    }
                )
        if len(calls) == 1:
            call = calls[0]
            answers = [self.graph.send("POST", str(call["url"]), json_body=call["body"]).json()]
        else:
            answers = self.graph.batch(calls)
        for answer in answers:
            for info in (answer or {}).get("value", []):
                who = str(info.get("scheduleId", "")).lower()
                if who in result.failed:
                    continue
                if info.get("error"):
                    err = info["error"]
                    result.fail(
                        who,
                        f"getSchedule for {who}: {err.get('responseCode')} {err.get('message', '')}",
                    )
                    continue
                for it in info.get("scheduleItems") or []:
                    if str(it.get("status", "busy")) in BUSY:
                        result.setdefault(who, []).append(
                            Interval(parse_dtz(it["start"]), parse_dtz(it["end"]))
                        )
        for who in list(result):
            result[who] = merge(result[who])
        return result

    # -- the agent's own events

    def find(self, person: Person, key: str) -> Event | None:
        page = self.graph.send("GET", f"{user_path(person)}/events", params=key_filter(key)).json()
        return live_first([to_event(person, item) for item in page.get("value", [])])

    def create(self, draft: EventDraft) -> Event:
        organizer = draft.organizer
        existing = self.find(organizer, draft.key)
        if existing is not None:
            return existing
        body: dict[str, Any] = {
            "subject": draft.title,
            "body": {
                "contentType": "text",
                "content": f"{draft.description}\n\n[cadence:{draft.key}]",
            },
            "start": format_dtz(draft.start, draft.timezone),
            "end": format_dtz(draft.end, draft.timezone),
            "attendees": [
                {"emailAddress": {"address": p.email, "name": p.name}, "type": "required"}
                for p in draft.attendees
                if p.email.lower() != organizer.email.lower()
            ],
            "showAs": "busy",
            "allowNewTimeProposals": True,
            "transactionId": TRANSACTION_PREFIX + draft.key,
            "singleValueExtendedProperties": [{"id": KEY_PROPERTY, "value": draft.key}],
        }
        note = ""
        if draft.conference == "auto":
            try:
                teams = "teamsForBusiness" in self._online_providers(organizer)
            except CadenceError as exc:
                # the meeting matters more than its link: book it without one, say so,
                # and ask again at the next booking (a failure is not remembered)
                teams = False
                note = (
                    "booked without a Teams link: Cadence could not check whether "
                    f"{organizer.email} may hold Teams meetings ({exc}); it asks again "
                    "at the next booking"
                )
                log.warning("%s", note)
                body["body"]["content"] = (
                    f"{draft.description}\n\nNo Teams link was added to this meeting; "
                    f"add one if you need it.\n\n[cadence:{draft.key}]"
                )
            if teams:
                body["isOnlineMeeting"] = True
                body["onlineMeetingProvider"] = "teamsForBusiness"
        # A retried POST carries the same transactionId, so Graph does not make a second
        # event. What Graph answers to the repeat is not documented: the event itself, or
        # a conflict, after which the tag finds the event.
        try:
            item = self.graph.send("POST", f"{user_path(organizer)}/events", json_body=body).json()
        except PermanentError as exc:
            if not re.search(r"\b409\b|duplicate|transactionid", str(exc), re.I):
                raise
            made = self.find(organizer, draft.key)
            if made is None:
                raise
            return made
        event = to_event(organizer, item)
        return replace(event, key=event.key or draft.key, note=note)

    def _online_providers(self, person: Person) -> list[str]:
        """The organizer's allowed online meeting providers, asked once per organizer:
        threads booking for the same organizer wait for the one that asks."""
        email = person.email.lower()
        with self._providers_lock:
            lock = self._provider_locks.setdefault(email, threading.Lock())
        with lock:
            if email not in self._providers:
                cal = self.graph.send(
                    "GET",
                    f"{user_path(person)}/calendar",
                    params={"$select": "allowedOnlineMeetingProviders"},
                ).json()
                self._providers[email] = list(cal.get("allowedOnlineMeetingProviders") or [])
            return self._providers[email]

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        ensure_organizer(person, event)
        zone = person.timezone
        body = {"start": format_dtz(to.start, zone), "end": format_dtz(to.end, zone)}
        path = f"{user_path(person)}/events/{urllib.parse.quote(event.id, safe='')}"
        item = self.graph.send("PATCH", path, json_body=body).json()
        moved = to_event(person, item)
        # Exchange raises the appointment sequence on a time change; PATCH does not echo it.
        return replace(
            moved, key=moved.key or event.key, sequence=max(moved.sequence, event.sequence + 1)
        )

    def cancel(self, person: Person, event: Event) -> None:
        ensure_organizer(person, event)
        path = f"{user_path(person)}/events/{urllib.parse.quote(event.id, safe='')}"
        try:
            if event.attendees:
                comment = {"comment": "Cancelled by Cadence."}
                self.graph.send("POST", f"{path}/cancel", json_body=comment)
            else:
                self.graph.send("DELETE", path)
        except PermanentError as exc:
            if "ErrorItemNotFound" not in str(exc):
                raise
            log.info("event %s on %s was already gone", event.id, person.email)

    # -- mailbox settings

    def _mailbox_settings(self, person: Person) -> dict[str, Any]:
        """``GET /users/{id}/mailboxSettings``, once per person and connection: the time
        zone, the working hours and the language come from one answer."""
        found = self._settings_read.get(person.email)
        if found is None:
            found = self.graph.send("GET", f"{user_path(person)}/mailboxSettings").json()
            self._settings_read[person.email] = found
        return found

    def mailbox_language(self, person: Person) -> str | None:
        """The locale of the person's mailbox (``language.locale``, ``de-DE``), or None."""
        language = self._mailbox_settings(person).get("language") or {}
        locale = language.get("locale") if isinstance(language, dict) else None
        return str(locale) if locale else None

    def mailbox_settings(self, person: Person) -> tuple[str, WorkingHours]:
        """The person's time zone (IANA) and working hours as set in Outlook."""
        data = self._mailbox_settings(person)
        hours = data.get("workingHours") or {}
        zone_name = (hours.get("timeZone") or {}).get("name") or data.get("timeZone") or "UTC"
        try:
            zone = str(zone_of(zone_name))
        except (ValueError, KeyError) as exc:
            raise PermanentError(f"unknown time zone {zone_name!r} for {person.email}") from exc
        span = Span(_clock(hours.get("startTime", "09:00")), _clock(hours.get("endTime", "17:00")))
        days = {DAYS.index(d): (span,) for d in hours.get("daysOfWeek") or [] if d in DAYS}
        return zone, WorkingHours(days)

    def push_client(self) -> Graph:
        return self.graph


def _clock(text: str) -> time:
    return time.fromisoformat(str(text)[:8])
