"""The embedded provider: one ``<email>.ics`` file per person and an outbox of ``.eml`` files.

Writes are surgical: a booking is inserted as new text before the calendar's closing
line, and the agent's own events are replaced block by block, so no other component of
a person's file is ever re-serialised, reordered or lost. Every write is an atomic
replace under a lock shared with other Cadence processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from agent.connectors import Context
from agent.connectors.base import MAX_REPLY_BYTES, Busy, IncomingMail, ensure_own
from agent.core import faults
from agent.core.errors import PermanentError
from agent.core.model import (
    Changes,
    Event,
    EventDraft,
    Interval,
    OutgoingMail,
    Person,
    SentMail,
    Skipped,
    SyncToken,
)
from agent.formats import ical, mime

#: the write to several calendar files in progress (see ``LocalCalendar._write_all``)
JOURNAL = ".cadence.journal"
_BLOCK = re.compile(r"BEGIN:VEVENT\r?\n.*?END:VEVENT\r?\n", re.S)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` by write-to-temporary, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".cadence.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LocalCalendar:
    """Calendars as ICS files; ``sends_invitations`` is False, so the engine mails iTIP."""

    def __init__(self, folder: Path, people: Sequence[Person], clock: type[datetime] = datetime):
        self.folder = folder
        self.people = {p.email: p for p in people}
        self._clock = clock

    def path(self, email: str) -> Path:
        return self.folder / f"{email}.ics"

    def _read(self, email: str) -> bytes:
        try:
            return self.path(email).read_bytes()
        except FileNotFoundError:
            return b""

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        if (self.folder / JOURNAL).exists():
            with _locked(self.folder):
                self._recover()
        data = self._read(person.email)
        digest = hashlib.sha256(data).hexdigest()[:24]
        cursor = f"{digest}:{window.start:%Y%m%d}:{window.end:%Y%m%d}"
        if since == cursor:
            return Changes(cursor=cursor)
        if not data.strip():
            return Changes(cursor=cursor, full=True)
        events, skipped = self._parse(person, data, window)
        return Changes(cursor=cursor, events=tuple(events), full=True, skipped=tuple(skipped))

    def _parse(
        self, person: Person, data: bytes, window: Interval
    ) -> tuple[list[Event], list[Skipped]]:
        try:
            return ical.read_events(data, person, window)
        except Exception as exc:  # not iCalendar at all: the whole file is one bad item
            return [], [Skipped(person.email, self.path(person.email).name, f"unreadable: {exc}")]

    def busy(self, people: Sequence[Person], window: Interval) -> Busy:
        out = Busy()
        for person in people:
            events, _ = self._parse(person, self._read(person.email), window)
            out[person.email] = sorted(e.interval for e in events if e.blocks_time)
        return out

    def find(self, person: Person, key: str) -> Event | None:
        data = self._read(person.email)
        if key.encode() not in data:
            return None
        cal = icalendar.Calendar.from_ical(data)
        for comp in cal.walk("VEVENT"):
            if str(comp.get(ical.KEY_PROPERTY, "")) == key:
                wide = Interval(datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
                events, _ = ical.read_events(ical.calendar([comp]).to_ical(), person, wide)
                if events:
                    return events[0]
        return None

    def create(self, draft: EventDraft) -> Event:
        stamp = self._clock.now(UTC)
        vevent = ical.draft_event(draft, stamp=stamp, partstats={draft.organizer.email: "ACCEPTED"})
        emails = [p.email for p in (draft.organizer, *draft.attendees)]
        with _locked(self.folder):
            self._write_all("insert", draft.uid, vevent, emails, draft.timezone)
        event = self.find(draft.organizer, draft.key)
        if event is None:  # pragma: no cover - we just wrote it
            raise PermanentError(f"booking {draft.key} vanished from {draft.organizer.email}")
        return event

    def _write_all(
        self, op: str, uid: str, vevent: Any, emails: Sequence[str], tzid: str = "UTC"
    ) -> None:
        """Write one event into several people's files (the caller holds the lock). A
        journal is written first and removed last, so that a crash between two files is
        finished by the next process to read the folder: without it, the attendee of a
        booking interrupted there would never get it, as the organizer's copy exists."""
        self._recover()
        journal = self.folder / JOURNAL
        record = {"op": op, "uid": uid, "vevent": vevent.to_ical().decode(), "tzid": tzid}
        atomic_write(journal, json.dumps({**record, "emails": list(emails)}).encode())
        try:
            self._apply(op, uid, vevent, emails, tzid)
        except Exception:
            journal.unlink()  # an error, not a crash: the caller hears of it and retries
            raise
        journal.unlink()

    def _apply(self, op: str, uid: str, vevent: Any, emails: Sequence[str], tzid: str) -> None:
        for i, email in enumerate(emails):
            if i:
                faults.point(f"local:{op}:between-calendars")
            if op == "insert":
                self._insert(email, uid, vevent, tzid)
            else:
                self._replace(email, uid, vevent)

    def _recover(self) -> None:
        """Finish the multi-file write a crash interrupted, if any (lock held)."""
        journal = self.folder / JOURNAL
        try:
            record = json.loads(journal.read_bytes())
        except FileNotFoundError:
            return
        try:
            vevent = icalendar.Event.from_ical(record["vevent"])
            self._apply(record["op"], record["uid"], vevent, record["emails"], record["tzid"])
        finally:
            journal.unlink()  # tried once: a file it cannot write must not stop every read

    def _insert(self, email: str, uid: str, vevent: Any, tzid: str) -> None:
        path = self.path(email)
        text = self._read(email).decode("utf-8")
        if f"UID:{uid}" in text:
            return  # already there: a retry after a crash
        if not text.strip():
            text = ical.calendar([]).to_ical().decode()
        newline = "\r\n" if "\r\n" in text else "\n"
        addition = vevent.to_ical().decode()
        if f"TZID:{tzid}" not in text and tzid != "UTC":
            around = vevent.decoded("DTSTART").date()
            addition = ical.vtimezone(tzid, around).to_ical().decode() + addition
        addition = addition.replace("\r\n", newline)
        end = text.rstrip().rfind("END:VCALENDAR")
        if end < 0:
            raise PermanentError(f"{path.name} has no END:VCALENDAR; not writing into it")
        atomic_write(path, (text[:end] + addition + text[end:]).encode("utf-8"))

    def _replace(self, email: str, uid: str, vevent: Any) -> None:
        text = self._read(email).decode("utf-8")
        newline = "\r\n" if "\r\n" in text else "\n"
        for match in _BLOCK.finditer(text):
            if f"UID:{uid}" in match.group(0):
                new = vevent.to_ical().decode().replace("\r\n", newline)
                text = text[: match.start()] + new + text[match.end() :]
                atomic_write(self.path(email), text.encode("utf-8"))
                return

    def _update(
        self, person: Person, event: Event, reset_replies: bool = False, **changes: object
    ) -> Event:
        ensure_own(event)
        data = self._read(person.email)
        cal = icalendar.Calendar.from_ical(data)
        target = next(
            (c for c in cal.walk("VEVENT") if str(c.get(ical.KEY_PROPERTY, "")) == event.key),
            None,
        )
        if target is None:
            raise PermanentError(f"event {event.key} is not on {person.email}'s calendar")
        sequence = int(target.get("SEQUENCE", 0)) + 1
        for name, value in changes.items():
            target.pop(name.upper(), None)
            target.add(name, value)
        target.pop("SEQUENCE", None)
        target.add("sequence", sequence)
        target.pop("DTSTAMP", None)
        target.add("dtstamp", self._clock.now(UTC))
        organizer = ical.address(target.get("ORGANIZER", ""))
        if reset_replies:  # a new time asks everyone again, as RFC 5546 organizers do
            for attendee in ical.as_list(target.get("ATTENDEE")):
                mine = ical.address(attendee) == organizer
                attendee.params["PARTSTAT"] = "ACCEPTED" if mine else "NEEDS-ACTION"
        emails = {ical.address(a) for a in ical.as_list(target.get("ATTENDEE"))}
        emails.add(ical.address(target.get("ORGANIZER", "")))
        with _locked(self.folder):
            owners = [e for e in sorted(emails) if e in self.people]
            self._write_all("replace", str(target["UID"]), target, owners)
        found = self.find(person, event.key or "")
        assert found is not None
        return found

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        zone = (
            ZoneInfo(str(event_zone))
            if (event_zone := self._zone_of(person, event))
            else person.zone
        )
        return self._update(
            person,
            event,
            reset_replies=True,
            dtstart=to.start.astimezone(zone),
            dtend=to.end.astimezone(zone),
            status="CONFIRMED",
        )

    def _zone_of(self, person: Person, event: Event) -> str | None:
        """The TZID the agent wrote the event in (the organizer's zone)."""
        organizer = self.people.get(event.organizer or "")
        return organizer.timezone if organizer else None

    def cancel(self, person: Person, event: Event) -> None:
        self._update(person, event, status="CANCELLED")

    def close(self) -> None:
        pass


