"""SMTP delivery to a real aiosmtpd: MIME shape, iTIP invitations, TLS, auth, injection."""

from __future__ import annotations

import email.message
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from agent.connectors.smtp import SmtpMailer, build_message, secret_from_env
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import Invitation, OutgoingMail
from agent.core.retry import RetryPolicy
from agent.settings.config import SmtpSettings
from tests.caldav.servers import SmtpSink, free_port, tls_pair

UID = "0123456789abcdef0123456789abcdef@cadence"


def invitation_ics(method: str = "REQUEST", sequence: int = 0) -> str:
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//Cadence//Cadence agent//EN")
    cal.add("VERSION", "2.0")
    cal.add("METHOD", method)
    event = icalendar.Event()
    event.add("UID", UID)
    event.add("DTSTAMP", datetime(2026, 11, 1, tzinfo=UTC))
    event.add("DTSTART", datetime(2026, 11, 10, 9, tzinfo=UTC))
    event.add("DTEND", datetime(2026, 11, 10, 10, tzinfo=UTC))
    event.add("SUMMARY", "Development Align: Ana & Ben")
    event.add("SEQUENCE", sequence)
    event.add("ORGANIZER", "mailto:ben@example.org")
    event.add("ATTENDEE", "mailto:ana@example.org", parameters={"PARTSTAT": "NEEDS-ACTION"})
    if method == "CANCEL":
        event.add("STATUS", "CANCELLED")
    cal.add_component(event)
    return str(cal.to_ical().decode())


def mail(**changes: object) -> OutgoingMail:
    base: dict[str, object] = dict(
        key="k1",
        sender="ben@example.org",
        sender_name="Ben Ortiz",
        to=("ana@example.org",),
        subject="Agenda: Development Align",
        text="Hello Ana,\n\nthe agenda.\n",
        html="<p>Hello Ana,</p><p>the agenda &amp; more.</p>",
        message_id="<agenda.k1@cadence>",
    )
    base.update(changes)
    return OutgoingMail(**base)  # type: ignore[arg-type]


def plain_mailer(sink: SmtpSink, **kwargs: object) -> SmtpMailer:
    return SmtpMailer("127.0.0.1", sink.port, ssl_mode="plain", retry=RetryPolicy.none(), **kwargs)  # type: ignore[arg-type]


def parts(message: email.message.EmailMessage) -> list[str]:
    return [p.get_content_type() for p in message.walk()]


def test_agenda_is_multipart_alternative_with_threading_headers(smtp: SmtpSink) -> None:
    sent = plain_mailer(smtp).send(
        mail(
            key="recap-k1",
            subject="Recap: Development Align",
            message_id="recap.k1@cadence",
            in_reply_to="<agenda.k1@cadence>",
            references=("<agenda.k1@cadence>",),
            to=("ana@example.org", "ben@example.org"),
        )
    )
    assert sent.key == "recap-k1" and sent.message_id == "<recap.k1@cadence>"
    assert sent.where == f"smtp://127.0.0.1:{smtp.port}"
    (got,) = smtp.received
    assert got.mail_from == "ben@example.org"
    assert got.rcpt_tos == ["ana@example.org", "ben@example.org"]
    m = got.message
    assert m["From"] == "Ben Ortiz <ben@example.org>"
    assert m["To"] == "ana@example.org, ben@example.org"
    assert m["Message-ID"] == "<recap.k1@cadence>"
    assert m["In-Reply-To"] == "<agenda.k1@cadence>"
    assert m["References"] == "<agenda.k1@cadence>"
    assert m["Date"] is not None
    assert parts(m) == ["multipart/alternative", "text/plain", "text/html"]
    text = m.get_body(("plain",))
    html = m.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == "Hello Ana,\n\nthe agenda.\n"
    assert "&amp; more" in html.get_content()


@pytest.mark.parametrize(("method", "sequence"), [("REQUEST", 0), ("REQUEST", 3), ("CANCEL", 4)])
def test_invitation_is_a_text_calendar_part_with_the_itip_method(
    smtp: SmtpSink, method: str, sequence: int
) -> None:
    ics = invitation_ics(method, sequence)
    plain_mailer(smtp).send(mail(invitation=Invitation(method=method, ics=ics)))
    (got,) = smtp.received
    m = got.message
    assert parts(m) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
        "application/ics",
    ]
    calendar_part = next(p for p in m.walk() if p.get_content_type() == "text/calendar")
    assert calendar_part.get_param("method") == method
    assert calendar_part.get_content_charset() == "utf-8"
    parsed = icalendar.Calendar.from_ical(calendar_part.get_content())
    assert str(parsed["METHOD"]) == method
    (vevent,) = parsed.walk("VEVENT")
    assert str(vevent["UID"]) == UID
    assert int(vevent["SEQUENCE"]) == sequence
    assert str(vevent["ORGANIZER"]) == "mailto:ben@example.org"
    assert str(vevent["ATTENDEE"]) == "mailto:ana@example.org"
    attachment = next(p for p in m.walk() if p.get_content_type() == "application/ics")
    assert attachment.get_filename() == "invite.ics"
    assert icalendar.Calendar.from_ical(attachment.get_content())["METHOD"] == method


