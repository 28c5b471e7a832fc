"""The Mailer protocol on Graph ``sendMail`` (base64 MIME from ``agent.formats.mime``, so
Message-ID, In-Reply-To and References survive); with ``Mail.ReadBasic``, ConfirmsSend on
the sender's Sent Items; with ``Mail.Read``, the ReplyReader protocol on the inboxes
Cadence's mail is sent from.
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from agent.connectors.base import IncomingMail
from agent.connectors.microsoft.events import iso, user_path
from agent.connectors.microsoft.graph import Graph
from agent.connectors.tools import InboxReader, header_block
from agent.core.errors import PermanentError
from agent.core.model import (
    OutgoingMail,
    SentMail,
)
from agent.formats import mime

log = logging.getLogger("cadence.microsoft")
#: headers that come from the mail's own fields, whatever ``mail.headers`` says
_OWN_HEADERS = frozenset({"from", "to", "subject", "message-id", "in-reply-to", "references"})


def _bracket(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def build_mime(mail: OutgoingMail, sender: str) -> EmailMessage:
    """Return the RFC 5322 message Graph sends, with the headers Graph's JSON would not let
    us set, built and cleaned by ``agent.formats.mime``.

    The employee's name goes only on the employee's own address, never on a shared
    sender; the mail's own fields win over ``mail.headers``. Raise PermanentError for an
    address that is not one.
    """
    named = sender.lower() == mail.sender.lower()
    refs = list(mail.references) or [mail.in_reply_to or ""]
    ready = replace(
        mail,
        sender=sender,
        sender_name=mail.sender_name if named else "",
        message_id=_bracket(mail.message_id),
        in_reply_to=_bracket(mail.in_reply_to) if mail.in_reply_to else None,
        references=tuple(_bracket(r) for r in refs if r),
        headers={k: v for k, v in mail.headers.items() if k.lower() not in _OWN_HEADERS},
    )
    try:
        msg = mime.build(ready, policy=email.policy.default)
    except ValueError as exc:
        raise PermanentError(f"mail {mail.key}: {exc}") from None
    if "Date" not in msg:
        msg["Date"] = format_datetime(datetime.now(UTC))
    return msg


REPLY_PAGE = 100
#: PidTagMessageSize, the only size Graph gives a message (as an extended property)
SIZE_PROPERTY = "Integer 0x0E08"


class MicrosoftMailer(InboxReader):
    """The Mailer protocol on Graph sendMail, from the sender's own mailbox; with
    ``mailboxes``, also the ReplyReader protocol on those mailboxes' inboxes."""

    scheme = "graph"

    def __init__(
        self,
        graph: Graph,
        sender: str | None = None,
        mailboxes: Sequence[str] = (),
        senders: Sequence[str] | None = None,
        max_size: int | None = None,
    ) -> None:
        self.graph = graph
        self.sender = sender
        #: the inboxes replies() reads (those Cadence's mail is sent from), and how far
        self.read_inboxes(mailboxes, senders, max_size)
        self.mailboxes = self.inboxes.mailboxes

    def replies(self) -> list[IncomingMail]:
        """The messages received in the last 30 days that replies() has not returned
        before, from the inbox of each mailbox Cadence sends from.

        One listing request per mailbox (more only past 100 messages since the newest
        seen, less a day), with each message's size, and one MIME request per message
        not seen before from one of ``senders``: the engine ignores anyone else's. A
        message larger than ``max_size`` is not fetched: only its header fields
        (``internetMessageHeaders``) are. Under a single person's sign-in only that
        person's own inbox is read (Mail.Read reaches no one else's).
        """
        signed_in = self.graph.signed_in_user()
        boxes = [m for m in self.mailboxes if signed_in is None or m == signed_in]
        now = self.clock()
        out: list[IncomingMail] = []
        listed: dict[str, tuple[list[str], datetime | None]] = {}
        for box in boxes:
            seen = self.inboxes.seen.get(box, set())
            newest = self.inboxes.newest.get(box)
            since = self.inboxes.since(box, now)
            url = f"{user_path(box)}/mailFolders/inbox/messages"
            params: dict[str, str] | None = {
                "$filter": f"receivedDateTime ge {iso(since)}",
                "$select": "id,receivedDateTime,from",
                "$expand": f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')",
                "$top": str(REPLY_PAGE),
            }
            ids: list[str] = []
            wanted: list[str] = []
            sizes: dict[str, int | None] = {}
            while True:
                page = self.graph.send("GET", url, params=params).json()
                for item in page.get("value", []):
                    if not item.get("id"):
                        continue
                    ids.append(str(item["id"]))
                    with contextlib.suppress(ValueError, TypeError):
                        got = datetime.fromisoformat(str(item.get("receivedDateTime")))
                        newest = got if newest is None or got > newest else newest
                    address = ((item.get("from") or {}).get("emailAddress") or {}).get("address")
                    if self.senders is None or str(address or "").lower() in self.senders:
                        wanted.append(str(item["id"]))
                        sizes[str(item["id"])] = _size(item)
                if not page.get("@odata.nextLink"):
                    break
                url, params = str(page["@odata.nextLink"]), None
            for ident in wanted:
                if ident in seen:
                    continue
                path = f"{user_path(box)}/messages/{urllib.parse.quote(ident, safe='')}"
                size = sizes.get(ident)
                whole = self.whole(size)
                try:
                    if whole:
                        raw = self.graph.send("GET", f"{path}/$value").content
                    else:
                        answer = self.graph.send(
                            "GET", path, params={"$select": "internetMessageHeaders"}
                        ).json()
                        fields = answer.get("internetMessageHeaders") or []
                        raw = header_block((f.get("name"), f.get("value", "")) for f in fields)
                except PermanentError as exc:
                    if "ErrorItemNotFound" not in str(exc):
                        raise
                    log.info("message %s in %s was gone before it was read", ident, box)
                    continue
                out.append(IncomingMail(self.ref(box, ident), raw, size, whole=whole))
            listed[box] = (ids, newest)
        self.inboxes.keep(listed)
        return out

    def close(self) -> None:
        self.graph.close()

    def was_sent(self, mail: OutgoingMail) -> bool | None:
        """Whether the sender's Sent Items hold the mail, found by its Message-ID
        (``internetMessageId``). ``Mail.Send`` cannot read; this needs ``Mail.ReadBasic``
        at least (the least permission that lists messages; ``Mail.Read`` also does).
        None where it is not granted: the mail stays unknown. A failure that may pass
        raises, so the next tick asks again."""
        sender = (self.sender or mail.sender).lower()
        wanted = _bracket(mail.message_id).replace("'", "''")
        try:
            page = self.graph.send(
                "GET",
                f"{user_path(sender)}/mailFolders/SentItems/messages",
                params={
                    "$filter": f"internetMessageId eq '{wanted}'",
                    "$select": "id,internetMessageId",
                    "$top": "1",
                },
            ).json()
        except PermanentError as exc:
            log.warning("cannot look for %s in %s's Sent Items: %s", mail.key, sender, exc)
            return None
        return bool(page.get("value"))

    def send(self, mail: OutgoingMail) -> SentMail:
        sender = (self.sender or mail.sender).lower()
        for value in (mail.subject, *mail.to, *mail.headers.values()):
            if "\n" in value or "\r" in value:
                raise PermanentError("a mail header holds a line break")
        mime = build_mime(mail, sender).as_bytes()
        self.graph.send(
            "POST",
            f"{user_path(sender)}/sendMail",
            data=base64.b64encode(mime),
            headers={"Content-Type": "text/plain"},
            idempotent=False,
        )
        return SentMail(mail.key, _bracket(mail.message_id), f"graph:{sender}")


def _size(item: Mapping[str, Any]) -> int | None:
    """The PidTagMessageSize of a listed message (Graph writes the id as "Integer 0xe08")."""
    for prop in item.get("singleValueExtendedProperties") or []:
        kind, _, tag = str(prop.get("id", "")).partition(" ")
        if kind.lower() == "integer" and tag.lower().replace("0x", "").lstrip("0") == "e08":
            with contextlib.suppress(TypeError, ValueError):
                return int(prop.get("value"))
    return None