class OutboxMailer:
    """Mail as ``.eml`` files; the file name is the mail's key, so a resend is a no-op.

    With an ``inbox`` folder it also reads replies: every ``.eml`` file in it.
    """

    def __init__(self, folder: Path, inbox: Path | None = None):
        self.folder = folder
        self.inbox = inbox

    def replies(self) -> list[IncomingMail]:
        if self.inbox is None or not self.inbox.is_dir():
            return []
        found = []
        for path in sorted(self.inbox.glob("*.eml")):
            try:
                size = path.stat().st_size
                if size > MAX_REPLY_BYTES:  # refused by its size, never read
                    found.append(IncomingMail(str(path), b"", size=size))
                else:
                    found.append(IncomingMail(str(path), path.read_bytes()))
            except OSError as exc:
                raise PermanentError(f"cannot read {path}: {exc}") from exc
        return found

    def path(self, mail: OutgoingMail) -> Path:
        # keys hold calendar UIDs, which may hold "/" or characters no file system takes
        name = urllib.parse.quote(mail.key.replace(":", "-"), safe="@+=._-")
        return self.folder / f"{name}.eml"

    def was_sent(self, mail: OutgoingMail) -> bool:
        return self.path(mail).exists()

    def send(self, mail: OutgoingMail) -> SentMail:
        path = self.path(mail)
        if path.exists():
            return SentMail(mail.key, mail.message_id, str(path), already=True)
        data = mime.build(mail).as_bytes()
        with _locked(self.folder):
            atomic_write(path, data)
        return SentMail(mail.key, mail.message_id, str(path))

    def close(self) -> None:
        pass


def connect(ctx: Context) -> tuple[LocalCalendar, OutboxMailer]:
    calendars = ctx.settings.resolve(ctx.account.calendars)
    outbox = ctx.settings.resolve(ctx.account.outbox)
    for folder in (calendars, outbox):
        folder.mkdir(parents=True, exist_ok=True)
    inbox = ctx.settings.resolve(ctx.account.inbox) if ctx.account.inbox else None
    return LocalCalendar(calendars, ctx.people), OutboxMailer(outbox, inbox)
