"""Gmail ``users.messages.send`` from each sender's own mailbox (or the account's)."""

from __future__ import annotations

import base64
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from agent.connectors.google.client import Client
from agent.core.errors import PermanentError
from agent.core.model import (
    OutgoingMail,
    SentMail,
)
from agent.formats import mime


def _angle(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def build_message(mail: OutgoingMail, mailbox: str) -> EmailMessage:
    """Build the RFC 5322 message from ``mailbox`` (replies still reach ``mail.sender``)."""
    own = mailbox.lower() == mail.sender.lower()
    try:
        msg = mime.build(mail if own else replace(mail, sender=mailbox))
        if not own:
            mime.set_addresses(msg, "Reply-To", [mime.address(mail.sender)])
    except ValueError as exc:
        raise PermanentError(f"mail {mail.key}: {exc}") from None
    if "Date" not in msg:
        msg["Date"] = formatdate(usegmt=True)
    return msg


class GoogleMailer:
    """Gmail ``users.messages.send`` from each sender's own mailbox (or the account's)."""

    def __init__(self, client: Client, sender: str | None) -> None:
        self.c = client
        self.sender = sender
        self.messages = client.gmail.users().messages()
        self.threads: dict[str, str] = {}  # Message-ID → Gmail thread id, for recaps

    def close(self) -> None:
        self.c.close()

    def _lookup(self, mailbox: str, message_id: str) -> dict[str, Any] | None:
        """Find a sent message by Message-ID (needs the read scope)."""
        body = self.c.execute(
            self.messages.list(userId="me", q=f"rfc822msgid:{message_id.strip('<>')}"),
            mailbox,
        )
        found = body.get("messages") or []
        return found[0] if found else None

    def was_sent(self, mail: OutgoingMail) -> bool | None:
        """With the read scope Gmail can tell; without it, nobody can."""
        if not self.c.read_scope:
            return None
        return self._lookup(self.sender or mail.sender, _angle(mail.message_id)) is not None

    def send(self, mail: OutgoingMail) -> SentMail:
        mailbox = self.sender or mail.sender
        message_id = _angle(mail.message_id)
        if self.c.read_scope:
            # with read access Gmail can tell whether a crash came after sending
            earlier = self._lookup(mailbox, message_id)
            if earlier:
                self.threads[message_id] = earlier["threadId"]
                return SentMail(mail.key, message_id, f"gmail:{mailbox}/{earlier['id']}", True)
        msg = build_message(mail, mailbox)
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(msg.as_bytes()).decode()}
        if mail.in_reply_to:
            parent = _angle(mail.in_reply_to)
            thread = self.threads.get(parent)
            if thread is None and self.c.read_scope:
                earlier = self._lookup(mailbox, parent)
                thread = earlier["threadId"] if earlier else None
            if thread:
                body["threadId"] = thread
        sent = self.c.execute(self.messages.send(userId="me", body=body), mailbox, idempotent=False)
        self.threads[message_id] = sent["threadId"]
        return SentMail(mail.key, message_id, f"gmail:{mailbox}/{sent['id']}")
