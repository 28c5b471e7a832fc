"""Sending over SMTP: the message checked and built (``agent.formats.mime``), then handed
to the server once per attempt.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import TYPE_CHECKING, Unpack

from agent.connectors.smtp.common import Shared, connection_options, is_loopback, translate
from agent.core.errors import ConfigError, PermanentError
from agent.core.model import OutgoingMail, SentMail
from agent.core.retry import RetryPolicy
from agent.formats import mime

if TYPE_CHECKING:
    from agent.connectors.smtp.imap import ImapReader
    from agent.settings.config import SmtpSettings


#: an addr-spec without whitespace, angle brackets or control characters
_ADDRESS = re.compile(r"^[^\s<>()\[\]\\,;:\"@\x00-\x1f\x7f]+@[^\s<>()\[\]\\,;:\"@\x00-\x1f\x7f]+$")
_MESSAGE_ID = re.compile(r"^<?[^\s<>\x00-\x1f\x7f]+@[^\s<>\x00-\x1f\x7f]+>?$")
_TOKEN = re.compile(r"^[A-Za-z0-9-]+$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':'
#: headers the message builder owns; mail.headers may not set them
_RESERVED = {
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def _address(text: str, what: str) -> str:
    text = text.strip()
    if not _ADDRESS.match(text):
        raise PermanentError(f"refusing to send: {what} {text!r} is not a plain e-mail address")
    return text


def _message_id(text: str, what: str = "message id") -> str:
    text = text.strip()
    if not _MESSAGE_ID.match(text):
        raise PermanentError(f"refusing to send: {what} {text!r} is not a valid Message-ID")
    return text if text.startswith("<") else f"<{text.strip('<>')}>"


def _mailbox(name: str, address: str) -> Address:
    """The address object: its name is quoted or encoded whole, never read as addresses."""
    try:
        return mime.address(address, name)
    except ValueError as exc:
        raise PermanentError(f"refusing to send: {exc}") from exc


def build_message(
    mail: OutgoingMail, *, envelope_from: str | None = None, now: datetime | None = None
) -> EmailMessage:
    """Build the RFC 5322 message for ``mail`` with the core's builder (``agent.formats.mime``).

    Addresses, message ids, header names and the iTIP method are checked first and
    refused (PermanentError) rather than folded, since a folded address would reach the
    wrong person. A Date header is added from the clock unless the mail carries one.
    With ``envelope_from`` (the account's ``from``), the message is From that address,
    carrying the sender's name, with Reply-To the sender. An invitation is also
    attached as ``invite.ics``.
    """
    sender = _address(mail.sender, "sender")
    recipients = tuple(_address(a, "recipient") for a in mail.to)
    if not recipients:
        raise PermanentError("refusing to send: the mail has no recipient")
    in_reply_to = _message_id(mail.in_reply_to, "in_reply_to") if mail.in_reply_to else None
    references = tuple(_message_id(r, "reference") for r in mail.references)
    if in_reply_to and not references:
        references = (in_reply_to,)
    for name in mail.headers:
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
            raise PermanentError(f"refusing to send: header {name!r} may not be set")
    invitation = mail.invitation
    if invitation is not None:
        method = _invitation_method(invitation.method, invitation.ics)
        invitation = replace(invitation, method=method)
    safe = replace(
        mail,
        sender=sender,
        to=recipients,
        message_id=_message_id(mail.message_id),
        in_reply_to=in_reply_to,
        references=references,
        invitation=invitation,
    )
    try:
        msg = mime.build(safe)
    except ValueError as exc:
        raise PermanentError(f"refusing to send: {exc}") from exc
    if msg["Date"] is None:
        msg["Date"] = format_datetime((now or datetime.now(UTC)).astimezone(UTC))
    if envelope_from and envelope_from.lower() != sender.lower():
        mime.set_addresses(
            msg, "From", [_mailbox(mail.sender_name, _address(envelope_from, "smtp from"))]
        )
        mime.set_addresses(msg, "Reply-To", [_mailbox(mail.sender_name, sender)])
    if invitation is not None:
        msg.make_mixed()
        msg.add_attachment(
            invitation.ics.encode("utf-8"),
            maintype="application",
            subtype="ics",
            filename="invite.ics",
        )
    return msg


def _invitation_method(method: str, ics: str) -> str:
    """Return the iTIP method, checking that the ICS says the same (RFC 6047 section 2.4)."""
    import icalendar

    method = method.strip().upper()
    if not _TOKEN.match(method):
        raise PermanentError(f"refusing to send: invalid iTIP method {method!r}")
    try:
        declared = str(icalendar.Calendar.from_ical(ics).get("METHOD", "")).upper()
    except ValueError as exc:
        raise PermanentError(f"refusing to send: the invitation is not iCalendar: {exc}") from exc
    if declared != method:
        raise PermanentError(
            f"refusing to send: the invitation says METHOD:{declared or '(none)'} "
            f"but the mail says method={method}"
        )
    return method


class SmtpMailer:
    """Send mail over SMTP with STARTTLS or implicit TLS and optional authentication."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_mode: str = "starttls",  # "ssl", "starttls" or "plain"
        username: str | None = None,
        password: str | None = None,
        envelope_from: str | None = None,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ssl_mode not in ("ssl", "starttls", "plain"):
            raise ConfigError(f"smtp: unknown TLS mode {ssl_mode!r}")
        if username and ssl_mode == "plain" and not is_loopback(host):
            raise ConfigError(
                f"smtp: refusing to send the password for {username} to {host} without TLS; "
                "set starttls: true or ssl: true"
            )
        if username and password is None:
            raise ConfigError(f"smtp: username {username} is set but password_env is not")
        self.host, self.port, self.ssl_mode = host, port, ssl_mode
        self.username, self._password = username, password
        self.envelope_from = envelope_from
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.log = log or logging.getLogger("cadence.connector.smtp")
        self.clock = clock
        #: where the server files a copy of each mail sent (``imap.sent_folder``): an
        #: IMAP reader and the folder, for was_sent; None when it files none
        self.copies: tuple[ImapReader, str] | None = None

    @classmethod
    def from_settings(
        cls, settings: SmtpSettings, where: str, **shared: Unpack[Shared]
    ) -> SmtpMailer:
        """Build a mailer from an account's ``smtp:`` settings; raise ConfigError."""
        port = settings.port
        if settings.ssl and "port" not in settings.model_fields_set:
            port = 465  # implicit TLS lives on 465, not on the STARTTLS default 587
        options = connection_options(settings, "smtp", where, **shared)
        return cls(settings.host, port, envelope_from=settings.from_, **options)

    @property
    def where(self) -> str:
        scheme = "smtps" if self.ssl_mode == "ssl" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def _connect(self) -> smtplib.SMTP:
        if self.ssl_mode == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            server.ehlo()
            if self.ssl_mode == "starttls":
                if not server.has_extn("starttls"):
                    raise PermanentError(
                        f"{self.where} does not offer STARTTLS; set ssl: true for implicit "
                        "TLS, or starttls: false for a plain relay on this machine"
                    )
                server.starttls(context=self._context())
                server.ehlo()
            if self.username:
                assert self._password is not None
                server.login(self.username, self._password)
        except BaseException:
            server.close()
            raise
        return server

    def send(self, mail: OutgoingMail) -> SentMail:
        """Send ``mail``; raise TransientError or PermanentError on failure.

        SMTP has no idempotency key: the engine's outbox row keeps a mail from being
        sent twice, and a retry here happens only when the server did not accept it.
        """
        msg = build_message(mail, envelope_from=self.envelope_from, now=self.clock())
        envelope_from = self.envelope_from or mail.sender.strip()
        recipients = [a.strip() for a in mail.to]
        payload = msg.as_bytes(policy=SMTP_POLICY)

        def once() -> dict[str, tuple[int, bytes]]:
            try:
                server = self._connect()
                try:
                    return server.sendmail(envelope_from, recipients, payload)
                finally:
                    _quit(server)
            except (smtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
                raise translate(exc, self.where) from exc

        refused = self.retry.call(once, idempotent=False)
        if refused:
            self.log.warning(
                "%s refused some recipients of %s: %s", self.where, msg["Message-ID"], refused
            )
        return SentMail(key=mail.key, message_id=str(msg["Message-ID"]), where=self.where)

    def was_sent(self, mail: OutgoingMail) -> bool | None:
        """Whether the folder where the server files each mail sent holds this one, by
        Message-ID over IMAP; None when no such folder is configured or IMAP refuses
        (login, a missing folder). A failure that may pass raises: asked again later."""
        if self.copies is None:
            return None
        reader, folder = self.copies
        try:
            return reader.holds(_message_id(mail.message_id), folder)
        except PermanentError as exc:
            self.log.warning("cannot look for %s in %s: %s", mail.key, folder, exc)
            return None

    def close(self) -> None:
        """Nothing stays open between sends."""


def _quit(server: smtplib.SMTP) -> None:
    try:
        server.quit()
    except (smtplib.SMTPException, OSError):
        server.close()
