"""The local provider as a contract-suite backend: ICS files and an outbox folder."""

from __future__ import annotations

import contextlib
import email
import email.message
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import icalendar

from agent.connectors.local import LocalCalendar, OutboxMailer
from agent.core.model import Person
from tests.factories import person


class LocalBackend:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.people = [
            person("ana", "Europe/Berlin"),
            person("ben", "America/New_York"),
            person("cleo"),
        ]
        (folder / "cal").mkdir()
        (folder / "out").mkdir()
        self.calendar = LocalCalendar(folder / "cal", self.people)
        self.mailer = OutboxMailer(folder / "out")
        self.counter = 0

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


@contextlib.contextmanager
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    yield LocalBackend(tmp_path)
