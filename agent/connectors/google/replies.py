"""Replies to recaps, read from the employees' Gmail inboxes (``gmail.readonly``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.connectors.base import IncomingMail
from agent.connectors.google.client import Client, GoogleFailure
from agent.connectors.google.mail import GoogleMailer

if TYPE_CHECKING:
    from agent.connectors import Context

REPLY_QUERY = "in:inbox newer_than:30d"  # where replies to recaps are looked for
REPLY_PAGE = 500  # messages.list maxResults (Gmail's largest page)


class GoogleReplyMailer(GoogleMailer):
    """A Gmail mailer that also reads replies to recaps (``gmail.readonly`` granted).

    Only this class has :meth:`replies`, and :func:`connect` makes one only when the
    configuration asks for the read scope: a mailer without it is then no ``ReplyReader``,
    and the engine says that replies cannot be read instead of silently finding none.
    """

    def __init__(self, client: Client, sender: str | None, mailboxes: Sequence[str]) -> None:
        super().__init__(client, sender)
        self.mailboxes = list(mailboxes)
        self.seen: dict[str, set[str]] = {m: set() for m in self.mailboxes}

    def replies(self) -> list[IncomingMail]:
        """Inbox messages of the last 30 days not returned before, from each mailbox.

        One ``messages.list`` per mailbox (more only past 500 messages), then
        ``messages.get(format=raw)`` for each message this mailer has not returned yet:
        alone, or in HTTP batches of 50 when there are more (after a restart). A message
        deleted between the list and the get (404) is passed over.
        """
        found: list[IncomingMail] = []
        for mailbox in self.mailboxes:
            seen = self.seen.setdefault(mailbox, set())
            listed = self._inbox(mailbox)
            seen &= set(listed)  # forget what aged out of the query: the set stays small
            new = [i for i in listed if i not in seen]
            gets = [self.messages.get(userId="me", id=i, format="raw") for i in new]
            if len(gets) == 1:
                try:
                    bodies = [self.c.execute(gets[0], mailbox)]
                except GoogleFailure as exc:
                    if exc.status != 404:
                        raise
                    bodies = [None]
            else:
                bodies = self.c.batch(gets, mailbox, uri=self.c.gmail_batch_uri, missing_ok=True)
            for ident, body in zip(new, bodies, strict=True):
                if body is not None:
                    raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
                    found.append(IncomingMail(f"gmail:{mailbox}/{ident}", raw))
                seen.add(ident)
        return found

    def _inbox(self, mailbox: str) -> list[str]:
        ids: list[str] = []
        page: str | None = None
        while True:
            extra = {"pageToken": page} if page else {}
            body = self.c.execute(
                self.messages.list(userId="me", q=REPLY_QUERY, maxResults=REPLY_PAGE, **extra),
                mailbox,
            )
            ids.extend(m["id"] for m in body.get("messages") or [])
            page = body.get("nextPageToken")
            if not page:
                return ids


def reply_mailboxes(ctx: Context, delegated: bool, sender: str | None) -> list[str]:
    """The mailboxes replies arrive in: those of the account's employees whose program
    collects replies (replies go to ``mail.sender``, the employee, also when the account
    sends from a shared ``sender``). A user token reads its owner's mailbox only."""
    if not delegated:
        return [sender or "me"]
    return list(ctx.settings.reply_accounts.get(ctx.name, ()))
