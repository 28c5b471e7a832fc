"""The embedded provider: one ``<email>.ics`` file per person and an outbox of ``.eml`` files.

Writes are surgical: a booking is inserted as new text before the calendar's closing
line, and the agent's own events are replaced block by block, so no other component of
a person's file is ever re-serialised, reordered or lost. Every write is an atomic
replace under a lock shared with other Cadence processes, keeps the file's encoding and
mode (a new file gets 0600, a new folder 0700), and leaves no temporary file behind
when it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from agent.connectors import Context, FileCheck
from agent.connectors.base import Busy, IncomingMail, ensure_own
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
from agent.formats import ical, mime, zones
from agent.formats.recurrence import as_list

#: the write to several calendar files in progress (see ``LocalCalendar._write_all``)
JOURNAL = ".cadence.journal"
_BLOCK = re.compile(r"BEGIN:VEVENT\r?\n.*?END:VEVENT\r?\n", re.S)
#: the mode of files and folders Cadence creates: they hold people's calendars and mail
FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: the longest file name Cadence writes (most file systems stop at 255 bytes)
MAX_NAME = 200


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` by write-to-temporary, fsync and rename.

    An existing file keeps its mode, never widened to ``mode``; a new one gets
    ``mode``. The temporary file is removed when any step fails (a full disk).
    """
    try:
        keep: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep = None
    tmp = path.with_name(f".{path.name[:MAX_NAME]}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, mode if keep is None else keep)
            _write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_fully(fd: int, data: bytes) -> None:
    """Write all of ``data``: os.write may write less than asked."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) with mode 0700 unless it exists."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):  # Path.mkdir gives parents the default mode
        path.mkdir(mode=FOLDER_MODE, exist_ok=True)


def safe_name(name: str, suffix: str) -> str:
    """``name + suffix``, or a bounded name for a long one: a readable prefix and a hash
    of the whole name, so that any calendar UID gives a file name the system accepts."""
    if len((name + suffix).encode()) <= MAX_NAME:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:20]
    prefix = re.sub(r"%[0-9A-Fa-f]?$", "", name[:100])  # never half an escape
    return f"{prefix}~{digest}{suffix}"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / ".cadence.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    with open(fd, "a+") as handle:
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
        """The person's calendar file, always directly inside the folder.

        The config refuses such addresses already; this refuses them again where the
        path is made (raises PermanentError), so no address can name a file elsewhere.
        """
        if any(c in email for c in ("/", "\\", "\0", os.sep)) or ".." in email:
            raise PermanentError(
                f"{email!r} cannot name a calendar file in {self.folder}: "
                "an address with a path separator or '..' would leave the folder"
            )
        return self.folder / f"{email}.ics"

    def _read(self, email: str) -> bytes:
        try:
            return self.path(email).read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:  # a folder in its place, no permission: that calendar only
            raise PermanentError(f"cannot read {self.path(email)}: {exc.strerror}") from exc

    def _text(self, email: str) -> ical.Text:
        """The decoded text of a person's file, for writing into it."""
        try:
            return ical.decode(self._read(email))
        except ValueError as exc:
            raise PermanentError(f"{self.path(email)}: {exc}; not writing into it") from exc

    def _calendar(self, email: str, text: str) -> Any:
        """Parse a person's file (to find or change one event in it)."""
        try:
            return zones.parse(text)
        except Exception as exc:  # the parser raises more than ValueError on broken text
            raise PermanentError(
                f"{self.path(email)} is not valid iCalendar ({type(exc).__name__}: {exc})"
            ) from exc

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
        text = self._text(person.email).text
        if key not in text:
            return None
        cal = self._calendar(person.email, text)
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
        found = self._text(email)
        text = found.text
        if f"UID:{uid}" in text:
            return  # already there: a retry after a crash
        if not text.strip():
            text = ical.calendar([]).to_ical().decode()
        else:
            _check_structure(path, text)
        newline = "\r\n" if "\r\n" in text else "\n"
        addition = vevent.to_ical().decode()
        if f"TZID:{tzid}" not in text and tzid != "UTC":
            around = vevent.decoded("DTSTART").date()
            addition = ical.vtimezone(tzid, around).to_ical().decode() + addition
        addition = addition.replace("\r\n", newline)
        end = text.rstrip().rfind("END:VCALENDAR")
        if end < 0:
            raise PermanentError(f"{path} has no END:VCALENDAR; not writing into it")
        _write_text(path, found, text[:end] + addition + text[end:])

    def _replace(self, email: str, uid: str, vevent: Any) -> None:
        path = self.path(email)
        found = self._text(email)
        text = found.text
        newline = "\r\n" if "\r\n" in text else "\n"
        for match in _BLOCK.finditer(text):
            if f"UID:{uid}" in match.group(0):
                _check_structure(path, text)
                new = vevent.to_ical().decode().replace("\r\n", newline)
                _write_text(path, found, text[: match.start()] + new + text[match.end() :])
                return

    def _update(
        self, person: Person, event: Event, reset_replies: bool = False, **changes: object
    ) -> Event:
        ensure_own(event)
        cal = self._calendar(person.email, self._text(person.email).text)
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
            for attendee in as_list(target.get("ATTENDEE")):
                mine = ical.address(attendee) == organizer
                attendee.params["PARTSTAT"] = "ACCEPTED" if mine else "NEEDS-ACTION"
        emails = {ical.address(a) for a in as_list(target.get("ATTENDEE"))}
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


def _write_text(path: Path, found: ical.Text, text: str) -> None:
    """Write ``text`` into ``path`` in the encoding the file had."""
    try:
        data = found.encode(text)
    except UnicodeEncodeError as exc:
        raise PermanentError(
            f"{path} is {found.codec.upper()} text, which cannot hold this booking "
            f"({exc.reason}); convert it to UTF-8 to let Cadence write into it"
        ) from exc
    atomic_write(path, data)


def _check_structure(path: Path, text: str) -> None:
    """Refuse to write into a file whose components do not nest: a booking inserted
    into it could land inside a broken component, or be lost by the next reader.
    (Text outside the calendar is left alone, as it is never written over.)"""
    open_: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line[:1] in (" ", "\t"):
            continue  # the continuation of a folded line
        head, _, name = line.partition(":")
        head, name = head.strip().upper(), name.strip().upper()
        if head == "BEGIN":
            open_.append(name)
        elif head == "END":
            if not open_ or open_[-1] != name:
                closes = f"BEGIN:{open_[-1]}" if open_ else "nothing"
                raise PermanentError(
                    f"{path}: line {number}: END:{name} closes {closes} (a broken "
                    "component); not writing into it"
                )
            open_.pop()
    if open_:
        raise PermanentError(f"{path}: BEGIN:{open_[-1]} is never closed; not writing into it")


HEADER_LIMIT = 256 * 1024  # no real header is longer; a file that is all header stops here


def _header_of(path: Path) -> bytes:
    """The header of a mail file, up to its blank line, without reading the body."""
    lines: list[bytes] = []
    total = 0
    with path.open("rb") as stream:
        while total < HEADER_LIMIT:
            line = stream.readline(HEADER_LIMIT - total)
            if line in (b"", b"\r\n", b"\n"):
                break
            lines.append(line)
            total += len(line)
    return b"".join(lines) + b"\r\n"


class OutboxMailer:
    """Mail as ``.eml`` files; the file name is the mail's key, so a resend is a no-op.

    With an ``inbox`` folder it also reads replies: every ``.eml`` file in it (only the
    header of a file larger than ``max_size``).
    """

    def __init__(self, folder: Path, inbox: Path | None = None, max_size: int | None = None):
        self.folder = folder
        self.inbox = inbox
        self.max_size = max_size

    def replies(self) -> list[IncomingMail]:
        if self.inbox is None or not self.inbox.is_dir():
            return []
        found = []
        for path in sorted(self.inbox.glob("*.eml")):
            try:
                size = path.stat().st_size
                if self.max_size is not None and size > self.max_size:
                    found.append(IncomingMail(str(path), _header_of(path), size, whole=False))
                else:
                    found.append(IncomingMail(str(path), path.read_bytes(), size))
            except OSError as exc:
                raise PermanentError(f"cannot read {path}: {exc}") from exc
        return found

    def marks(self) -> dict[str, str]:
        return {}  # the folder is listed whole: the store knows which files were read

    def resume(self, marks: Mapping[str, str], read: Iterable[str] = ()) -> None:
        pass

    def path(self, mail: OutgoingMail) -> Path:
        # keys hold calendar UIDs, which may hold "/" or characters no file system takes,
        # and be of any length; short names stay as they always were
        name = urllib.parse.quote(mail.key.replace(":", "-"), safe="@+=._-")
        return self.folder / safe_name(name, ".eml")

    def was_sent(self, mail: OutgoingMail) -> bool:
        return self.path(mail).exists()

    def send(self, mail: OutgoingMail) -> SentMail:
        path = self.path(mail)
        if path.exists():
            return SentMail(mail.key, mail.message_id, str(path), already=True)
        try:
            data = mime.build(mail).as_bytes()
        except ValueError as exc:
            raise PermanentError(f"mail {mail.key}: {exc}") from None
        with _locked(self.folder):
            atomic_write(path, data)
        return SentMail(mail.key, mail.message_id, str(path))

    def close(self) -> None:
        pass


def connect(ctx: Context) -> tuple[LocalCalendar, OutboxMailer]:
    """Open the account's folders. A missing calendars folder is an error: read as empty,
    it would make every series look never held and have all of them booked again."""
    calendars = calendars_folder(ctx)
    outbox = ctx.settings.resolve(ctx.account.outbox)
    make_folder(outbox)
    inbox = ctx.settings.resolve(ctx.account.inbox) if ctx.account.inbox else None
    return LocalCalendar(calendars, ctx.people), OutboxMailer(
        outbox, inbox, ctx.settings.reply_size_limit(ctx.name)
    )


def file_checks(ctx: Context) -> list[FileCheck]:
    """The checks ``connect`` makes of the account's files, for ``cadence check``."""
    return [("calendars", lambda: calendars_folder(ctx))]


def calendars_folder(ctx: Context) -> Path:
    """The account's calendars folder; raise PermanentError when it is not one."""
    folder = ctx.settings.resolve(ctx.account.calendars)
    problem = missing_calendars(folder)
    if problem:
        raise PermanentError(problem)
    return folder


def missing_calendars(folder: Path) -> str | None:
    """Why ``folder`` cannot be the calendars folder (missing, not a folder), or None."""
    if folder.is_dir():
        return None
    what = "is not a folder" if folder.exists() else "does not exist"
    return (
        f"calendars folder {folder} {what}: create it, or correct `calendars:` in the "
        "config (Cadence does not start from empty calendars)"
    )
