"""Reading replies from a real Dovecot (Debian's dovecot-imapd), and recording answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import icalendar
import pytest

from agent.connectors.caldav import CalDAVCalendar
from agent.connectors.caldav.replies import ReplyCollector
from agent.connectors.smtp import ImapReader, itip_replies
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import EventDraft, PartStat, Person
from agent.core.retry import RetryPolicy
from tests.caldav.servers import DOVECOT, Dovecot, Radicale, free_port, tls_files

pytestmark = pytest.mark.skipif(
    DOVECOT is None, reason="Dovecot is not installed (Debian: apt-get install dovecot-imapd)"
)

TODAY = date(2026, 11, 23)


def itip_reply(uid: str, attendee: str, partstat: str, sequence: int = 0) -> bytes:
    """An attendee's answer as Thunderbird or Apple Mail sends it (RFC 6047)."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//Mail Client//EN")
    cal.add("VERSION", "2.0")
    cal.add("METHOD", "REPLY")
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", datetime(2026, 11, 23, 15, tzinfo=UTC))
    event.add("SEQUENCE", sequence)
    event.add("ORGANIZER", "mailto:ben@example.org")
    event.add("ATTENDEE", f"mailto:{attendee}", parameters={"PARTSTAT": partstat})
    cal.add_component(event)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = attendee
    msg["To"] = "ben@example.org"
    msg["Subject"] = f"{partstat.title()}: Development Align"
    msg["Message-ID"] = f"<reply-{partstat.lower()}-{sequence}@client.example>"
    msg.set_content(f"{attendee} has {partstat.lower()} this invitation.")
    msg.add_alternative(cal.to_ical().decode(), subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes()


def plain_mail(message_id: str, in_reply_to: str | None, text: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "ana@example.org"
    msg["To"] = "ben@example.org"
    msg["Subject"] = "Re: Recap"
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(text)
    return msg.as_bytes()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


def reader(server: Dovecot, **kw: object) -> ImapReader:
    options: dict[str, object] = dict(
        ssl_mode="plain",
        username=server.credentials[0],
        password=server.credentials[1],
        retry=RetryPolicy.none(),
    )
    options.update(kw)
    return ImapReader("127.0.0.1", server.port, **options)  # type: ignore[arg-type]


def test_replies_to_the_agents_mail_and_itip_answers_are_found(dovecot: Dovecot) -> None:
    dovecot.deliver(plain_mail("<r1@client.example>", "<recap.k1@cadence>", "Done: item 2"))
    dovecot.deliver(plain_mail("<other@client.example>", "<someone@else>", "unrelated"))
    dovecot.deliver(plain_mail("<new@client.example>", None, "not a reply"))
    dovecot.deliver(itip_reply("k1@cadence", "ana@example.org", "DECLINED"))

    found = reader(dovecot).replies({"<recap.k1@cadence>"}, TODAY - timedelta(days=7))

    by_id = {r.message_id: r for r in found}
    assert set(by_id) == {"<r1@client.example>", "<reply-declined-0@client.example>"}
    recap = by_id["<r1@client.example>"]
    assert recap.answers == ("<recap.k1@cadence>",) and "Done: item 2" in recap.text
    (answer,) = by_id["<reply-declined-0@client.example>"].itip
    assert (answer.uid, answer.organizer, answer.attendee, answer.partstat) == (
        "k1@cadence",
        "ben@example.org",
        "ana@example.org",
        PartStat.DECLINED,
    )
    # nothing was marked as read
    assert all(b"\\Seen" not in f for f in dovecot.flags())


def test_imaps_with_a_private_ca(tmp_path: Path) -> None:
    cert, key, ca = tls_files(tmp_path)
    with Dovecot(tls=(cert, key)) as server:
        server.deliver(plain_mail("<r1@client.example>", "<a@cadence>", "hello"))
        secure = reader(server, ssl_mode="ssl", ca_bundle=str(ca))
        assert [r.message_id for r in secure.replies({"<a@cadence>"}, TODAY)] == [
            "<r1@client.example>"
        ]
        with pytest.raises(PermanentError, match="ca_bundle"):
            reader(server, ssl_mode="ssl").replies({"<a@cadence>"}, TODAY)


def test_wrong_password_is_permanent_and_unreachable_is_transient(dovecot: Dovecot) -> None:
    with pytest.raises(TransientError):
        ImapReader(
            "127.0.0.1",
            free_port(),
            ssl_mode="plain",
            username="u",
            password="p",
            timeout=2,
            retry=RetryPolicy.none(),
        ).replies((), TODAY)
    with pytest.raises(ConfigError, match="without TLS"):
        ImapReader("imap.example.org", 143, ssl_mode="plain", username="u", password="p")
    with pytest.raises(PermanentError, match="folder"):
        reader(dovecot, folder="Missing").replies((), TODAY)
    # last: Dovecot slows down logins from an address after a failed one
    with pytest.raises(PermanentError, match="login refused"):
        reader(dovecot, password="wrong").replies((), TODAY)


def test_declined_answer_is_recorded_on_the_organizers_event(
    dovecot: Dovecot, calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana, ben = team["ana"], team["ben"]
    key = "0123456789abcdef0123456789abcdef"
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    created = calendar.create(
        EventDraft(
            key=key,
            organizer=ben,
            attendees=(ana,),
            title="Development Align: Ana & Ben",
            start=start,
            end=start + timedelta(hours=1),
            timezone=ben.timezone,
        )
    )
    assert created.partstat(ana.email) == PartStat.NEEDS_ACTION
    # an answer to an older version, a stranger's answer, then Ana's decline
    dovecot.deliver(itip_reply(f"{key}@cadence", ana.email, "ACCEPTED", sequence=-1))
    dovecot.deliver(itip_reply(f"{key}@cadence", "mallory@example.org", "ACCEPTED"))
    dovecot.deliver(itip_reply(f"{key}@cadence", ana.email, "DECLINED"))
    collector = ReplyCollector(
        reader(dovecot), {p.email: p for p in team.values()}, clock=lambda: start
    )
    calendar.replies = collector

    window_start = start - timedelta(days=30)
    from agent.core.model import Interval

    changes = calendar.changes(ben, None, Interval(window_start, start + timedelta(days=30)))
    (event,) = [e for e in changes.events if e.key == key]
    assert event.partstat(ana.email) == PartStat.DECLINED
    assert event.sequence == created.sequence  # an answer does not change the meeting
    assert "mallory@example.org" not in {a.email for a in event.attendees}
    stored = radicale.get(radicale.calendar_url("ben") + f"{key}.ics")
    assert stored is not None and "PARTSTAT=DECLINED" in stored

    # read again: nothing new to record, no further write
    puts = radicale.count("PUT")
    collector._last = None
    assert collector.collect(calendar) == []
    assert radicale.count("PUT") == puts


def test_itip_replies_ignore_other_methods() -> None:
    import email

    raw = itip_reply("x@cadence", "ana@example.org", "ACCEPTED").replace(
        b"METHOD:REPLY", b"METHOD:REQUEST"
    )
    message = email.message_from_bytes(raw, policy=SMTP)
    assert isinstance(message, EmailMessage)
    assert itip_replies(message) == ()


def test_a_reader_asked_again_fetches_only_new_mail(dovecot: Dovecot) -> None:
    imap = reader(dovecot)
    dovecot.deliver(itip_reply("a@cadence", "ana@example.org", "ACCEPTED"))
    first = imap.replies((), TODAY, new_only=True)
    assert [r.itip[0].uid for r in first] == ["a@cadence"]
    assert imap.replies((), TODAY, new_only=True) == []
    dovecot.deliver(itip_reply("b@cadence", "ana@example.org", "TENTATIVE"))
    assert [r.itip[0].uid for r in imap.replies((), TODAY, new_only=True)] == ["b@cadence"]
    # without new_only the whole span is read
    assert [r.itip[0].uid for r in imap.replies((), TODAY)] == ["a@cadence", "b@cadence"]


def test_an_ambiguous_smtp_send_is_found_in_the_sent_folder(dovecot: Dovecot) -> None:
    """The SMTP server kept the mail but the connection closed before its 250: where the
    server files a copy of each mail sent (``imap.sent_folder``), the copy is found by
    Message-ID; a mail never sent is not; without the folder it stays unknown."""
    from agent.connectors.smtp import SmtpMailer
    from tests.caldav.servers import SmtpSink
    from tests.caldav.test_smtp import mail

    with SmtpSink() as sink:
        mailer = SmtpMailer("127.0.0.1", sink.port, ssl_mode="plain", retry=RetryPolicy.none())
        sink.chaos(1.0, seed=0, kinds=("lost",))
        with pytest.raises(TransientError) as caught:
            mailer.send(mail())
        assert caught.value.maybe_done and len(sink.received) == 1
        assert mailer.was_sent(mail()) is None  # no sent folder configured: unknown
        dovecot.deliver(sink.received[0].raw, folder="Sent")  # the server files its copy
        dovecot.deliver(plain_mail("<other@cadence>", None, "another"), folder="Sent")
        mailer.copies = (reader(dovecot), "Sent")
        assert mailer.was_sent(mail()) is True
        assert mailer.was_sent(mail(key="k2", message_id="<agenda.k2@cadence>")) is False
        assert dovecot.flags("Sent") and all(b"\\Seen" not in f for f in dovecot.flags("Sent"))
        mailer.copies = (reader(dovecot), "Sent Items")  # no such folder: unknown
        assert mailer.was_sent(mail()) is None
        mailer.copies = (reader(dovecot, password="wrong"), "Sent")
        assert mailer.was_sent(mail()) is None
        gone = ImapReader(
            "127.0.0.1",
            free_port(),
            ssl_mode="plain",
            username="cadence",
            password="x",
            retry=RetryPolicy.none(),
        )
        mailer.copies = (gone, "Sent")
        with pytest.raises(TransientError):  # unreachable for now: asked again next tick
            mailer.was_sent(mail())
