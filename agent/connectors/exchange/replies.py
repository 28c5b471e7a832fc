"""The ReplyReader protocol on EWS: replies to recaps read from the employees' inboxes.

Per mailbox, one ``FindItem`` on the inbox restricted to what arrived since the newest
message seen (less a day; 30 days at first), asking for the arrival time and the size,
and one ``GetItem`` for the senders of that page (exchangelib does not trust FindItem
with a mailbox field); then one ``GetItem`` of the ``MimeContent`` for each message not
returned before from one of the people Cadence mails. A message larger than the reader's limit is
not fetched: only its ``InternetMessageHeaders`` are, enough to match it to a recap and
refuse it. Impersonation (or delegate access to each inbox) is what reads them; the
account's ``access_type`` already says which.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from exchangelib.folders import Inbox

from agent.connectors.base import IncomingMail
from agent.connectors.exchange.client import Ews, check
from agent.connectors.exchange.items import aware, ews_time
from agent.connectors.exchange.mail import ExchangeMailer
from agent.connectors.tools import InboxReader, header_block
from agent.core.errors import PermanentError

log = logging.getLogger("cadence.exchange")


class ExchangeReplyMailer(ExchangeMailer, InboxReader):
    """An EWS mailer that also reads replies to recaps from ``mailboxes``' inboxes."""

    scheme = "ews"

    def __init__(
        self,
        ews: Ews,
        mailboxes: Sequence[str],
        senders: Sequence[str] | None = None,
        max_size: int | None = None,
    ) -> None:
        super().__init__(ews)
        self.read_inboxes(mailboxes, senders, max_size)

    def replies(self) -> list[IncomingMail]:
        now = self.clock()
        out: list[IncomingMail] = []
        listed: dict[str, tuple[list[str], datetime | None]] = {}
        for box in self.inboxes.mailboxes:
            seen = self.inboxes.seen.get(box, set())
            newest = self.inboxes.newest.get(box)
            inbox = self.ews.folder(box, Inbox)
            items = self._list(box, inbox, self.inboxes.since(box, now))
            for item in items:
                if item.datetime_received is not None:
                    got = aware(item.datetime_received)
                    newest = got if newest is None or got > newest else newest
            new = [i for i in items if i.id not in seen]
            for item in self._from_correspondents(box, inbox, new):
                found = self._read(box, inbox, item)
                if found is not None:
                    out.append(found)
            listed[box] = ([i.id for i in items], newest)
        self.inboxes.keep(listed)
        return out

    def _list(self, box: str, inbox: Any, since: datetime) -> list[Any]:
        def find() -> list[Any]:
            query = inbox.filter(datetime_received__gte=ews_time(since))
            return list(query.only("datetime_received", "size"))

        return self.ews.call(f"list {box}'s inbox", find)

    def _from_correspondents(self, box: str, inbox: Any, items: list[Any]) -> list[Any]:
        """Those of ``items`` sent by someone Cadence mails, their senders read in one
        request (a message gone meanwhile is left out)."""
        if not items or self.senders is None:
            return items
        account = self.ews.mailbox(box)

        def fetch() -> list[Any]:
            ids = [(i.id, i.changekey) for i in items]
            return list(account.fetch(ids=ids, folder=inbox, only_fields=["sender"]))

        got = self.ews.call(f"read the senders in {box}'s inbox", fetch)
        out = []
        for item, answer in zip(items, got, strict=True):
            if isinstance(answer, Exception):
                if type(answer).__name__ == "ErrorItemNotFound":
                    continue
                check([answer], f"read a sender in {box}'s inbox")
            sender = (getattr(answer.sender, "email_address", None) or "").lower()
            if sender in self.senders:
                out.append(item)
        return out

    def _read(self, box: str, inbox: Any, item: Any) -> IncomingMail | None:
        """The message whole, or its header alone when it is over the size limit; None
        when it was gone before it was read."""
        size = item.size if isinstance(item.size, int) else None
        whole = self.whole(size)
        field = "mime_content" if whole else "headers"
        account = self.ews.mailbox(box)

        def fetch() -> list[Any]:
            ids = [(item.id, item.changekey)]
            return list(account.fetch(ids=ids, folder=inbox, only_fields=[field]))

        what = f"read a message in {box}'s inbox"
        try:
            [message] = check(self.ews.call(what, fetch), what)
        except PermanentError as exc:
            if "ErrorItemNotFound" not in str(exc):
                raise
            log.info("a message in %s was gone before it was read", box)
            return None
        if whole:
            raw = message.mime_content or b""
            raw = raw if isinstance(raw, bytes) else raw.encode()
        else:
            raw = header_block((h.name, h.value) for h in message.headers or [])
        return IncomingMail(self.ref(box, item.id), raw, size, whole)
