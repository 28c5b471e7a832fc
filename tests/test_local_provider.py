from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import icalendar
import pytest

from agent.connectors.local import LocalCalendar, OutboxMailer
from agent.core import faults
from agent.core.errors import PermanentError
from agent.core.model import EventDraft, Interval, Invitation, OutgoingMail, PartStat
from agent.formats import ical
from tests.factories import at, person

WINDOW = Interval(at("2026-01-01T00:00:00+00:00"), at("2027-06-01T00:00:00+00:00"))
ANA = person("ana", "Europe/Berlin")
BEN = person("ben", "America/New_York")

HAND_MADE = """\
BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Someone//Hand made//EN\r
X-WR-CALNAME:Ana\r
BEGIN:VTIMEZONE\r
TZID:Custom/Berlin\r
BEGIN:STANDARD\r
DTSTART:19701025T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VTODO\r
UID:todo-1\r
SUMMARY:Keep me exactly as I am\r
END:VTODO\r
BEGIN:VEVENT\r
UID:standup\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Custom/Berlin:20260316T093000\r
DURATION:PT15M\r
RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=15\r
EXDATE;TZID=Custom/Berlin:20260318T093000\r
SUMMARY:Standup\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:standup\r
DTSTAMP:20260101T000000Z\r
RECURRENCE-ID;TZID=Custom/Berlin:20260319T093000\r
DTSTART;TZID=Custom/Berlin:20260319T150000\r
DTEND;TZID=Custom/Berlin:20260319T151500\r
SUMMARY:Standup (moved)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:offsite\r
DTSTAMP:20260101T000000Z\r
DTSTART;VALUE=DATE:20260401\r
DTEND;VALUE=DATE:20260403\r
SUMMARY:Offsite\r
X-MICROSOFT-CDO-BUSYSTATUS:OOF\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:floating\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260405T100000\r
DTEND:20260405T110000\r
SUMMARY:Floating lunch\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:focus\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260406T080000Z\r
DTEND:20260406T100000Z\r
SUMMARY:Focus\r
TRANSP:TRANSPARENT\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:dd\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260407T080000Z\r
DTEND:20260407T090000Z\r
SUMMARY:Development Align\r
ORGANIZER:mailto:ana@acme.example\r
ATTENDEE;PARTSTAT=ACCEPTED:mailto:ana@acme.example\r
ATTENDEE;PARTSTAT=DECLINED:mailto:ben@acme.example\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:gone\r
DTSTAMP:20260101T000000Z\r
DTSTART:20260408T080000Z\r
DTEND:20260408T090000Z\r
STATUS:CANCELLED\r
SUMMARY:Cancelled thing\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:broken\r
DTSTAMP:20260101T000000Z\r
DTSTART:2026-04-09 nonsense\r
SUMMARY:Broken\r
END:VEVENT\r
END:VCALENDAR\r
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "ana@acme.example.ics").write_text(HAND_MADE, newline="")
    return tmp_path


def by_title(events):
    out: dict[str, list] = {}
    for e in events:
        out.setdefault(e.title, []).append(e)
    return out


def test_reads_what_people_put_on_calendars(folder: Path) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    changes = cal.changes(ANA, None, WINDOW)
    assert changes.full
    events = by_title(changes.events)
    # RRULE with COUNT and an EXDATE, one instance moved by RECURRENCE-ID
    assert len(events["Standup"]) == 13
    moved = events["Standup (moved)"][0]
    assert moved.start == at("2026-03-19T14:00:00+00:00")
    # custom VTIMEZONE: 09:30 local is 08:30 UTC before DST and 07:30 after
    starts = sorted(e.start for e in events["Standup"])
    assert starts[0] == at("2026-03-16T08:30:00+00:00")
    assert at("2026-03-30T07:30:00+00:00") in starts
    assert all(e.end - e.start == timedelta(minutes=15) for e in events["Standup"])
    offsite = events["Offsite"][0]
    assert offsite.all_day and offsite.kind == "outOfOffice"
    assert offsite.start == at("2026-03-31T22:00:00+00:00") and offsite.end == at(
        "2026-04-02T22:00:00+00:00"
    )
    assert events["Floating lunch"][0].start == at("2026-04-05T08:00:00+00:00")  # Ana's wall clock
    assert events["Focus"][0].transparent and not events["Focus"][0].blocks_time
    dd = events["Development Align"][0]
    assert dd.partstat("ben@acme.example") is PartStat.DECLINED
    assert events["Cancelled thing"][0].cancelled
    assert [s.ref for s in changes.skipped] == ["broken"]


def test_a_quiet_calendar_gives_a_quiet_change(folder: Path) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    first = cal.changes(ANA, None, WINDOW)
    again = cal.changes(ANA, first.cursor, WINDOW)
    assert again.quiet and again.cursor == first.cursor


def test_busy_ignores_transparent_cancelled_and_declined(folder: Path) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    busy = cal.busy([ANA], WINDOW)["ana@acme.example"]
    assert Interval(at("2026-04-06T08:00:00+00:00"), at("2026-04-06T10:00:00+00:00")) not in busy
    assert Interval(at("2026-04-08T08:00:00+00:00"), at("2026-04-08T09:00:00+00:00")) not in busy
    assert Interval(at("2026-03-31T22:00:00+00:00"), at("2026-04-02T22:00:00+00:00")) in busy


def draft(key: str = "a" * 32) -> EventDraft:
    return EventDraft(
        key=key,
        organizer=ANA,
        attendees=(BEN,),
        title="Development Align: Ana & Ben",
        start=at("2026-04-14T08:00:00+00:00"),
        end=at("2026-04-14T09:00:00+00:00"),
        timezone="Europe/Berlin",
        series="deep_dive",
        stage="align",
    )


def test_create_is_idempotent_and_preserves_everything_else(folder: Path) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    before = (folder / "ana@acme.example.ics").read_bytes().decode()
    event = cal.create(draft())
    again = cal.create(draft())
    assert event.key == again.key == "a" * 32
    after = (folder / "ana@acme.example.ics").read_bytes().decode()
    assert after.count("BEGIN:VEVENT") == before.count("BEGIN:VEVENT") + 1
    # every line of the original file is still there, in order
    tail = before.rfind("END:VCALENDAR")
    assert after[:tail] == before[:tail] and after.endswith(before[tail:])
    parsed = icalendar.Calendar.from_ical(after)
    ours = [c for c in parsed.walk("VEVENT") if c.get("X-CADENCE-KEY")]
    assert len(ours) == 1
    assert str(ours[0]["UID"]) == "a" * 32 + "@cadence"
    assert str(ours[0]["ORGANIZER"]) == "mailto:ana@acme.example"
    assert int(ours[0]["SEQUENCE"]) == 0 and ours[0].get("DTSTAMP")
    # the attendee's calendar got the same event, and a VTIMEZONE for its zone
    ben = (folder / "ben@acme.example.ics").read_text()
    assert "X-CADENCE-KEY:" + "a" * 32 in ben and "TZID:Europe/Berlin" in ben
    assert cal.find(BEN, "a" * 32) is not None
    assert cal.find(BEN, "b" * 32) is None


def test_move_and_cancel_only_own_events(folder: Path) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    event = cal.create(draft())
    later = Interval(at("2026-04-15T08:00:00+00:00"), at("2026-04-15T09:00:00+00:00"))
    moved = cal.move(ANA, event, later)
    assert moved.start == later.start and moved.sequence == 1
    assert cal.find(BEN, event.key or "").start == later.start
    cal.cancel(ANA, moved)
    assert cal.find(ANA, event.key or "").cancelled
    theirs = next(e for e in cal.changes(ANA, None, WINDOW).events if e.title == "Focus")
    with pytest.raises(PermanentError):
        cal.cancel(ANA, theirs)
    with pytest.raises(PermanentError):
        cal.move(ANA, theirs, later)


class Crash(BaseException):
    """What SIGKILL does to a write: nothing after it runs, no handler, no cleanup."""


def crash_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def point(reached: str) -> None:
        if reached == name:
            raise Crash(reached)

    monkeypatch.setattr(faults, "point", point)


def test_a_booking_interrupted_between_two_calendars_reaches_both(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the organizer's file and before the attendee's: the next process
    finishes the write when it reads the folder, though the organizer's copy exists and
    nobody will call create again."""
    crash_at(monkeypatch, "local:insert:between-calendars")
    with pytest.raises(Crash):
        LocalCalendar(folder, [ANA, BEN]).create(draft())
    monkeypatch.undo()
    cal = LocalCalendar(folder, [ANA, BEN])  # the restarted process
    assert cal.find(ANA, "a" * 32) is not None
    titles = [e.title for e in cal.changes(BEN, None, WINDOW).events]
    assert titles == ["Development Align: Ana & Ben"]
    assert cal.changes(ANA, None, WINDOW).full
    ben = (folder / "ben@acme.example.ics").read_text()
    assert ben.count("BEGIN:VEVENT") == 1 and "TZID:Europe/Berlin" in ben
    assert not list(folder.glob(".cadence.journal*"))


