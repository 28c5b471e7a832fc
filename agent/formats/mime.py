"""RFC 5322 messages from OutgoingMail, shared by every mailer that sends raw MIME.

Header values are cleaned here, once: no CR or LF from calendar or config text can
reach a header, whatever the caller passes.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import formataddr

from agent.core.model import OutgoingMail

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_header(value: str, limit: int = 900) -> str:
    """Fold control characters (CR, LF, NUL, ...) into single spaces and bound the length."""
    return _CONTROL.sub(" ", value).strip()[:limit]


def _addr(email: str, name: str = "") -> str:
    email = clean_header(email, 320)
    try:
        Address(addr_spec=email)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a mail address: {email!r}") from exc
    return formataddr((clean_header(name, 200), email)) if name else email


def build(mail: OutgoingMail, *, policy: Policy = SMTP) -> EmailMessage:
    """Return the message: text and HTML alternatives, plus the invitation when set.

    ``policy`` decides the line endings baked into the parts: CRLF for SMTP and the
    providers that take wire-format MIME; Graph's sendMail is given LF.
    """
    msg = EmailMessage(policy=policy)
    msg["From"] = _addr(mail.sender, mail.sender_name)
    msg["To"] = ", ".join(_addr(a) for a in mail.to)
    msg["Subject"] = clean_header(mail.subject, 250)
    msg["Message-ID"] = clean_header(mail.message_id)
    if mail.in_reply_to:
        msg["In-Reply-To"] = clean_header(mail.in_reply_to)
    if mail.references:
        msg["References"] = " ".join(clean_header(r) for r in mail.references)
    for name, value in mail.headers.items():
        msg[clean_header(name, 76)] = clean_header(value)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    if mail.invitation:
        method = clean_header(mail.invitation.method, 20).upper()
        msg.add_alternative(
            mail.invitation.ics, subtype="calendar", params={"method": method}, cte="base64"
        )
    return msg
