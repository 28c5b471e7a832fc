"""An SMTP mailer that also reads replies to Cadence's mail over IMAP (the ReplyReader of
the caldav provider), as the Gmail and Graph mailers read their inboxes.

Only mail whose In-Reply-To or References names a Message-ID of Cadence's own (they end
in ``@cadence>``) is fetched; every other mail in the folder is looked at once, by its
size and those two header fields, and never again (the UID high-water mark). Nothing
is marked read, moved or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from agent.connectors.base import IncomingMail
from agent.connectors.smtp.imap import ImapReader
from agent.connectors.smtp.send import SmtpMailer
from agent.core.model import OutgoingMail, SentMail

#: How far back a first read looks: replies to a recap come within days of it.
REPLY_WINDOW = timedelta(days=30)
#: Cadence's Message-IDs end so (``agent.rules.mailplan.message_id``)
OWN_IDS = "@cadence>"


class ImapReplyMailer:
    """Send over SMTP; read replies from one IMAP folder (``imap:`` on the account)."""

    def __init__(self, mailer: SmtpMailer, reader: ImapReader, max_size: int | None = None) -> None:
        self.mailer = mailer
        self.reader = reader
        self.max_size = max_size
        self.mark: str | None = None
        self.read_clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def where(self) -> str:
        return self.mailer.where

    def send(self, mail: OutgoingMail) -> SentMail:
        return self.mailer.send(mail)

    def close(self) -> None:
        self.mailer.close()

    @property
    def mailbox(self) -> str:
        """The key of this folder's high-water mark in the store."""
        return f"{self.reader.username}@{self.reader.host}/{self.reader.folder}"

    def replies(self) -> list[IncomingMail]:
        """The mails that answer Cadence's mail and arrived after the mark: one IMAP
        session, a SEARCH, a FETCH of size and threading headers for the new mails,
        and one FETCH per answer (its header only when larger than ``max_size``)."""
        since = (self.read_clock() - REPLY_WINDOW).date()
        found, mark = self.reader.mails(since, self.mark, self.max_size, OWN_IDS)
        self.mark = mark  # only after the call succeeded: a failure reads them again
        return found

    def marks(self) -> dict[str, str]:
        return {self.mailbox: self.mark} if self.mark else {}

    def resume(self, marks: Mapping[str, str], read: Iterable[str] = ()) -> None:
        if self.mark is None and marks.get(self.mailbox):
            self.mark = marks[self.mailbox]