def test_a_move_interrupted_between_two_calendars_moves_both(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cal = LocalCalendar(folder, [ANA, BEN])
    event = cal.create(draft())
    later = Interval(at("2026-04-15T08:00:00+00:00"), at("2026-04-15T09:00:00+00:00"))
    crash_at(monkeypatch, "local:replace:between-calendars")
    with pytest.raises(Crash):
        cal.move(ANA, event, later)
    monkeypatch.undo()
    cal = LocalCalendar(folder, [ANA, BEN])
    for who in (ANA, BEN):
        [mine] = [e for e in cal.changes(who, None, WINDOW).events if e.key]
        assert (mine.start, mine.sequence) == (later.start, 1), who.email


def test_an_error_between_two_calendars_leaves_no_journal_behind(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error is not a crash: the caller hears of it, and every later read works."""
    (folder / "ben@acme.example.ics").write_text("BEGIN:VCALENDAR\r\n")  # no END
    with pytest.raises(PermanentError):
        LocalCalendar(folder, [ANA, BEN]).create(draft())
    assert not (folder / ".cadence.journal").exists()
    assert LocalCalendar(folder, [ANA, BEN]).changes(ANA, None, WINDOW).events


def test_unreadable_file_is_one_skipped_item(tmp_path: Path) -> None:
    (tmp_path / "ana@acme.example.ics").write_text("this is not a calendar")
    changes = LocalCalendar(tmp_path, [ANA]).changes(ANA, None, WINDOW)
    assert changes.events == () and len(changes.skipped) == 1


def test_outbox_writes_each_mail_once(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path)
    ics = ical.invitation(draft(), stamp=datetime(2026, 4, 1, tzinfo=UTC))
    mail = OutgoingMail(
        key="k1:invite",
        sender="ana@acme.example",
        to=("ana@acme.example", "ben@acme.example"),
        subject="Invitation\r\nBcc: victim@evil.example",
        text="plain",
        html="<p>html</p>",
        message_id="<k1.invite@cadence>",
        invitation=Invitation("REQUEST", ics),
    )
    first = mailer.send(mail)
    second = mailer.send(mail)
    assert second.already and first.where == second.where
    assert len(list(tmp_path.glob("*.eml"))) == 1
    msg = email.message_from_bytes(Path(first.where).read_bytes(), policy=policy.default)
    assert msg["Bcc"] is None and "\n" not in msg["Subject"]
    assert msg["Message-ID"] == "<k1.invite@cadence>"
    parts = [p.get_content_type() for p in msg.walk()]
    assert parts == ["multipart/alternative", "text/plain", "text/html", "text/calendar"]
    cal_part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert cal_part.get_param("method") == "REQUEST"
    parsed = icalendar.Calendar.from_ical(cal_part.get_content())
    assert str(parsed["METHOD"]) == "REQUEST"
    assert str(next(iter(parsed.walk("VEVENT")))["UID"]) == "a" * 32 + "@cadence"


def test_outbox_file_names_survive_any_uid(tmp_path: Path) -> None:
    """Outbox keys hold calendar UIDs: a "/" or a "|" must neither make a folder nor a
    name some file systems refuse, and two keys never share a file."""
    mailer = OutboxMailer(tmp_path)
    keys = ["a/b|c@x.example-20261124T1400:agenda", "a-b|c@x.example-20261124T1400:agenda"]
    where = []
    for key in keys:
        mail = OutgoingMail(
            key=key,
            sender="ana@acme.example",
            to=("ana@acme.example",),
            subject="Agenda",
            text="plain",
            html="<p>html</p>",
            message_id="<m@cadence>",
        )
        sent = mailer.send(mail)
        assert not sent.already and mailer.was_sent(mail)
        where.append(Path(sent.where))
    assert {p.parent for p in where} == {tmp_path} and where[0] != where[1]
    assert all(not set(p.name) & set('/|\\:*?"<>') for p in where)
