"""Reading replies over IMAP: answers to Cadence's mail and iTIP REPLY objects, without
marking anything as read.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from agent.connectors.base import IncomingMail
from agent.connectors.smtp.common import Shared, connection_options, is_loopback, translate
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import PartStat
from agent.core.retry import RetryPolicy
from agent.formats import ical, zones

if TYPE_CHECKING:
    from agent.settings.config import ImapSettings


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
    """Where the mail sits in the folder (valid while the folder's UIDVALIDITY holds)."""
    message_id: str
    answers: tuple[str, ...]
    """The Message-IDs of Cadence's mail that this one answers (In-Reply-To, References)."""
    sender: str
    subject: str
    text: str
    itip: tuple[ItipReply, ...] = ()


_SEARCH_BATCH = 200
_T = TypeVar("_T")


def itip_replies(message: EmailMessage) -> tuple[ItipReply, ...]:
    """Return the iTIP REPLY answers carried by ``message`` (none when it has no REPLY)."""
    found: list[ItipReply] = []
    for part in message.walk():
        if part.get_content_type() not in ("text/calendar", "application/ics"):
            continue
        try:
            cal = zones.parse(part.get_content())
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
                if partstat in ical.PARTSTATS:
                    found.append(
                        ItipReply(
                            uid=str(vevent.get("UID", "")),
                            organizer=organizer,
                            attendee=_bare(attendee),
                            partstat=ical.PARTSTATS[partstat],
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
        if ssl_mode == "plain" and not is_loopback(host):
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
        cls, settings: ImapSettings, where: str, **shared: Unpack[Shared]
    ) -> ImapReader:
        """Build a reader from an account's ``imap:`` settings; raise ConfigError."""
        if not settings.username or not settings.password_env:
            raise ConfigError(f"{where}: imap: username and password_env are required")
        options = connection_options(settings, "imap", where, **shared)
        assert options["password"] is not None
        port = settings.port
        if not settings.ssl and "port" not in settings.model_fields_set:
            port = 143
        return cls(settings.host, port, folder=settings.folder, **options)

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

    def mails(
        self, since: date, mark: str | None, max_size: int | None, suffix: str
    ) -> tuple[list[IncomingMail], str | None]:
        """Return the mails since ``since`` after ``mark`` that answer a Message-ID
        ending in ``suffix`` (In-Reply-To, References), and the new mark; raise
        TransientError or PermanentError on failure.

        The mark is ``UIDVALIDITY:UID`` of the last mail looked at: every mail after it
        is looked at once, by its size and those two header fields; a mail larger than
        ``max_size`` is returned as its header only, without its body.
        """
        return self.retry.call(lambda: self._session(self._mails, since, mark, max_size, suffix))

    def holds(self, message_id: str, folder: str) -> bool:
        """Whether ``folder`` holds a mail with this Message-ID (an IMAP SEARCH on the
        header, read-only); raise TransientError or PermanentError (no such folder)."""
        wanted = message_id.strip()
        if not wanted or any(c in wanted for c in '"\\\r\n'):
            raise PermanentError(f"not a Message-ID to search for: {message_id!r}")
        return self.retry.call(lambda: self._session(lambda c: self._holds(c, wanted, folder)))

    def _holds(self, client: imaplib.IMAP4, message_id: str, folder: str) -> bool:
        status, _ = client.select(_quote_mailbox(folder), readonly=True)
        if status != "OK":
            raise PermanentError(f"{self.where}: cannot open folder {folder!r}")
        status, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        if status != "OK":
            raise TransientError(f"{self.where}: SEARCH failed: {data!r}")
        return bool((data[0] or b"").split())

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
        return self._session(self._read, wanted, since, new_only)

    def _session(self, work: Callable[..., _T], *args: Any) -> _T:
        """Log in, run ``work(client, *args)``, log out; translate IMAP failures."""
        try:
            client = self._connect()
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{self.where}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(
                f"{self.where}: login refused ({exc}); check imap username and password_env"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise translate(exc, self.where) from exc
        try:
            return work(client, *args)
        except imaplib.IMAP4.abort as exc:
            raise TransientError(f"{self.where}: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise PermanentError(f"{self.where}: {exc}") from exc
        except OSError as exc:
            raise translate(exc, self.where) from exc
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
        for uid, meta, headers in self._threading(client, uids, "BODYSTRUCTURE"):
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

    def _threading(
        self, client: imaplib.IMAP4, uids: list[int], also: str
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """``(uid, meta, headers)`` of each mail: its In-Reply-To and References, with
        ``also`` (a FETCH item) in the meta, in batches of ``_SEARCH_BATCH``."""
        for start in range(0, len(uids), _SEARCH_BATCH):
            batch = ",".join(str(u) for u in uids[start : start + _SEARCH_BATCH])
            status, items = client.uid(
                "FETCH", batch, f"({also} BODY.PEEK[HEADER.FIELDS (IN-REPLY-TO REFERENCES)])"
            )
            if status != "OK":
                raise TransientError(f"{self.where}: FETCH failed")
            yield from _fetched(items)

    def _mails(
        self,
        client: imaplib.IMAP4,
        since: date,
        mark: str | None,
        max_size: int | None,
        suffix: str,
    ) -> tuple[list[IncomingMail], str | None]:
        status, _ = client.select(_quote_mailbox(self.folder), readonly=True)
        if status != "OK":
            raise PermanentError(f"{self.where}: cannot open folder {self.folder!r}")
        validity = (client.response("UIDVALIDITY")[1] or [b""])[0]
        validity_text = validity.decode("ascii", "replace") if isinstance(validity, bytes) else ""
        kept, _, last_text = (mark or "").partition(":")
        last = int(last_text) if kept == validity_text and last_text.isdigit() else 0
        criteria = ["SINCE", _imap_date(since)] + (["UID", f"{last + 1}:*"] if last else [])
        status, data = client.uid("SEARCH", *criteria)
        if status != "OK":
            raise PermanentError(f"{self.where}: SEARCH failed: {data!r}")
        uids = [u for u in (int(x) for x in (data[0] or b"").split()) if u > last]
        wanted: list[tuple[int, int]] = []
        ending = suffix.lower().encode()
        for uid, meta, headers in self._threading(client, uids, "RFC822.SIZE"):
            ids = re.findall(rb"<[^<>\s]+>", headers.lower())
            sized = re.search(rb"RFC822\.SIZE (\d+)", meta)
            if any(i.endswith(ending) for i in ids):
                wanted.append((uid, int(sized.group(1)) if sized else 0))
        found: list[IncomingMail] = []
        for uid, size in wanted:
            whole = max_size is None or size <= max_size
            part = "BODY.PEEK[]" if whole else "BODY.PEEK[HEADER]"
            status, items = client.uid("FETCH", str(uid), f"({part})")
            if status != "OK":
                raise TransientError(f"{self.where}: FETCH failed")
            for _, _, raw in _fetched(items):
                ref = f"imap:{self.username}@{self.host}/{self.folder}/{validity_text}/{uid}"
                found.append(IncomingMail(ref, raw, size, whole=whole))
        newest = max(uids, default=last)
        return found, (f"{validity_text}:{newest}" if validity_text else mark)

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
