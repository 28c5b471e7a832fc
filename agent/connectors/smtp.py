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
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import OutgoingMail, PartStat, SentMail
from agent.core.retry import RetryPolicy
from agent.formats import mime

if TYPE_CHECKING:
    from agent.settings.config import ImapSettings, SmtpSettings

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


def secret_from_env(variable: str | None, where: str) -> str | None:
    """Return the secret held by the environment variable ``variable`` (None if unnamed).

    Raise ConfigError when the variable is named but unset or empty.
    """
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(
            f"{where}: the environment variable {variable} is not set; "
            f"export {variable} with the password before starting Cadence"
        )
    return value


def _one_line(text: str) -> str:
    """Fold any run of whitespace (CR and LF included) into one space."""
    return " ".join(text.replace("\x00", " ").split())


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


def _mailbox(name: str, address: str) -> str:
    name = _one_line(name)
    if not name:
        return address
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


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
        del msg["From"]
        msg["From"] = _mailbox(mail.sender_name, _address(envelope_from, "smtp from"))
        msg["Reply-To"] = _mailbox(mail.sender_name, sender)
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        if username and ssl_mode == "plain" and not _is_loopback(host):
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

    @classmethod
    def from_settings(
        cls,
        settings: SmtpSettings,
        where: str,
        *,
        ca_bundle: str | None = None,
        retry: RetryPolicy | None = None,
        log: logging.Logger | None = None,
    ) -> SmtpMailer:
        """Build a mailer from an account's ``smtp:`` settings; raise ConfigError."""
        port = settings.port
        if settings.ssl and "port" not in settings.model_fields_set:
            port = 465  # implicit TLS lives on 465, not on the STARTTLS default 587
        mode = "ssl" if settings.ssl else "starttls" if settings.starttls else "plain"
        password = secret_from_env(settings.password_env, f"{where}: smtp: password_env")
        return cls(
            settings.host,
            port,
            ssl_mode=mode,
            username=settings.username,
            password=password,
            envelope_from=settings.from_,
            ca_bundle=settings.ca_bundle or ca_bundle,
            timeout=settings.timeout,
            retry=retry,
            log=log,
        )

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
                raise _translate(exc, self.where) from exc

        refused = self.retry.call(once, idempotent=False)
        if refused:
            self.log.warning(
                "%s refused some recipients of %s: %s", self.where, msg["Message-ID"], refused
            )
        return SentMail(key=mail.key, message_id=str(msg["Message-ID"]), where=self.where)

    def close(self) -> None:
        """Nothing stays open between sends."""


def _quit(server: smtplib.SMTP) -> None:
    try:
        server.quit()
    except (smtplib.SMTPException, OSError):
        server.close()


def _translate(exc: Exception, where: str) -> TransientError | PermanentError:
    """Map an smtplib, ssl or socket error to a Cadence error (the one place that does)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentError(
            f"{where}: authentication failed ({exc.smtp_code}); check username and password_env"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return PermanentError(f"{where}: every recipient was refused: {exc.recipients}")
    if isinstance(exc, ConnectionRefusedError | smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        # refused before any message was handed over: certainly not sent
        return TransientError(f"{where}: {type(exc).__name__}: {exc}", maybe_done=False)
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        message = f"{where}: {exc.smtp_code} {text}"
        if 400 <= exc.smtp_code < 500:  # the server answered "not now": nothing was sent
            return TransientError(message, maybe_done=False)
        return PermanentError(message)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(
            f"{where}: the server's TLS certificate is not trusted ({exc.verify_message}); "
            "set ca_bundle if it is signed by a private CA"
        )
    return TransientError(f"{where}: {type(exc).__name__}: {exc}")


# --- IMAP: reading replies ------------------------------------------------------------------


@dataclass(frozen=True)
class ItipReply:
    """An attendee's answer to an invitation (iTIP METHOD:REPLY, RFC 5546 section 3.2.3)."""

    uid: str
    organizer: str
    attendee: str
    partstat: PartStat
    sequence: int


@dataclass(frozen=True)
class Reply:
    """A mail answering one of the agent's mails, or carrying an iTIP REPLY."""

    imap_uid: int
    message_id: str
    answers: tuple[str, ...]
    sender: str
    subject: str
    text: str
    itip: tuple[ItipReply, ...] = ()


