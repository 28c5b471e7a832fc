"""SMTP mail with iTIP invitations: the ``Mailer`` of the caldav provider, reusable by others.

Messages are built by the core (``agent.formats.mime``): RFC 5322 with a
``multipart/alternative`` of text and HTML. When the mail carries an invitation, a
``text/calendar`` part whose ``method`` parameter equals the iCalendar METHOD (RFC 6047)
joins the alternative, and the same object is attached as ``invite.ics`` for mail
clients that only look at attachments.

Every header value is checked: a CR or LF coming from calendar text or configuration
never reaches a header (subjects and names are folded onto one line; addresses and
message ids that carry one are refused).

Transport: implicit TLS (``ssl: true``, port 465), or STARTTLS (the default; refused if
the server does not offer it), or plain SMTP for a relay on the loopback interface.
Passwords come only from the environment variable named in the config.

The modules: ``send`` (the message and the SMTP mailer), ``imap`` (reading replies),
``replying`` (the mailer that also reads replies to recaps) and
``common`` (secrets, TLS options and the translation of errors, which both use).
"""

from __future__ import annotations

from agent.connectors.smtp.common import secret_from_env
from agent.connectors.smtp.imap import ImapReader, ItipReply, Reply, itip_replies
from agent.connectors.smtp.replying import ImapReplyMailer
from agent.connectors.smtp.send import SmtpMailer, build_message

__all__ = [
    "ImapReader",
    "ImapReplyMailer",
    "ItipReply",
    "Reply",
    "SmtpMailer",
    "build_message",
    "itip_replies",
    "secret_from_env",
]