def test_invitation_method_must_match_the_ics(smtp: SmtpSink) -> None:
    mailer = plain_mailer(smtp)
    with pytest.raises(PermanentError, match="METHOD:REQUEST"):
        mailer.send(mail(invitation=Invitation(method="CANCEL", ics=invitation_ics("REQUEST"))))
    with pytest.raises(PermanentError):
        mailer.send(mail(invitation=Invitation(method="REQUEST\r\nX: y", ics=invitation_ics())))
    assert smtp.received == []


def test_no_header_injection_from_calendar_text(smtp: SmtpSink) -> None:
    plain_mailer(smtp).send(
        mail(
            subject="Align\r\nBcc: victim@evil.example\r\n\r\nspoofed body",
            sender_name="Ben\r\nX-Injected: 1",
            headers={"X-Cadence-Key": "k1\r\nBcc: victim@evil.example"},
        )
    )
    (got,) = smtp.received
    m = got.message
    assert got.rcpt_tos == ["ana@example.org"]
    assert m["Bcc"] is None and m["X-Injected"] is None
    assert m["Subject"] == "Align Bcc: victim@evil.example spoofed body"
    assert m["X-Cadence-Key"] == "k1 Bcc: victim@evil.example"
    header_block = got.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected:" not in header_block


@pytest.mark.parametrize(
    "bad",
    [
        {"to": ("ana@example.org\r\nBcc: victim@evil.example",)},
        {"to": ("Ana <ana@example.org>",)},
        {"to": ()},
        {"sender": "ben@example.org\nBcc: x@y.z"},
        {"message_id": "<a@b>\r\nBcc: x@y.z"},
        {"in_reply_to": "<a@b> <c@d>"},
        {"headers": {"Bcc": "victim@evil.example"}},
        {"headers": {"X-Bad\r\nBcc": "v"}},
    ],
)
def test_unsafe_mail_is_refused(smtp: SmtpSink, bad: dict[str, object]) -> None:
    with pytest.raises(PermanentError):
        plain_mailer(smtp).send(mail(**bad))
    assert smtp.received == []


def test_from_address_of_the_account_with_reply_to_the_sender() -> None:
    m = build_message(mail(), envelope_from="cadence@example.org")
    assert m["From"] == "Ben Ortiz <cadence@example.org>"
    assert m["Reply-To"] == "Ben Ortiz <ben@example.org>"


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    with tls_pair(tmp_path) as pair:
        yield pair