_PARTSTATS = {p.value.upper(): p for p in PartStat}
_SEARCH_BATCH = 200


def itip_replies(message: EmailMessage) -> tuple[ItipReply, ...]:
    """Return the iTIP REPLY answers carried by ``message`` (none when it has no REPLY)."""
    import icalendar

    found: list[ItipReply] = []
    for part in message.walk():
        if part.get_content_type() not in ("text/calendar", "application/ics"):
            continue
        try:
            cal = icalendar.Calendar.from_ical(part.get_content())
        except (ValueError, LookupError, KeyError):
            continue
        if str(cal.get("METHOD", "")).upper() != "REPLY":
            continue
        for vevent in cal.walk("VEVENT"):
            try:
                sequence = int(vevent.get("SEQUENCE", 0))
            except (TypeError, ValueError):
                sequence = 0
            organizer = _bare(vevent.get("ORGANIZER", ""))
            values = vevent.get("ATTENDEE", [])
            for attendee in values if isinstance(values, list) else [values]:
                partstat = str(attendee.params.get("PARTSTAT", "")).upper()
                if partstat in _PARTSTATS:
                    found.append(
                        ItipReply(
                            uid=str(vevent.get("UID", "")),
                            organizer=organizer,
                            attendee=_bare(attendee),
                            partstat=_PARTSTATS[partstat],
                            sequence=sequence,
                        )
                    )
    return tuple(dict.fromkeys(found))


