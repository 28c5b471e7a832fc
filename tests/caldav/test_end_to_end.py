"""The reply loop against a real Radicale, a real aiosmtpd and Dovecot: a declined
invitation read over IMAP moves the meeting (the tick itself is in
tests/connectors/test_contract.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

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


def test_a_server_free_busy_that_disagrees_with_the_events_changes_nothing_on_reruns(
    settings: config.Settings, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose free-busy is wrong (Radicale mis-reads some time zones) must not
    make the slot search and the review of booked meetings disagree: a meeting booked
    over Ben's board meetings would be moved by the next tick, and so on."""
    from agent.connectors.caldav.busy import Busy

    monkeypatch.setattr(Busy, "_freebusy", lambda self, url, window: [])  # "all free"
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        first = engine.tick(NOW)
        booked = [a for a in first.actions if a.kind == "book" and a.outcome == "done"]
        assert first.errors == [] and len(booked) == 1
        [event] = [e for e in engine.store.events(["ana@example.org"]) if e.key]
    board = [
        (NOW + timedelta(days=2 + d, hours=-5), NOW + timedelta(days=2 + d, hours=3))
        for d in range(3)
    ]
    assert all(event.end <= s or event.start >= e for s, e in board)  # not over the board
    sent = len(smtp.received)
    for n in (1, 2):
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            again = engine.tick(NOW + timedelta(minutes=10 * n))
        assert again.errors == []
        assert [a for a in again.actions if a.outcome in ("done", "failed")] == []
    assert len(smtp.received) == sent


@pytest.mark.skipif(
    DOVECOT is None, reason="Dovecot is not installed (apt-get install dovecot-imapd)"
)
@pytest.mark.parametrize("filed", [True, False], ids=["copy-filed", "no-copy"])
def test_an_invitation_whose_send_was_lost_is_confirmed_in_the_sent_folder(
    tmp_path: Path,
    radicale: Radicale,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    filed: bool,
) -> None:
    """The SMTP server kept the invitation but the tick never read its 250. The next
    tick looks in ``imap.sent_folder``: the server's copy there means sent (never sent
    twice); no copy there means it never went, and it is sent once."""
    from agent.store.sqlite import Store

    with Dovecot() as imap:
        for user in ("ana", "ben", "chloe"):
            radicale.make_calendar(user)
        meeting(radicale, "align-1", "Development Align: Ana & Ben", NOW - timedelta(days=100), 60)
        meeting(
            radicale, "check-1", "Development check-in: Ana & Ben", NOW - timedelta(days=12), 15
        )
        monkeypatch.setenv(PASSWORD_ENV, "e2e-secret")
        monkeypatch.setenv("CADENCE_TEST_IMAP_PASSWORD", imap.credentials[1])
        account_extra = (
            f"    imap: {{host: 127.0.0.1, port: {imap.port}, ssl: false, starttls: false, "
            f"username: {imap.credentials[0]}, password_env: CADENCE_TEST_IMAP_PASSWORD, "
            "sent_folder: Sent}\n"
        )
        path = write_config(
            tmp_path / "cadence.yaml", radicale, smtp, extra=PROGRAMS, account_extra=account_extra
        )
        settings = config.load(path)
        smtp.chaos(1.0, seed=0, kinds=("lost" if filed else "drop",))
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            first = engine.tick(NOW)
        assert first.errors and len(smtp.received) == (1 if filed else 0)
        imap.deliver(b"Subject: x\r\nMessage-ID: <x@y>\r\n\r\nx\r\n", folder="Sent")
        if filed:
            imap.deliver(smtp.received[0].raw, folder="Sent")  # as the server files it
        smtp.chaos_rate = 0.0
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            second = engine.tick(NOW + timedelta(minutes=10))
        assert second.errors == []
        invites = [a for a in second.actions if a.kind == "invite"]
        assert [a.outcome for a in invites] == ["already" if filed else "done"]
        assert len(smtp.received) == 1  # one invitation, whichever way
        store = Store(settings.store)
        try:
            assert {r["status"] for r in store.outbox_rows()} == {"sent"}
        finally:
            store.close()
