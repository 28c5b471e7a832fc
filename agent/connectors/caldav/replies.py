"""Attendees' answers to Cadence's invitations, recorded on the organizer's CalDAV event.

Cadence marks attendees ``SCHEDULE-AGENT=CLIENT`` and mails the invitations itself, so
no server processes the answers (RFC 6638 would have the server update the organizer's
copy). With ``imap:`` on the account and ``collect_replies: true`` in a program, the
connector does that part itself: it reads iTIP REPLY mails from the IMAP folder and sets
the attendee's PARTSTAT on the agent's own event (SEQUENCE unchanged, RFC 5546 section
3.2.3), just before it syncs calendars, so the same tick sees a declined meeting.
Nothing in the mailbox is marked read, moved or deleted.
"""

from __future__ import annotations

import logging
import time as clock_time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from icalendar.cal import Component

from agent.connectors.caldav.ics import sequence_of
from agent.connectors.smtp import ImapReader, ItipReply
from agent.core.errors import CadenceError
from agent.core.model import Event, Person


class OwnEventWriter(Protocol):
    """What recording an answer needs of the calendar: rewriting one of the agent's events."""

    def rewrite_own(
        self, person: Person, key: str, change: Callable[[Component], bool], *, bump: bool = True
    ) -> Event | None: ...


UID_SUFFIX = "@cadence"


class ReplyCollector:
    """Read iTIP replies at most every ``every`` and record each one once."""

    def __init__(
        self,
        reader: ImapReader,
        people: Mapping[str, Person],
        *,
        every: timedelta = timedelta(minutes=5),
        lookback: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: logging.Logger | None = None,
    ) -> None:
        self.reader = reader
        self.people = {e.lower(): p for e, p in people.items()}
        self.every, self.lookback, self.clock = every, lookback, clock
        self.log = log or logging.getLogger("cadence.connector.caldav")
        #: answers read but not recorded yet (a calendar error): tried again next time
        self._pending: list[ItipReply] = []
        self._last: float | None = None

    def collect(self, calendar: OwnEventWriter) -> list[Event]:
        """Record new answers on the organizers' events; return the events changed.

        A failure is logged and retried at the next call: reading replies never stops
        a calendar sync.
        """
        now = clock_time.monotonic()
        if self._last is not None and now - self._last < self.every.total_seconds():
            return []
        self._last = now
        since = (self.clock() - self.lookback).date()
        try:
            replies = self.reader.replies((), since, new_only=True)
        except CadenceError as exc:  # tried again after ``every``, not for each calendar
            self.log.warning("replies not read from %s: %s", self.reader.where, exc)
            return []
        answers = self._pending + [a for reply in replies for a in reply.itip]
        self._pending = []
        changed = []
        for answer in dict.fromkeys(answers):
            try:
                event = self.record(calendar, answer)
            except CadenceError as exc:  # the mail is not read again: keep the answer
                self.log.warning("answer of %s not recorded: %s", answer.attendee, exc)
                self._pending.append(answer)
                continue
            if event is not None:
                changed.append(event)
        return changed

    def record(self, calendar: OwnEventWriter, answer: ItipReply) -> Event | None:
        """Set the attendee's PARTSTAT on the agent's event; None when nothing changed."""
        organizer = self.people.get(answer.organizer)
        if organizer is None or not answer.uid.endswith(UID_SUFFIX):
            return None  # not an answer to one of the agent's invitations
        key = answer.uid.removesuffix(UID_SUFFIX)
        changed: list[bool] = []

        def change(vevent: Component) -> bool:
            if answer.sequence < sequence_of(vevent):
                return False  # answers an older version of the meeting
            values = vevent.get("ATTENDEE", [])
            for attendee in values if isinstance(values, list) else [values]:
                address = str(attendee).strip().lower().removeprefix("mailto:")
                if address != answer.attendee:
                    continue
                partstat = answer.partstat.value.upper()
                if str(attendee.params.get("PARTSTAT", "")).upper() == partstat:
                    return False
                attendee.params["PARTSTAT"] = partstat
                attendee.params.pop("RSVP", None)
                changed.append(True)
                return True
            return False  # not invited: the organizer decides about party crashers

        event = calendar.rewrite_own(organizer, key, change, bump=False)
        if event is not None and changed:
            self.log.info(
                "%s answered %s to %s", answer.attendee, answer.partstat.value, event.title
            )
            return event
        return None