def _bare(value: object) -> str:
    """Return the e-mail address of a ``mailto:`` calendar address, lower-cased."""
    text = str(value).strip()
    return (text[7:] if text.lower().startswith("mailto:") else text).lower()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _imap_date(day: date) -> str:
    """Format a date for IMAP SEARCH (RFC 3501 date-text), whatever the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class ImapReader:
    """Read replies from one IMAP folder, without marking anything as read."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_mode: str = "ssl",  # "ssl", "starttls" or "plain"
        username: str,
        password: str,
        folder: str = "INBOX",
        ca_bundle: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if ssl_mode not in ("ssl", "starttls", "plain"):
            raise ConfigError(f"imap: unknown TLS mode {ssl_mode!r}")
        if ssl_mode == "plain" and not _is_loopback(host):
            raise ConfigError(
                f"imap: refusing to send the password for {username} to {host} without TLS; "
                "set ssl: true (IMAPS) or starttls: true"
            )
        self.host, self.port, self.ssl_mode = host, port, ssl_mode
        self.username, self._password = username, password
        self.folder = folder
        self.ca_bundle, self.timeout = ca_bundle, timeout
        self.retry = retry or RetryPolicy()
        self.log = log or logging.getLogger("cadence.connector.imap")
        #: (UIDVALIDITY, highest UID looked at) for ``new_only`` reads
        self._bookmark: tuple[object, int] = (None, 0)

    @classmethod
    def from_settings(
        cls,
        settings: ImapSettings,
        where: str,
        *,
        ca_bundle: str | None = None,
        retry: RetryPolicy | None = None,
        log: logging.Logger | None = None,
    ) -> ImapReader:
        """Build a reader from an account's ``imap:`` settings; raise ConfigError."""
        if not settings.username or not settings.password_env:
            raise ConfigError(f"{where}: imap: username and password_env are required")
        password = secret_from_env(settings.password_env, f"{where}: imap: password_env")
        assert password is not None
        port = settings.port
        if not settings.ssl and "port" not in settings.model_fields_set:
            port = 143
        mode = "ssl" if settings.ssl else "starttls" if settings.starttls else "plain"
        return cls(
            settings.host,
            port,
            ssl_mode=mode,
            username=settings.username,
            password=password,
            folder=settings.folder,
            ca_bundle=settings.ca_bundle or ca_bundle,
            timeout=settings.timeout,
            retry=retry,
            log=log,
        )

    @property
    def where(self) -> str:
        scheme = "imaps" if self.ssl_mode == "ssl" else "imap"
        return f"{scheme}://{self.host}:{self.port}/{self.folder}"

    def replies(
        self, answering: Iterable[str], since: date, *, new_only: bool = False
    ) -> list[Reply]:
        """Return mails since ``since`` that answer a Message-ID in ``answering`` or
        carry an iTIP REPLY; raise TransientError or PermanentError on failure.

        With ``new_only``, mails this reader returned or passed over before are not
        looked at again (by UID, while the folder's UIDVALIDITY holds), so a reader
        that is asked every few minutes fetches only what arrived in between.
        """
        wanted = {i.strip().lower() for i in answering}
        return self.retry.call(lambda: self._replies(wanted, since, new_only))

    def _connect(self) -> imaplib.IMAP4:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        if self.ssl_mode == "ssl":
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=context, timeout=self.timeout
            )
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
        try:
            if self.ssl_mode == "starttls":
                client.starttls(ssl_context=context)
            client.login(self.username, self._password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def _replies(self, wanted: set[str], since: date, new_only: bool) -> list[Reply]:
        try:
            client = self._connect()
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{self.where}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(
                f"{self.where}: login refused ({exc}); check imap username and password_env"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise _translate(exc, self.where) from exc
        try:
            return self._read(client, wanted, since, new_only)
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{self.where}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{self.where}: {exc}") from exc
        except OSError as exc:
            raise _translate(exc, self.where) from exc
        finally:
            try:
                client.logout()
            except (imaplib.IMAP4.error, OSError):
                client.shutdown()

    def _read(
        self, client: imaplib.IMAP4, wanted: set[str], since: date, new_only: bool
    ) -> list[Reply]:
        status, _ = client.select(_quote_mailbox(self.folder), readonly=True)
        if status != "OK":
            raise PermanentError(f"{self.where}: cannot open folder {self.folder!r}")
        validity = (client.response("UIDVALIDITY")[1] or [b""])[0]
        criteria = ["SINCE", _imap_date(since)]
        last = self._bookmark[1] if new_only and self._bookmark[0] == validity else 0
        if last:
            criteria += ["UID", f"{last + 1}:*"]
        status, data = client.uid("SEARCH", *criteria)
        if status != "OK":
            raise PermanentError(f"{self.where}: SEARCH failed: {data!r}")
        uids = [u for u in (int(x) for x in (data[0] or b"").split()) if u > last]
        if new_only and uids:
            self._bookmark = (validity, max(uids))
        elif new_only and self._bookmark[0] != validity:
            self._bookmark = (validity, 0)
        candidates: list[int] = []
        for start in range(0, len(uids), _SEARCH_BATCH):
            batch = ",".join(str(u) for u in uids[start : start + _SEARCH_BATCH])
            status, items = client.uid(
                "FETCH", batch, "(BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (IN-REPLY-TO REFERENCES)])"
            )
            if status != "OK":
                raise TransientError(f"{self.where}: FETCH failed")
            for uid, meta, headers in _fetched(items):
                ids = {m.lower() for m in re.findall(rb"<[^<>\s]+>", headers)}
                if ids & {w.encode() for w in wanted} or b'"calendar"' in meta.lower():
                    candidates.append(uid)
        replies = []
        for uid in candidates:
            status, items = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
            if status != "OK":
                continue
            for _, _, raw in _fetched(items):
                reply = self._reply(uid, raw, wanted)
                if reply is not None:
                    replies.append(reply)
        return replies

    def _reply(self, uid: int, raw: bytes, wanted: set[str]) -> Reply | None:
        import email

        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        referred = re.findall(
            r"<[^<>\s]+>", f"{message['In-Reply-To'] or ''} {message['References'] or ''}"
        )
        answers = tuple(dict.fromkeys(r for r in referred if r.lower() in wanted))
        itip = itip_replies(message)
        if not answers and not itip:
            return None
        body = message.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        return Reply(
            imap_uid=uid,
            message_id=str(message["Message-ID"] or ""),
            answers=answers,
            sender=str(message["From"] or ""),
            subject=str(message["Subject"] or ""),
            text=text,
            itip=itip,
        )


def _quote_mailbox(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetched(items: list[Any]) -> Iterable[tuple[int, bytes, bytes]]:
    """Yield (uid, metadata, literal) from an imaplib FETCH answer."""
    for item in items:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        meta, literal = item[0], item[1]
        found = re.search(rb"UID (\d+)", meta)
        if found:
            yield int(found.group(1)), meta, literal
