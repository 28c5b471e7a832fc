"""The whole tick against a real Radicale and a real aiosmtpd.

Ana's quarterly deep dive with her leader Ben has lapsed; the tick finds it, books the
next one into time both have free, mails the iTIP invitation, later the agenda, and a
rerun changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from agent.core.model import Interval
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests.caldav.servers import DOVECOT, Dovecot, Radicale, SmtpSink, client_ics
from tests.connectors.backends.caldav import PASSWORD_ENV, write_config

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday

TITLE = "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
PROGRAMS = """\
relationships:
  - {employee: ana@example.org, partner: ben@example.org, role: leader, program: leader-cycle}
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "@TITLE@"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
      check_in:
        every: 30d
        duration: 15m
        skip_near: deep_dive
        title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bcheck-?in\\b'
    lapse_grace: 7d
    booking: {horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m}
""".replace("@TITLE@", TITLE)


def meeting(radicale: Radicale, uid: str, title: str, start: datetime, minutes: int) -> None:
    """Put a held meeting on both calendars, as their own calendar clients would."""
    ics = client_ics(
        uid,
        title,
        start,
        start + timedelta(minutes=minutes),
        organizer="ana@example.org",
        attendees=["ana@example.org", "ben@example.org"],
    )
    for user in ("ana", "ben"):
        radicale.put(radicale.calendar_url(user) + f"{uid}.ics", ics)


def busy_mornings(radicale: Radicale) -> None:
    """Ben is busy on the first three possible days, so the slot search looks further."""
    radicale.put(
        radicale.calendar_url("ben") + "busy.ics",
        client_ics(
            "busy",
            "Board meeting",
            NOW + timedelta(days=2, hours=-5),
            NOW + timedelta(days=2, hours=3),
            rrule="FREQ=DAILY;COUNT=3",
        ),
    )


@pytest.fixture
def settings(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> config.Settings:
    for user in ("ana", "ben", "chloe"):
        radicale.make_calendar(user)
    monkeypatch.setenv(PASSWORD_ENV, "e2e-secret")
    # the last deep dive was 100 days ago (lapsed: 90 days + 7 days grace); a check-in
    # 12 days ago keeps the check-in series healthy
    meeting(radicale, "align-1", "Development Align: Ana & Ben", NOW - timedelta(days=100), 60)
    meeting(radicale, "check-1", "Development check-in: Ana & Ben", NOW - timedelta(days=12), 15)
    busy_mornings(radicale)
    path = write_config(tmp_path / "cadence.yaml", radicale, smtp, extra=PROGRAMS)
    return config.load(path)


def test_tick_books_invites_sends_agenda_and_reruns_quietly(
    settings: config.Settings, radicale: Radicale, smtp: SmtpSink
) -> None:
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
    assert report.errors == []
    booked = [a for a in report.actions if a.kind == "book" and a.outcome == "done"]
    assert [(a.relationship, a.series) for a in booked] == [
        ("ana@example.org/ben@example.org", "deep_dive")
    ]
    key = booked[0].data["key"]
    start = datetime.strptime(booked[0].data["start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    slot = Interval(start, start + timedelta(hours=1))

    # the booking is on Ana's calendar (she organizes), tagged, outside Ben's busy time
    stored = radicale.get(radicale.calendar_url("ana") + f"{key}.ics")
    assert stored is not None
    (vevent,) = icalendar.Calendar.from_ical(stored).walk("VEVENT")
    assert str(vevent["X-CADENCE-KEY"]) == key
    assert vevent.decoded("DTSTART").astimezone(UTC) == slot.start
    assert "Development Advance" in str(vevent["SUMMARY"])  # the stage after align
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        calendar, _ = engine.connection("team")
        ben = settings.people["ben@example.org"]
        ben_busy = calendar.busy([ben], Interval(NOW, NOW + timedelta(days=20)))[ben.email]
    assert not any(b.overlaps(slot) for b in ben_busy)
    assert slot.start >= NOW + timedelta(days=2)

    # the invitation went out by SMTP as a real iTIP REQUEST
    invites = [a for a in report.actions if a.kind == "invite" and a.outcome == "done"]
    assert len(invites) == 1
    (message,) = smtp.messages()
    assert sorted(a.strip() for a in message["To"].split(",")) == [
        "ana@example.org",
        "ben@example.org",
    ]
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REQUEST"
    itip = icalendar.Calendar.from_ical(part.get_content())
    assert str(itip["METHOD"]) == "REQUEST"
    (invited,) = itip.walk("VEVENT")
    assert str(invited["UID"]) == f"{key}@cadence"
    assert invited.decoded("DTSTART").astimezone(UTC) == slot.start
    assert str(invited["ORGANIZER"]) == "mailto:ana@example.org"
    assert int(invited["SEQUENCE"]) == 0

    # a second tick right away: nothing to do, one request per calendar
    before = len(radicale.requests)
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        quiet = engine.tick(NOW + timedelta(minutes=10))
    assert quiet.errors == []
    assert [a for a in quiet.actions if a.outcome in ("done", "failed")] == []
    assert [r.report for r in radicale.requests[before:]] == ["sync-collection"] * 2
    assert len(smtp.received) == 1

    # the day before the meeting the agenda goes out, once
    agenda_time = slot.start - timedelta(hours=12)
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        day_before = engine.tick(agenda_time)
        again = engine.tick(agenda_time + timedelta(minutes=10))
    assert day_before.errors == [] and again.errors == []
    assert day_before.count("agenda") == 1 and again.count("agenda") == 0
    assert len(smtp.received) == 2
    agenda = smtp.messages()[1]
    assert "agenda" in agenda["Subject"].lower() or "Advance" in agenda["Subject"]
    assert agenda["Message-ID"] != message["Message-ID"]
    assert [a for a in again.actions if a.outcome in ("done", "failed")] == []


@pytest.mark.skipif(
    DOVECOT is None, reason="Dovecot is not installed (apt-get install dovecot-imapd)"
)
def test_a_declined_invitation_is_read_over_imap_and_seen_by_the_next_tick(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Dovecot() as imap:
        for user in ("ana", "ben", "chloe"):
            radicale.make_calendar(user)
        meeting(radicale, "align-1", "Development Align: Ana & Ben", NOW - timedelta(days=100), 60)
        meeting(
            radicale, "check-1", "Development check-in: Ana & Ben", NOW - timedelta(days=12), 15
        )
        busy_mornings(radicale)
        monkeypatch.setenv(PASSWORD_ENV, "e2e-secret")
        monkeypatch.setenv("CADENCE_TEST_IMAP_PASSWORD", imap.credentials[1])
        account_extra = (
            f"    imap: {{host: 127.0.0.1, port: {imap.port}, ssl: false, starttls: false, "
            f"username: {imap.credentials[0]}, password_env: CADENCE_TEST_IMAP_PASSWORD}}\n"
        )
        programs = PROGRAMS + "    recap: {collect_replies: true}\n"
        path = write_config(
            tmp_path / "cadence.yaml", radicale, smtp, extra=programs, account_extra=account_extra
        )
        settings = config.load(path)

        with Engine(settings, retry=RetryPolicy.none()) as engine:
            first = engine.tick(NOW)
        assert first.errors == [] and first.count("invite") == 1
        (invitation,) = smtp.messages()
        part = next(p for p in invitation.walk() if p.get_content_type() == "text/calendar")
        request = icalendar.Calendar.from_ical(part.get_content())
        (vevent,) = request.walk("VEVENT")
        uid = str(vevent["UID"])

        # Ben's mail client answers the invitation; the reply lands in the IMAP folder
        imap.deliver(decline(request, "ben@example.org"))

        with Engine(settings, retry=RetryPolicy.none()) as engine:
            second = engine.tick(NOW + timedelta(minutes=10))
        assert second.errors == []
        # the decline was recorded, the engine moved the meeting (enough notice), and the
        # attendee got an updated invitation with a higher SEQUENCE
        assert [(a.kind, a.outcome) for a in second.actions if a.series == "deep_dive"] == [
            ("lapse", "found"),
            ("move", "done"),
            ("invite", "done"),
        ]
        key = uid.removesuffix("@cadence")
        stored = radicale.get(radicale.calendar_url("ana") + f"{key}.ics")
        assert stored is not None
        (event,) = icalendar.Calendar.from_ical(stored).walk("VEVENT")
        assert event.decoded("DTSTART") != vevent.decoded("DTSTART")
        assert int(event["SEQUENCE"]) == 1
        assert event["ATTENDEE"].params["PARTSTAT"] == "NEEDS-ACTION"  # asked again
        update = smtp.messages()[-1]
        part = next(p for p in update.walk() if p.get_content_type() == "text/calendar")
        (updated,) = icalendar.Calendar.from_ical(part.get_content()).walk("VEVENT")
        assert str(updated["UID"]) == uid and int(updated["SEQUENCE"]) == 1
        assert updated.decoded("DTSTART") == event.decoded("DTSTART")

        # the old answer (SEQUENCE 0) is still in the mailbox: it is about the old time
        # and is not applied to the moved meeting; the next tick is quiet
        sent = len(smtp.received)
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            third = engine.tick(NOW + timedelta(minutes=20))
        assert third.errors == []
        assert [a for a in third.actions if a.outcome in ("done", "failed")] == []
        assert len(smtp.received) == sent
        again = radicale.get(radicale.calendar_url("ana") + f"{key}.ics")
        assert again is not None and "PARTSTAT=DECLINED" not in again


def decline(request: icalendar.Calendar, attendee: str) -> bytes:
    """The iTIP REPLY a mail client sends when ``attendee`` declines ``request``."""
    from email.message import EmailMessage
    from email.policy import SMTP

    (invited,) = request.walk("VEVENT")
    reply = icalendar.Calendar()
    reply.add("PRODID", "-//Mail Client//EN")
    reply.add("VERSION", "2.0")
    reply.add("METHOD", "REPLY")
    event = icalendar.Event()
    for name in ("UID", "SEQUENCE", "DTSTART", "DTEND", "ORGANIZER", "SUMMARY"):
        event.add(name, invited[name])
    event.add("DTSTAMP", NOW + timedelta(minutes=5))
    event.add("ATTENDEE", f"mailto:{attendee}", parameters={"PARTSTAT": "DECLINED"})
    reply.add_component(event)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = attendee
    msg["To"] = str(invited["ORGANIZER"]).removeprefix("mailto:")
    msg["Subject"] = f"Declined: {invited['SUMMARY']}"
    msg["Message-ID"] = "<decline-1@client.example>"
    msg.set_content("Ben Example has declined this invitation.")
    msg.add_alternative(reply.to_ical().decode(), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes()
