"""The Mailer protocol on EWS: the MIME message sent from the sender's own mailbox and
saved to its Sent Items, where ConfirmsSend finds it again by Message-ID."""

from __future__ import annotations

import logging

from exchangelib import (
    Mailbox,
    Message,
)
from exchangelib.folders import SentItems

from agent.connectors.exchange.client import Ews
from agent.core.errors import PermanentError
from agent.core.model import (
    OutgoingMail,
    SentMail,
)
from agent.formats import mime

log = logging.getLogger("cadence.exchange")


class ExchangeMailer:
    """The Mailer protocol on EWS: the MIME message sent from the sender's own mailbox."""

    def __init__(self, ews: Ews) -> None:
        self.ews = ews

    def close(self) -> None:
        self.ews.close()

    def was_sent(self, mail: OutgoingMail) -> bool | None:
        """Whether the sender's Sent Items hold the mail, found by its Message-ID
        (``message:InternetMessageId``; impersonation or delegate access reads it). None
        when Exchange refuses the search; a failure that may pass raises, so the next
        tick asks again."""
        sender = mail.sender.lower()
        wanted = mime.clean_header(mail.message_id)  # as send() writes the header
        folder = self.ews.folder(sender, SentItems)

        def find() -> bool:
            return bool(list(folder.filter(message_id=wanted).only("message_id")[:1]))

        try:
            return self.ews.call(f"look for {mail.key} in {sender}'s Sent Items", find)
        except PermanentError as exc:
            log.warning("cannot look for %s in %s's Sent Items: %s", mail.key, sender, exc)
            return None

    def send(self, mail: OutgoingMail) -> SentMail:
        sender = mail.sender.lower()
        for value in (mail.subject, *mail.to, *mail.headers.values()):
            if "\n" in value or "\r" in value:
                raise PermanentError("a mail header holds a line break")
        try:
            message = mime.build(mail)
        except ValueError as exc:
            raise PermanentError(f"mail {mail.key}: {exc}") from None
        acc = self.ews.mailbox(sender)

        def send() -> None:
            with self.ews.once():
                Message(
                    account=acc,
                    folder=self.ews.folder(sender, SentItems),
                    mime_content=message.as_bytes(),
                    to_recipients=[Mailbox(email_address=a) for a in mail.to],
                ).send_and_save()

        # a lost answer may hide a sent mail: retried only when Exchange refused it
        self.ews.call(f"mail {mail.key} from {sender}", send, idempotent=False)
        return SentMail(mail.key, str(message["Message-ID"]), f"ews:{sender}")
