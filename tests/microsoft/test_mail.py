"""Mailer: sendMail with base64 MIME, so threading headers and invitations survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.connectors.microsoft import MicrosoftMailer
from agent.core.errors import PermanentError
from agent.core.model import Invitation, OutgoingMail, Person
from tests.microsoft import fixtures
from tests.microsoft.server import GraphServer

ICS = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:-//test//EN\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"


def mail(staff: list[Person], **over: object) -> OutgoingMail:
    values: dict[str, object] = {
        "key": "k1",
        "sender": staff[0].email,
        "to": (staff[0].email, staff[1].email),
        "subject": "Agenda: Development Align",
        "text": "Goals\n- one",
        "html": "<p>Goals</p><ul><li>one &amp; two</li></ul>",
        "message_id": "<k1.agenda@cadence>",
        "sender_name": "Ana Test",
    }
    values.update(over)
    return OutgoingMail(**values)  # type: ignore[arg-type]


def test_agenda_goes_out_once_as_mime_from_the_sender(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    sent = mailer.send(mail(staff))

    assert sent.message_id == "<k1.agenda@cadence>" and sent.where == f"graph:{staff[0].email}"
    [msg] = server.sent
    assert msg["Message-ID"] == "<k1.agenda@cadence>"
    assert msg["From"] == f"Ana Test <{staff[0].email}>"
    assert msg["To"] == f"{staff[0].email}, {staff[1].email}"
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert parts["text/plain"].strip() == "Goals\n- one"
    assert "one &amp; two" in parts["text/html"]
    assert server.counts["sendMail"] == 1


def test_recap_threads_to_the_agenda_with_in_reply_to_and_references(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    mailer.send(
        mail(
            staff,
            key="k1.recap",
            subject="Re: Agenda: Development Align",
            message_id="k1.recap@cadence",
            in_reply_to="<k1.agenda@cadence>",
            references=("<k1.agenda@cadence>",),
        )
    )
    [msg] = server.sent
    assert msg["Message-ID"] == "<k1.recap@cadence>"
    assert msg["In-Reply-To"] == "<k1.agenda@cadence>"
    assert msg["References"] == "<k1.agenda@cadence>"


def test_invitation_is_attached_as_text_calendar(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    mailer.send(mail(staff, invitation=Invitation("REQUEST", ICS)))
    [msg] = server.sent
    [cal] = [p for p in msg.iter_parts() if p.get_content_type() == "text/calendar"]
    assert cal.get_param("method") == "REQUEST"
    assert "METHOD:REQUEST" in cal.get_content()


def test_header_injection_is_refused(
    mailer: MicrosoftMailer, staff: list[Person], server: GraphServer
) -> None:
    with pytest.raises(PermanentError, match="line break"):
        mailer.send(mail(staff, subject="Hi\r\nBcc: evil@example.com"))
    assert server.sent == []


def test_configured_sender_sends_from_its_own_mailbox(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = fixtures.graph(server, ca, sender=staff[2].email)
    try:
        MicrosoftMailer(g, staff[2].email).send(mail(staff))
    finally:
        g.close()
    [msg] = server.sent
    assert msg["From"] == staff[2].email
    assert server.log[-1][1].startswith(f"/v1.0/users/{staff[2].email}/sendMail")


def test_graph_json_headers_cannot_carry_in_reply_to(
    mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    """Why the mailer sends MIME: the JSON message takes only x- headers."""
    message = {
        "subject": "s",
        "body": {"contentType": "text", "content": "b"},
        "toRecipients": [{"emailAddress": {"address": staff[1].email}}],
        "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<a@b>"}],
    }
    with pytest.raises(PermanentError, match="InvalidInternetMessageHeader"):
        mailer.graph.send(
            "POST", f"/users/{staff[0].email}/sendMail", json_body={"message": message}
        )


def test_sending_as_someone_else_is_denied(mailer: MicrosoftMailer, staff: list[Person]) -> None:
    m = mail(staff)
    with pytest.raises(PermanentError, match="ErrorSendAsDenied"):
        # the From header names ana while the request goes to ben's mailbox
        import base64

        from agent.connectors.microsoft import build_mime

        raw = base64.b64encode(build_mime(m, staff[0].email).as_bytes())
        mailer.graph.send(
            "POST",
            f"/users/{staff[1].email}/sendMail",
            data=raw,
            headers={"Content-Type": "text/plain"},
        )


def test_a_send_refused_with_a_retry_after_goes_out_after_the_wait(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    from agent.core.retry import RetryPolicy

    slept: list[float] = []
    g = fixtures.graph(server, ca, retry=RetryPolicy(attempts=3, sleep=slept.append))
    server.throttle("sendMail", times=1, retry_after=2, status=503)
    try:
        MicrosoftMailer(g).send(mail(staff))
    finally:
        g.close()
    assert slept == [2.0] and server.counts["sendMail"] == 2 and len(server.sent) == 1


def test_a_hostile_sender_name_reaches_only_the_configured_addresses(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    mailer.send(mail(staff, sender_name="Gonçalves (PM), Ana\r\nBcc: eve@elsewhere.example"))
    [msg] = server.sent
    assert [a.addr_spec for a in msg["From"].addresses] == [staff[0].email]
    assert [a.addr_spec for a in msg["To"].addresses] == [staff[0].email, staff[1].email]
    assert msg["Bcc"] is None and msg["Cc"] is None and msg["Reply-To"] is None
    assert msg["From"].addresses[0].display_name.startswith("Gonçalves (PM), Ana")


@pytest.mark.parametrize("fault", ["502", "drop-after", "lost"])
def test_an_ambiguous_send_is_found_in_sent_items_by_message_id(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person], fault: str
) -> None:
    """sendMail took the mail but the answer was lost or a 5xx: the sender's Sent
    Items hold it (Mail.ReadBasic is enough), and a mail never sent is not there."""
    from agent.core.errors import TransientError

    mailer.send(mail(staff, key="o1", message_id="<o1@x>"))  # other mail in Sent Items
    server.chaos(1.0, seed=0, kinds=(fault,))
    with pytest.raises(TransientError) as caught:
        mailer.send(mail(staff))
    server.chaos(0.0, seed=0)
    assert caught.value.maybe_done and server.counts["sendMail"] == 2
    taken = fault != "502"  # a 502 from the fake did nothing; lost and drop-after did
    assert len(server.sent) == (2 if taken else 1)
    server.app_permissions = {"Calendars.ReadWrite", "Mail.Send", "Mail.ReadBasic.All"}
    assert mailer.was_sent(mail(staff)) is taken
    assert mailer.was_sent(mail(staff, key="k9", message_id="<k9.recap@cadence>")) is False
    assert server.counts["sentitems.list"] == 2


def test_without_a_read_permission_an_ambiguous_send_stays_unknown(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    server.app_permissions = {"Calendars.ReadWrite", "Mail.Send", "MailboxSettings.Read"}
    mailer.send(mail(staff))
    assert mailer.was_sent(mail(staff)) is None  # Mail.Send cannot read: uncertain


def test_a_sent_items_lookup_that_fails_for_now_is_asked_again_later(
    server: GraphServer, mailer: MicrosoftMailer, staff: list[Person]
) -> None:
    from agent.core.errors import TransientError

    mailer.send(mail(staff))
    server.broken.add("sentitems.list")
    with pytest.raises(TransientError):
        mailer.was_sent(mail(staff))  # never taken for "not sent", nor for "unknown"
    server.broken.clear()
    assert mailer.was_sent(mail(staff)) is True
