"""The local provider as a contract-suite backend: ICS files and an outbox folder."""

from __future__ import annotations

import contextlib
import email
import email.message
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import icalendar

from agent.connectors.local import LocalCalendar, OutboxMailer
from agent.core.model import Person
from agent.formats.ical import KEY_PROPERTY
from agent.settings import config
from tests.connectors.backends import Booked, load, mailed_invitations, people_yaml
from tests.factories import person


class LocalBackend:
    wire = None  # files, no server: nothing to count
    #: the outbox gets an iTIP invitation, and the attendee's file a copy
    invites_by_mail = True
    copies_to_attendees = True
    merges_busy = False
    refuses_stale_cursors = False
    conference = False
    unknown_mailbox = None  # a person without a file has an empty calendar

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.people = [
            person("ana", "Europe/Berlin"),
            person("ben", "Europe/London"),
            person("cleo"),
        ]
        (folder / "cal").mkdir()
        (folder / "out").mkdir()
        self.calendar = LocalCalendar(folder / "cal", self.people)
        self.mailer = OutboxMailer(folder / "out")
        self.counter = 0
        self.inbox = ""  # the account's inbox folder, once replies are read

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
        path = self.folder / "cal" / f"{owner.email}.ics"
        cal = (
            icalendar.Calendar.from_ical(path.read_bytes())
            if path.exists()
            else icalendar.Calendar()
        )
        if not path.exists():
            cal.add("prodid", "-//Test//EN")
            cal.add("version", "2.0")
        self.counter += 1
        uid = f"human-{self.counter}"
        ev = icalendar.Event()
        ev.add("uid", uid)
        ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
        ev.add("dtstart", start.date() if all_day else start)
        ev.add("dtend", end.date() if all_day else end)
        ev.add("summary", title)
        if attendees:
            ev.add("organizer", f"mailto:{owner.email}")
            for p in (owner, *attendees):
                ev.add("attendee", f"mailto:{p.email}", parameters={"PARTSTAT": "ACCEPTED"})
        if rrule:
            ev.add("rrule", icalendar.vRecur.from_ical(rrule))
        if transparent:
            ev.add("transp", "TRANSPARENT")
        cal.add_component(ev)
        path.write_bytes(cal.to_ical())
        return uid

    def delivered(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in sorted((self.folder / "out").glob("*.eml"))
        ]

    def counts(self) -> Counter[str]:
        return Counter()

    def settings(self, rest: str) -> config.Settings:
        account = (
            "timezone: Europe/Berlin\nstore: tick.db\n"
            f"accounts:\n  files: {{provider: local, calendars: cal, outbox: out{self.inbox}}}\n"
        )
        return load(self.folder / "tick.yaml", account + people_yaml(self.people) + rest)

    def _events(self, owner: str) -> list[icalendar.Event]:
        path = self.folder / "cal" / f"{owner}.ics"
        if not path.exists():
            return []
        return list(icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT"))

    def booked(self, owner: Person, key: str) -> Booked:
        (event,) = [e for e in self._events(owner.email) if str(e.get(KEY_PROPERTY)) == key]
        return Booked(
            tag=str(event[KEY_PROPERTY]),
            title=str(event["SUMMARY"]),
            start=event.decoded("DTSTART").astimezone(UTC),
            conference="",
        )

    def invited(self, key: str, title: str) -> set[str]:
        return mailed_invitations(self.delivered(), key, title)

    def forget_cursors(self) -> bool:
        return False  # the server keeps no cursors it could forget

    def stale(self, cursor: str) -> str:
        return "garbage"

    def stranger(self) -> Person:
        return person("nobody")

    def wrong_requests(self) -> list[str]:
        return []

    def read_replies(self) -> None:
        (self.folder / "in").mkdir(exist_ok=True)
        self.inbox = ", inbox: in"

    def deliver(self, owner: Person, raw: bytes) -> str:
        """One folder holds every reply: the local provider reads no mailbox per person."""
        self.counter += 1
        path = self.folder / "in" / f"reply-{self.counter}.eml"
        path.write_bytes(raw)
        return path.name


@contextlib.contextmanager
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    yield LocalBackend(tmp_path)
