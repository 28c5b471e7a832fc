"""Gmail ``users.messages.send`` from each sender's own mailbox (or the account's)."""

from __future__ import annotations

import base64
import logging
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from agent.connectors.google.client import Client
from agent.core.errors import CadenceError, PermanentError
from agent.core.model import (
    OutgoingMail,
    SentMail,
)
from agent.formats import mime

log = logging.getLogger("cadence.google")
#: how many of the sender's newest SENT messages an unsure send is looked for among
RECENT_SENT = 50


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
        """Whether Gmail has the mail: searched by Message-ID with the read scope, else
        looked for among the sender's recent SENT mail with gmail.metadata, the least
        scope that reads headers; None when neither is granted or Gmail cannot answer."""
        mailbox = self.sender or mail.sender
        if self.c.read_scope:
            return self._lookup(mailbox, _angle(mail.message_id)) is not None
        creds = self.c.confirming(mailbox)
        if creds is None:
            return None
        try:
            return self._in_recent_sent(mailbox, _angle(mail.message_id), creds)
        except CadenceError as exc:
            log.warning("cannot confirm %s in %s's sent mail: %s", mail.key, mailbox, exc)
            return None

    def _in_recent_sent(self, mailbox: str, message_id: str, creds: Any) -> bool:
        """Look for ``message_id`` in the headers of the newest SENT messages (metadata
        scope: no search, so the list is read and each message's Message-ID asked)."""
        listed = self.c.execute_with(
            self.messages.list(userId="me", labelIds=["SENT"], maxResults=RECENT_SENT),
            mailbox,
            creds,
        )
        for item in listed.get("messages") or []:
            got = self.c.execute_with(
                self.messages.get(
                    userId="me", id=item["id"], format="metadata", metadataHeaders=["Message-ID"]
                ),
                mailbox,
                creds,
            )
            headers = (got.get("payload") or {}).get("headers") or []
            if any(
                str(h.get("name", "")).lower() == "message-id"
                and _angle(str(h.get("value", ""))) == message_id
                for h in headers
            ):
                self.threads[message_id] = str(got.get("threadId", ""))
                return True
        return False

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
