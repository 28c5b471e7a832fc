"""The contract-suite backend for Google: Calendar v3 and Gmail on the fake Google server."""

from __future__ import annotations

import email.message
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.connectors.google import GoogleCalendar, GoogleMailer
from agent.core.model import Person
from agent.settings import config
from tests.connectors.backends import Booked, Wire, load
from tests.factories import hours
from tests.google.harness import Workspace, account_yaml, people_yaml, workspace

WIRE = Wire(
    sync="calendar.events.list",
    mail_is_create=False,
    create="calendar.events.insert",
    fetch_booked=Counter(),
    busy=lambda n: {"calendar.freebusy.query": 1},
    # a token per person acted as, kept in the token cache: a new process asks for none
    sign_in=lambda n: Counter(),
    resync=lambda n: {"calendar.events.list": 2 * n},  # 410 Gone, then the full list
    inbox="gmail.users.messages.list",
    # the message's size and header, then the message; before the update goes out, two
    # rfc822msgid: searches (was it sent already? the reply's thread)
    read_reply=Counter(
        {
            "gmail.users.messages.get": 2,
            "gmail.users.messages.list": 2,
            "gmail.users.messages.send": 1,
        }
    ),
)


class GoogleBackend:
    wire = WIRE
    invites_by_mail = False
    copies_to_attendees = True
    merges_busy = True
    refuses_stale_cursors = True
    conference = True
    unknown_mailbox = r"nobody@acme\.example"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.people: Sequence[Person] = ws.people
        calendar, mailer = ws.connect()
        self.calendar: GoogleCalendar = calendar
        self.mailer: GoogleMailer = mailer

    def add_event(
        self,
        owner: Person,
        title: str,
        start: datetime,
        end: datetime,
        attendees: Sequence[Person] = (),
        *,
        all_day: bool = False,
        rrule: str | None = None,
        transparent: bool = False,
    ) -> str:
        fields: dict[str, Any] = {}
        if rrule:
            fields["recurrence"] = [f"RRULE:{rrule}"]
        if transparent:
            fields["transparency"] = "transparent"
        first: datetime | Any = start
        last: datetime | Any = end
        if all_day:
            first, last = owner.local(start).date(), owner.local(end).date()
        return self.ws.server.add_event(
            owner.email, title, first, last, [a.email for a in attendees], **fields
        )

    def delivered(self) -> list[email.message.EmailMessage]:
        return [sent.message for sent in self.ws.server.state.sent]

    def counts(self) -> Counter[str]:
        return Counter(self.ws.server.state.counts)

    def settings(self, rest: str) -> config.Settings:
        text = (
            "timezone: Europe/Berlin\nstore: tick.db\n"
            + account_yaml(self.ws.server, "key.json")
            + 'defaults:\n  working_hours: {mon-fri: "09:00-17:00"}\n'
            + people_yaml()
            + rest
        )
        return load(self.ws.path.parent / "tick.yaml", text)

    def booked(self, owner: Person, key: str) -> Booked:
        event = self.ws.server.state.calendars[owner.email].events[key]
        return Booked(
            tag=event["extendedProperties"]["private"]["cadenceKey"],
            title=event["summary"],
            start=datetime.fromisoformat(event["start"]["dateTime"]),
            conference=event.get("hangoutLink", ""),
        )

    def invited(self, key: str, title: str) -> set[str]:
        return {
            attendee
            for method, _, event_id, to in self.ws.server.state.notifications
            if method == "REQUEST" and event_id == key
            for attendee in to
        }

    def forget_cursors(self) -> bool:
        self.ws.server.state.expire_sync_tokens()
        return True

    def stale(self, cursor: str) -> str:
        self.forget_cursors()
        return cursor

    def stranger(self) -> Person:
        return Person("nobody@acme.example", "Nobody", "UTC", hours())

    def wrong_requests(self) -> list[str]:
        return []

    def read_replies(self) -> None:
        pass  # the program's collect_replies is enough: the fake Gmail holds every inbox

    def deliver(self, owner: Person, raw: bytes) -> str:
        return f"gmail:{owner.email}/{self.ws.server.state.deliver(owner.email, raw).id}"


@contextmanager
def backend(tmp_path: Path) -> Iterator[GoogleBackend]:
    with workspace(tmp_path) as ws:
        b = GoogleBackend(ws)
        try:
            yield b
        finally:
            b.calendar.close()
            b.mailer.close()
