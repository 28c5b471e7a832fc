"""Replies to recaps, read from the employees' Gmail inboxes (``gmail.readonly``)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent.connectors.base import IncomingMail
from agent.connectors.google.client import Client, GoogleFailure
from agent.connectors.google.mail import GoogleMailer
from agent.connectors.tools import read_before

if TYPE_CHECKING:
    from agent.connectors import Context

REPLY_QUERY = "in:inbox newer_than:30d"  # where replies to recaps are looked for
REPLY_PAGE = 500  # messages.list maxResults (Gmail's largest page)
REPLY_SLACK = 24 * 3600  # seconds before the newest message seen that a listing starts
#: the header fields read before a message is fetched whole: what the engine needs to
#: match a reply and judge its sender, also for a message too large to fetch
HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Authentication-Results",
)


class GoogleReplyMailer(GoogleMailer):
    """A Gmail mailer that also reads replies to recaps (``gmail.readonly`` granted).

    Only this class has :meth:`replies`, and :func:`connect` makes one only when the
    configuration asks for the read scope: a mailer without it is then no ``ReplyReader``,
    and the engine says that replies cannot be read instead of silently finding none.
    """

    def __init__(
        self,
        client: Client,
        sender: str | None,
        mailboxes: Sequence[str],
        max_size: int | None = None,
    ) -> None:
        super().__init__(client, sender)
        self.mailboxes = list(mailboxes)
        self.max_size = max_size
        self.seen: dict[str, set[str]] = {m: set() for m in self.mailboxes}
        #: per mailbox, the newest internalDate (ms) read: the high-water mark
        self.newest: dict[str, int] = {}

    def marks(self) -> dict[str, str]:
        return {box: str(ms) for box, ms in self.newest.items()}

    def resume(self, marks: Mapping[str, str], read: Iterable[str] = ()) -> None:
        before = read_before(read, "gmail")
        for box, mark in marks.items():
            if box in self.mailboxes and box not in self.newest and mark.isdigit():
                self.newest[box] = int(mark)
                self.seen.setdefault(box, set()).update(before.get(box.lower(), ()))

    def replies(self) -> list[IncomingMail]:
        """Inbox messages of the last 30 days not returned before, from each mailbox.

        One ``messages.list`` per mailbox (more only past 500 messages), from a day
        before the newest message read; then ``messages.get(format=metadata)`` for each
        message this mailer has not returned yet (its size, its internal date and the
        header fields in :data:`HEADERS`), and ``messages.get(format=raw)`` for those
        no larger than ``max_size``: alone, or in HTTP batches of 50 when there are
        more. A larger message is returned as its header fields only. A message deleted
        between the list and the get (404) is passed over.
        """
        found: list[IncomingMail] = []
        for mailbox in self.mailboxes:
            seen = self.seen.setdefault(mailbox, set())
            listed = self._inbox(mailbox)
            seen &= set(listed)  # forget what aged out of the query: the set stays small
            new = [i for i in listed if i not in seen]
            metas = self._get(mailbox, new, format="metadata", metadataHeaders=list(HEADERS))
            whole = [
                i
                for i, meta in zip(new, metas, strict=True)
                if meta is not None
                and (self.max_size is None or int(meta.get("sizeEstimate", 0)) <= self.max_size)
            ]
            bodies = dict(zip(whole, self._get(mailbox, whole, format="raw"), strict=True))
            newest = self.newest.get(mailbox)
            for ident, meta in zip(new, metas, strict=True):
                seen.add(ident)
                if meta is None:
                    continue
                stamp = int(meta.get("internalDate") or 0)
                newest = stamp if newest is None or stamp > newest else newest
                size = int(meta.get("sizeEstimate", 0))
                ref = f"gmail:{mailbox}/{ident}"
                if ident not in whole:
                    found.append(IncomingMail(ref, _header(meta), size, whole=False))
                elif bodies.get(ident) is not None:
                    body = bodies[ident]
                    raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
                    found.append(IncomingMail(ref, raw, size))
            if newest is not None:
                self.newest[mailbox] = newest
        return found

    def _get(self, mailbox: str, ids: Sequence[str], **params: Any) -> list[Any]:
        """``messages.get`` for each id, in order; None for a message gone (404)."""
        gets = [self.messages.get(userId="me", id=i, **params) for i in ids]
        if len(gets) == 1:
            try:
                return [self.c.execute(gets[0], mailbox)]
            except GoogleFailure as exc:
                if exc.status != 404:
                    raise
                return [None]
        if not gets:
            return []
        return self.c.batch(gets, mailbox, uri=self.c.gmail_batch_uri, missing_ok=True)

    def _inbox(self, mailbox: str) -> list[str]:
        ids: list[str] = []
        page: str | None = None
        query = REPLY_QUERY
        if mailbox in self.newest:
            query += f" after:{max(0, self.newest[mailbox] // 1000 - REPLY_SLACK)}"
        while True:
            extra = {"pageToken": page} if page else {}
            body = self.c.execute(
                self.messages.list(userId="me", q=query, maxResults=REPLY_PAGE, **extra),
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
    return list(ctx.reply_mailboxes)


def _header(meta: Mapping[str, Any]) -> bytes:
    """The header fields of a ``format=metadata`` answer as RFC 5322 bytes, in order."""
    fields = (meta.get("payload") or {}).get("headers") or []
    lines = [
        f"{h.get('name', '')}: {h.get('value', '')}".replace("\r", " ").replace("\n", " ")
        for h in fields
        if h.get("name")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")
