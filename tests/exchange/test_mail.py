"""The Mailer: our MIME message, sent and saved from the sender's own mailbox."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest

from agent.connectors.exchange import ExchangeMailer
from agent.core.errors import PermanentError
from agent.core.model import Invitation, OutgoingMail, Person
from tests.exchange.server import EwsServer, t

ICS = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:k@cadence\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


def mail(staff: list[Person], **over: object) -> OutgoingMail:
    ana, ben, _ = staff
    values: dict[str, object] = {
        "key": "m1:recap",
        "sender": ana.email,
        "sender_name": "Ana Lima",
        "to": (ana.email, ben.email),
        "subject": "Recap: Development Align",
        "text": "What we agreed.",
        "html": "<p>What we agreed.</p>",
        "message_id": "<m1.recap@cadence>",
        "in_reply_to": "<m1.agenda@cadence>",
        "references": ("<m1.agenda@cadence>",),
    }
    values.update(over)
    return OutgoingMail(**values)  # type: ignore[arg-type]


def test_the_message_keeps_our_headers_and_both_bodies(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    sent = mailer.send(mail(staff))
    assert sent.message_id == "<m1.recap@cadence>" and sent.where == f"ews:{staff[0].email}"
    [msg] = server.sent
    assert msg["Message-ID"] == "<m1.recap@cadence>"
    assert msg["In-Reply-To"] == "<m1.agenda@cadence>"
    assert msg["References"] == "<m1.agenda@cadence>"
    assert "Ana Lima" in msg["From"] and staff[1].email in msg["To"]
    assert msg.get_body(preferencelist=("plain",)).get_content().strip() == "What we agreed."
    assert msg.get_body(preferencelist=("html",)) is not None
    [create] = [r for r in server.requests if r.operation == "CreateItem"]
    assert create.body.get("MessageDisposition") == "SendAndSaveCopy"
    assert create.impersonating == staff[0].email  # sent as Ana, from her mailbox
    folder = create.body.find(f".//{t('DistinguishedFolderId')}")
    assert folder is not None and folder.get("Id") == "sentitems"
    raw = base64.b64decode(create.body.findtext(f".//{t('MimeContent')}") or "")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == "<m1.recap@cadence>"


def test_an_invitation_rides_along_as_text_calendar(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    mailer.send(mail(staff, invitation=Invitation("REQUEST", ICS)))
    [msg] = server.sent
    parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1 and parts[0].get_param("method") == "REQUEST"
    assert "UID:k@cadence" in parts[0].get_content()


def test_header_injection_is_refused(mailer: ExchangeMailer, staff: list[Person]) -> None:
    with pytest.raises(PermanentError):
        mailer.send(mail(staff, subject="Hi\r\nBcc: everyone@contoso.example"))


def test_sending_as_someone_without_a_mailbox_fails(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    with pytest.raises(PermanentError):
        mailer.send(mail(staff, sender="stranger@contoso.example"))
    assert server.sent == []


def test_a_hostile_sender_name_reaches_only_the_configured_addresses(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    mailer.send(mail(staff, sender_name="Gonçalves (PM), Ana\r\nBcc: eve@elsewhere.example"))
    [create] = [r for r in server.requests if r.operation == "CreateItem"]
    raw = base64.b64decode(create.body.findtext(f".//{t('MimeContent')}") or "")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in msg["From"].addresses] == [staff[0].email]
    assert [a.addr_spec for a in msg["To"].addresses] == [staff[0].email, staff[1].email]
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["From"].addresses[0].display_name.startswith("Gonçalves (PM), Ana")


def test_a_send_whose_answer_was_lost_is_found_in_sent_items(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    """Exchange took the mail but its answer was lost (a 503 after the effect): the
    mail is found by Message-ID in the sender's Sent Items, and another is not."""
    from agent.core.errors import TransientError

    server.lose_response("CreateItem")
    with pytest.raises(TransientError) as caught:
        mailer.send(mail(staff))
    assert caught.value.maybe_done and len(server.sent) == 1
    assert mailer.was_sent(mail(staff)) is True
    never = mail(staff, key="m2:recap", message_id="<m2.recap@cadence>")
    assert mailer.was_sent(never) is False
    assert server.counts["FindItem"] == 2


def test_sent_items_exchange_refuses_to_search_leave_the_mail_unknown(
    mailer: ExchangeMailer, server: EwsServer, staff: list[Person]
) -> None:
    mailer.send(mail(staff))
    server.fail("FindItem", "ErrorAccessDenied")
    assert mailer.was_sent(mail(staff)) is None  # not known: stays uncertain
    assert mailer.was_sent(mail(staff)) is True
