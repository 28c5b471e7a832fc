"""The contract-suite backend for Google: Calendar v3 and Gmail on the fake Google server."""

from __future__ import annotations

import email.message
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.connectors.google import GoogleCalendar, GoogleMailer
from agent.core.model import Person
from tests.google.harness import Workspace, workspace


class GoogleBackend:
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


@contextmanager
def backend(tmp_path: Path) -> Iterator[GoogleBackend]:
    with workspace(tmp_path) as ws:
        b = GoogleBackend(ws)
        try:
            yield b
        finally:
            b.calendar.close()
            b.mailer.close()
