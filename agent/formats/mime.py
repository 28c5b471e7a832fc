"""RFC 5322 messages from OutgoingMail, shared by every mailer that sends raw MIME.

Header values are cleaned here, once: no CR or LF from calendar or config text can
reach a header, whatever the caller passes. Address headers are set from
``email.headerregistry.Address`` objects, never from formatted strings, so a display
name (``Gonçalves (PM), Ana``, or one holding ``Bcc: x@elsewhere``) is quoted or
encoded as a whole and can't turn into another address; the name is plain text first
(``agent.formats.plain.display_name``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy

from agent.core.model import OutgoingMail
from agent.formats import plain

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII except ':'
#: headers that name mailboxes: set only from the mail's own fields, as address objects
ADDRESS_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to",
     "resent-cc", "resent-bcc", "resent-sender", "return-path"}
)  # fmt: skip


def clean_header(value: str, limit: int = 900) -> str:
    """Fold control characters (CR, LF, NUL, ...) into single spaces and bound the length."""
    return _CONTROL.sub(" ", value).strip()[:limit]


def address(email: str, name: str = "") -> Address:
    """Return the one mailbox ``email``, named ``name`` made plain; raise ValueError
    unless ``email`` is exactly one address (a list, or a name with an address, would
    reach someone else)."""
    spec = clean_header(email, 320)
    try:
        parsed = Address(addr_spec=spec)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ValueError(f"not a mail address: {spec!r}") from exc
    if not parsed.username or not parsed.domain:
        raise ValueError(f"not a mail address: {spec!r}")
    return Address(display_name=plain.display_name(name), addr_spec=parsed.addr_spec)


class _Encoded(str):
    """A Subject folded by ``email.header``: into RFC 2047 encoded words when it is not
    ASCII, at its spaces when it is long.

    The ``email`` policies refold such a header themselves and, for some runs of
    accented words (``d'étape développement``), drop the space between two encoded
    words; a long ASCII value goes whole onto a continuation line, and reads back with
    a leading space. ``email.header.Header`` decodes back to exactly the text. Reads
    as the plain text.
    """

    name = "Subject"

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep
        # text that looks like an encoded word is encoded too, so it reads back as written
        charset = "us-ascii" if self.isascii() and "=?" not in self else "utf-8"
        encoded = Header(str(self), charset, header_name=self.name).encode(
            linesep=linesep, maxlinelen=78
        )
        return f"{self.name}: {encoded}{linesep}"


def subject(text: str) -> str:
    """The Subject value to set: as it is when short ASCII, else folded by ``_Encoded``."""
    line = plain.one_line(text, 250)
    return line if line.isascii() and len(line) <= 68 else _Encoded(line)


def set_addresses(msg: EmailMessage, header: str, addresses: Iterable[Address]) -> None:
    """Set an address header from address objects, replacing any value it had."""
    del msg[header]
    msg[header] = tuple(addresses)


def build(mail: OutgoingMail, *, policy: Policy = SMTP) -> EmailMessage:
    """Return the message: text and HTML alternatives, plus the invitation when set.

    ``policy`` decides the line endings baked into the parts: CRLF for SMTP and the
    providers that take wire-format MIME; Graph's sendMail is given LF. Raise
    ValueError for an address that is not exactly one, or for ``mail.headers`` naming a
    header that is not one or that names mailboxes (``Cc``, ``Reply-To``...).
    """
    msg = EmailMessage(policy=policy)
    set_addresses(msg, "From", [address(mail.sender, mail.sender_name)])
    set_addresses(msg, "To", [address(a) for a in mail.to])
    msg["Subject"] = subject(mail.subject)
    msg["Message-ID"] = clean_header(mail.message_id)
    if mail.in_reply_to:
        msg["In-Reply-To"] = clean_header(mail.in_reply_to)
    if mail.references:
        msg["References"] = " ".join(clean_header(r) for r in mail.references)
    for name, value in mail.headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in ADDRESS_HEADERS:
            raise ValueError(f"header {name!r} may not be set")
        msg[name] = clean_header(value)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    if mail.invitation:
        method = clean_header(mail.invitation.method, 20).upper()
        msg.add_alternative(
            mail.invitation.ics, subtype="calendar", params={"method": method}, cte="base64"
        )
    return msg