def test_starttls_with_authentication(
    tls: tuple[object, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls
    monkeypatch.setenv("CADENCE_SMTP_PASSWORD", "s3cret")
    with SmtpSink(tls=context, credentials=("cadence", "s3cret")) as sink:  # type: ignore[arg-type]
        settings = SmtpSettings.model_validate(
            {
                "host": "localhost",
                "port": sink.port,
                "username": "cadence",
                "password_env": "CADENCE_SMTP_PASSWORD",
                "ca_bundle": str(bundle),
            }
        )
        mailer = SmtpMailer.from_settings(settings, "account 'team'", retry=RetryPolicy.none())
        mailer.send(mail(invitation=Invitation("REQUEST", invitation_ics())))
        (got,) = sink.received
        assert got.login == "cadence"


def test_wrong_password_is_permanent(tls: tuple[object, Path]) -> None:
    context, bundle = tls
    with SmtpSink(tls=context, credentials=("cadence", "s3cret")) as sink:  # type: ignore[arg-type]
        mailer = SmtpMailer(
            "localhost",
            sink.port,
            username="cadence",
            password="wrong",
            ca_bundle=str(bundle),
            retry=RetryPolicy.none(),
        )
        with pytest.raises(PermanentError, match="authentication failed"):
            mailer.send(mail())
        assert sink.received == []


def test_implicit_tls(tls: tuple[object, Path]) -> None:
    context, bundle = tls
    with SmtpSink(tls=context, implicit=True) as sink:  # type: ignore[arg-type]
        mailer = SmtpMailer(
            "localhost", sink.port, ssl_mode="ssl", ca_bundle=str(bundle), retry=RetryPolicy.none()
        )
        sent = mailer.send(mail())
        assert sent.where == f"smtps://localhost:{sink.port}"
        assert len(sink.received) == 1


def test_untrusted_certificate_is_permanent(tls: tuple[object, Path]) -> None:
    context, _ = tls
    with SmtpSink(tls=context, implicit=True) as sink:  # type: ignore[arg-type]
        mailer = SmtpMailer("localhost", sink.port, ssl_mode="ssl", retry=RetryPolicy.none())
        with pytest.raises(PermanentError, match="ca_bundle"):
            mailer.send(mail())


def test_starttls_not_offered_is_refused_not_downgraded(smtp: SmtpSink) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp.port, ssl_mode="starttls", retry=RetryPolicy.none())
    with pytest.raises(PermanentError, match="STARTTLS"):
        mailer.send(mail())
    assert smtp.received == []


def test_password_is_never_sent_in_clear_to_a_remote_host() -> None:
    with pytest.raises(ConfigError, match="without TLS"):
        SmtpMailer("mail.example.org", 25, ssl_mode="plain", username="u", password="p")


def test_unreachable_server_is_transient_and_retried() -> None:
    slept: list[float] = []
    mailer = SmtpMailer(
        "127.0.0.1",
        free_port(),
        ssl_mode="plain",
        timeout=2,
        retry=RetryPolicy(attempts=2, sleep=slept.append, rand=lambda: 0.0),
    )
    with pytest.raises(TransientError):
        mailer.send(mail())
    assert len(slept) == 1


def test_password_comes_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CADENCE_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="CADENCE_TEST_SECRET"):
        secret_from_env("CADENCE_TEST_SECRET", "account 'x': smtp: password_env")
    monkeypatch.setenv("CADENCE_TEST_SECRET", "pw")
    assert secret_from_env("CADENCE_TEST_SECRET", "x") == "pw"
    assert secret_from_env(None, "x") is None


def test_ssl_without_a_port_uses_465() -> None:
    settings = SmtpSettings.model_validate({"host": "smtp.example.org", "ssl": True})
    assert SmtpMailer.from_settings(settings, "x").port == 465
    settings = SmtpSettings.model_validate({"host": "smtp.example.org"})
    mailer = SmtpMailer.from_settings(settings, "x")
    assert (mailer.port, mailer.ssl_mode) == (587, "starttls")


def test_date_header_uses_the_clock(smtp: SmtpSink) -> None:
    now = datetime(2026, 11, 9, 8, 30, tzinfo=UTC)
    plain_mailer(smtp, clock=lambda: now).send(mail())
    (got,) = smtp.received
    assert got.message["Date"].datetime == now
    assert got.message["Date"].datetime - now == timedelta(0)


def test_date_given_by_the_engine_is_kept_once(smtp: SmtpSink) -> None:
    plain_mailer(smtp).send(mail(headers={"Date": "Mon, 09 Nov 2026 08:30:00 +0000"}))
    (got,) = smtp.received
    assert got.message.get_all("Date") == ["Mon, 09 Nov 2026 08:30:00 +0000"]
    assert got.message["Auto-Submitted"] == "auto-generated"


def test_account_from_address_is_the_envelope_sender(smtp: SmtpSink) -> None:
    plain_mailer(smtp, envelope_from="cadence@example.org").send(mail())
    (got,) = smtp.received
    assert got.mail_from == "cadence@example.org"
    assert got.message["From"] == "Ben Ortiz <cadence@example.org>"
    assert got.message["Reply-To"] == "Ben Ortiz <ben@example.org>"
    assert got.message.get_all("From") == ["Ben Ortiz <cadence@example.org>"]


def test_a_hostile_sender_name_reaches_only_the_configured_addresses(smtp: SmtpSink) -> None:
    name = "Gonçalves (PM), Ana\r\nBcc: eve@elsewhere.example"
    plain_mailer(smtp, envelope_from="cadence@example.org").send(mail(sender_name=name))
    (got,) = smtp.received
    m = got.message
    assert got.rcpt_tos == ["ana@example.org"]
    assert [a.addr_spec for a in m["From"].addresses] == ["cadence@example.org"]
    assert [a.addr_spec for a in m["Reply-To"].addresses] == ["ben@example.org"]
    assert [a.addr_spec for a in m["To"].addresses] == ["ana@example.org"]
    assert m["Bcc"] is None and m["Cc"] is None
    shown = m["From"].addresses[0].display_name  # a folded encoded word may gain a space
    assert shown.replace(" ", "") == "Gonçalves(PM),AnaBcc:eve@elsewhere.example"
