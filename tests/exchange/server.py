"""A local HTTPS server that answers the EWS operations Cadence uses, the way Exchange
Server 2016/2019 does, keeping state between requests.

One endpoint, ``POST /EWS/Exchange.asmx``, SOAP 1.1. Every request must carry HTTP basic
credentials of the service account (or an OAuth bearer token when one is set; or, with
``ntlm_user_file``, come over a connection authenticated by an NTLM handshake, checked
by pyspnego's NTLM acceptor as IIS would) and a
``RequestServerVersion`` header; a request for another person's mailbox must carry
``ExchangeImpersonation`` (the account holds the ApplicationImpersonation role) or the
account must be a delegate of that mailbox. Answers carry ``ServerVersionInfo``.

Operations:

- ``ConvertId`` (what exchangelib sends to learn the version when none is configured)
- ``GetFolder`` for distinguished folders
- ``FindItem`` with a ``CalendarView`` (recurring items expanded into occurrences, each
  with its own id) or with an ``IsEqualTo`` restriction on an extended property; in Sent
  Items, with an ``IsEqualTo`` restriction on ``message:InternetMessageId``
- ``GetItem`` (only the properties asked for, as Exchange does)
- ``CreateItem``: calendar items (``SendMeetingInvitations`` required; invitations put a
  copy, without the organizer's extended properties, on known attendees' calendars) and
  messages (``MessageDisposition``; MIME content or properties; ``SendAndSaveCopy``
  keeps a copy in the sender's Sent Items)
- ``UpdateItem`` (``SendMeetingInvitationsOrCancellations`` required; a time change raises
  the appointment sequence and updates the attendees' copies)
- ``DeleteItem`` (``SendMeetingCancellations`` required; cancellations mark the copies)
- ``GetServerTimeZones`` and ``GetUserAvailability`` (at most 100 mailboxes and 42 days)
- ``Subscribe`` (pull and streaming subscriptions to a calendar), ``GetEvents``,
  ``GetStreamingEvents`` (an answer held open) and ``Unsubscribe``, from each mailbox's
  event queue (see ``tests/exchange/notify.py``)

:attr:`EwsServer.counts` counts requests per operation; :meth:`EwsServer.throttle` queues
``ErrorServerBusy`` faults with a ``BackOffMilliseconds`` hint; :meth:`EwsServer.chaos`
faults a share of all requests at random, for soak tests.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.policy
import random
import re
import secrets
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import trustme
from dateutil import rrule
from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP  # the CLDR table, as data

from tests.exchange.notify import Held, Journaled, Subscription, Subscriptions

S = "http://schemas.xmlsoap.org/soap/envelope/"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
ERRORS = "http://schemas.microsoft.com/exchange/services/2006/errors"
PATH = "/EWS/Exchange.asmx"
API_VERSIONS = {
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2016",
}
MAX_AVAILABILITY_MAILBOXES = 100
MAX_AVAILABILITY_WINDOW = timedelta(days=42)
FREE_BUSY = {"Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData"}
#: what :meth:`EwsServer.chaos` does to a request it picks
CHAOS_KINDS = ("busy", "500", "502", "503", "lost", "dropped", "slow", "timeout")


def t(name: str) -> str:
    return f"{{{T}}}{name}"


def m(name: str) -> str:
    return f"{{{M}}}{name}"


class EwsFault(Exception):
    """A SOAP fault (HTTP 500), as Exchange answers throttling and malformed requests."""

    def __init__(self, code: str, message: str = "", back_off_ms: int | None = None) -> None:
        super().__init__(message or code)
        self.code, self.message, self.back_off_ms = code, message or code, back_off_ms


class ItemError(Exception):
    """An error in one response message (ResponseClass="Error"), HTTP 200."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code, self.message = code, message or code


def _new_id(prefix: bytes = b"AAMk") -> str:
    return base64.b64encode(prefix + secrets.token_bytes(40)).decode()


def _ck() -> str:
    return base64.b64encode(b"DwAAABYA" + secrets.token_bytes(12)).decode()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_dt(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass
class Attendee:
    email: str
    name: str = ""
    response: str = "Unknown"


@dataclass
class Item:
    """One item in one mailbox: a calendar item (single or recurring master) or a message."""

    id: str
    owner: str
    kind: str = "CalendarItem"
    changekey: str = field(default_factory=_ck)
    subject: str = ""
    body: str = ""
    body_type: str = "Text"
    start: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    all_day: bool = False
    free_busy: str = "Busy"
    location: str = ""
    cancelled: bool = False
    organizer: str = ""
    organizer_name: str = ""
    required: list[Attendee] = field(default_factory=list)
    optional: list[Attendee] = field(default_factory=list)
    my_response: str = "Organizer"
    uid: str = field(default_factory=lambda: secrets.token_hex(16).upper())
    sequence: int = 0
    ext: dict[tuple[str, str, str], str] = field(default_factory=dict)
    rrule: str | None = None
    zone: str = "UTC"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    copy_of: tuple[str, str] | None = None
    copies: dict[str, str] = field(default_factory=dict)
    #: a message's folder ("sentitems", "inbox") and its Message-ID header
    folder: str = ""
    message_id: str = ""
    #: a received message: when it arrived, its whole MIME, and who sent it
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    mime: bytes = b""
    sender: str = ""
    #: the event queue of the mailbox it is in (a calendar item): a change is an event
    journal: Journaled | None = field(default=None, repr=False, compare=False)

    def touch(self) -> None:
        self.changekey = _ck()
        self.modified = datetime.now(UTC)
        if self.journal is not None:
            self.journal.note("ModifiedEvent", self)

    @property
    def is_meeting(self) -> bool:
        return bool(self.required or self.optional)

    def occurrences(self, until: datetime) -> Iterator[tuple[int, datetime, datetime]]:
        """(index, start, end) of each instance starting before ``until``."""
        if not self.rrule:
            yield 0, self.start, self.end
            return
        zone = ZoneInfo(self.zone)
        local = self.start.astimezone(zone).replace(tzinfo=None)
        duration = self.end - self.start
        limit = until.astimezone(zone).replace(tzinfo=None)
        for i, occ in enumerate(rrule.rrulestr(self.rrule, dtstart=local), start=1):
            if occ >= limit or i > 5000:
                return
            start = occ.replace(tzinfo=zone).astimezone(UTC)
            yield i, start, start + duration


@dataclass
class Mailbox:
    email: str
    name: str
    items: dict[str, Item] = field(default_factory=Journaled)
    delegates: set[str] = field(default_factory=set)


@dataclass
class Request:
    """What the dispatcher knows about one SOAP request."""

    operation: str
    body: ET.Element
    header: ET.Element | None
    user: str
    impersonating: str | None
    api_version: str
    #: a GetStreamingEvents answer to hold open after its first message
    held: Held | None = None


class EwsServer(Subscriptions):
    """The fake Exchange server; use as a context manager."""

    def __init__(
        self,
        mailboxes: dict[str, str],
        *,
        username: str = "svc-cadence@contoso.example",
        password: str | None = None,
        token: str | None = None,
        impersonation: bool = True,
        build: tuple[int, int, int, int] = (15, 1, 2507, 6),
        ntlm_user_file: Path | None = None,
    ) -> None:
        self.mailboxes = {e.lower(): Mailbox(e.lower(), n) for e, n in mailboxes.items()}
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.token = token
        #: the service account holds the ApplicationImpersonation role
        self.impersonation = impersonation
        #: NTLM instead of basic: the accounts live in an NTLM_USER_FILE (DOMAIN:user:password)
        self.ntlm = ntlm_user_file is not None
        self.handshakes = 0
        if ntlm_user_file is not None:
            domain, _, user = self.username.partition("\\")
            ntlm_user_file.write_text(f"{domain}:{user}:{self.password}\n")
            ntlm_user_file.chmod(0o600)
        self.build = build
        #: the EWSFindCountLimit of the throttling policy (1000 by default)
        self.find_count_limit = 1000
        self.counts: collections.Counter[str] = collections.Counter()
        #: pull subscriptions by id (see tests/exchange/notify.py)
        self.subscriptions: dict[str, Subscription] = {}
        self.holding = collections.Counter()
        self.sent: list[EmailMessage] = []
        self.invitations: list[tuple[str, str, str]] = []  # (kind, to, subject)
        self.requests: list[Request] = []
        self._throttle: dict[str, list[int]] = collections.defaultdict(list)
        self._failures: dict[str, list[str]] = collections.defaultdict(list)
        self._lock = threading.RLock()
        self._occ: dict[str, tuple[str, int]] = {}
        self._corrupt: set[str] = set()
        self._lost: collections.Counter[str] = collections.Counter()
        #: random faults for soak tests (see ``chaos``)
        self.chaos_rate = 0.0
        self.chaos_random = random.Random(0)
        self.chaos_count: collections.Counter[str] = collections.Counter()
        self.clock: Any = None
        #: ``operation|mailbox`` → the clock time before which it must not be called again
        self.throttled: dict[str, float] = {}
        #: requests made before the back-off their mailbox and operation were given
        self.early: list[str] = []
        #: seconds of added latency (``slow``) and of a held answer (``timeout``: set it
        #: beyond the client's timeout)
        self.latency, self.hold = 0.05, 1.0
        #: seconds every answer waits, outside the lock (a network's round trip, benchmarks)
        self.delay = 0.0
        self.back_off_ms = 2000
        self.chaos_kinds = CHAOS_KINDS
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost", "mail.contoso.example")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = True
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.ews = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> EwsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.closing = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}{PATH}"

    def write_ca(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        path.chmod(0o600)
        return path

    # --- test controls -----------------------------------------------------------------

    def throttle(self, operation: str, times: int = 1, back_off_ms: int = 2000) -> None:
        """Answer the next ``times`` requests of ``operation`` with ErrorServerBusy."""
        self._throttle[operation].extend([back_off_ms] * times)

    def fail(self, operation: str, code: str, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``operation`` with a fault ``code``."""
        self._failures[operation].extend([code] * times)

    def lose_response(self, operation: str, times: int = 1) -> None:
        """Carry out the next ``times`` requests of ``operation``, then answer 503 (a
        response lost on the way back: the client cannot tell it worked)."""
        self._lost[operation] += times

    def chaos(
        self,
        rate: float,
        seed: int,
        clock: Any,
        back_off_ms: int = 2000,
        kinds: tuple[str, ...] = CHAOS_KINDS,
    ) -> None:
        """Fault ``rate`` of requests at random, each one of :data:`CHAOS_KINDS`:
        ErrorServerBusy with ``back_off_ms``; a SOAP fault (HTTP 500,
        ErrorInternalServerTransientError); a 502 or 503 from a proxy; a lost answer (the
        operation took effect, then a 503 or a closed connection); a connection dropped
        before the request was read; added latency; an answer held for ``hold`` seconds
        (the operation took effect). ``clock.now()`` (seconds) tells when a throttled
        mailbox may call an operation again; earlier calls land in ``early``."""
        with self._lock:
            self.chaos_rate, self.chaos_random, self.clock = rate, random.Random(seed), clock
            self.back_off_ms, self.chaos_kinds = back_off_ms, kinds

    def _chaos(self, request: Request, conn: dict[str, Any]) -> str | None:
        """Pick this request's fault, if any; what the connection does is left in ``conn``."""
        if not self.chaos_rate:
            return None
        who = f"{request.operation}|{request.impersonating or request.user}"
        now = self.clock.now()
        if self.throttled.get(who, 0.0) > now:
            self.early.append(f"{who} {self.throttled[who] - now:.2f}s early")
        if self.chaos_random.random() >= self.chaos_rate:
            return None
        kind = self.chaos_random.choice(self.chaos_kinds)
        self.chaos_count[kind] += 1
        if kind == "busy":
            self.throttled[who] = now + self.back_off_ms / 1000
            raise EwsFault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                self.back_off_ms,
            )
        if kind == "500":
            raise EwsFault(
                "ErrorInternalServerTransientError",
                "An internal server error occurred. Try again later.",
            )
        if kind == "lost":  # after the operation: a 503, or the connection closes
            return self.chaos_random.choice(["lost-503", "lost-dropped"])
        if kind in ("dropped", "timeout"):
            conn["chaos"] = ("drop", self.hold if kind == "timeout" else 0.0)
        elif kind == "slow":
            conn["chaos"] = ("delay", self.latency)
        return kind

    def corrupt(self, item_id: str) -> None:
        """Make GetItem answer ErrorCorruptData for one item, as a damaged item does."""
        self._corrupt.add(item_id)

    def reset_counts(self) -> None:
        self.counts.clear()

    def add_delegate(self, owner: str, user: str) -> None:
        self.mailboxes[owner.lower()].delegates.add(user.lower())

    def add_event(
        self,
        owner: str,
        subject: str,
        start: datetime,
        end: datetime,
        attendees: list[str] | tuple[str, ...] = (),
        *,
        all_day: bool = False,
        rrule_text: str | None = None,
        free_busy: str = "Busy",
        zone: str = "UTC",
        body: str = "",
    ) -> str:
        """Put an item on a calendar the way Outlook would, inviting known attendees."""
        with self._lock:
            box = self._box(owner)
            item = Item(
                id=_new_id(),
                owner=box.email,
                subject=subject,
                body=body,
                start=start.astimezone(UTC),
                end=end.astimezone(UTC),
                all_day=all_day,
                free_busy=free_busy,
                organizer=box.email,
                organizer_name=box.name,
                required=[Attendee(a.lower(), self._name(a), "Unknown") for a in attendees],
                rrule=f"RRULE:{rrule_text}" if rrule_text else None,
                zone=zone,
            )
            box.items[item.id] = item
            if attendees:
                self._invite(item)
            return item.id

    def respond(self, attendee: str, organizer_item: str, response: str) -> None:
        """The attendee answers: Accept, Tentative or Decline."""
        with self._lock:
            org = self._find(organizer_item)
            copy = self.mailboxes[attendee.lower()].items[org.copies[attendee.lower()]]
            copy.my_response = response
            copy.free_busy = {"Accept": "Busy", "Tentative": "Tentative"}.get(response, "Free")
            copy.touch()
            for a in org.required + org.optional:
                if a.email == attendee.lower():
                    a.response = response
            org.touch()

    def deliver(self, owner: str, raw: bytes, received: datetime | None = None) -> Item:
        """Put a received message into ``owner``'s inbox, as a mail server would."""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        item = Item(
            id=_new_id(),
            owner=owner.lower(),
            kind="Message",
            subject=str(msg["Subject"] or ""),
            folder="inbox",
            message_id=str(msg["Message-ID"] or ""),
            received=received or datetime.now(UTC),
            mime=raw,
            sender=email.utils.parseaddr(str(msg["From"] or ""))[1].lower(),
        )
        self._box(owner).items[item.id] = item
        return item

    def delete(self, owner: str, item_id: str) -> None:
        """Remove an item, as its owner would in Outlook."""
        with self._lock:
            self._box(owner).items.pop(item_id, None)

    def items_of(self, owner: str) -> list[Item]:
        with self._lock:
            return [i for i in self._box(owner).items.values() if i.kind == "CalendarItem"]

    # --- dispatch ----------------------------------------------------------------------

    def handle(
        self, headers: dict[str, str], raw: bytes, conn: dict[str, Any] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """Answer one POST: (status, body, headers). ``conn`` is the state of the TCP
        connection: NTLM authenticates a connection, not a request, as IIS does; what a
        chaos fault does to the connection itself (drop it, delay the answer) is left
        there under ``chaos``."""
        conn = {} if conn is None else conn
        auth = headers.get("authorization", "")
        if self.ntlm and auth[:5].upper() == "NTLM ":
            step = self._ntlm_step(conn, auth[5:].strip())
            if step is not None:
                return step
        user = conn.get("user") or self._authenticate(auth)
        if user is None:
            challenge = ["NTLM"] if self.ntlm else ['Basic realm="mail.contoso.example"']
            return 401, b"", {"WWW-Authenticate": ", ".join(challenge)}
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return 400, b"", {}
        header, body = root.find(f"{{{S}}}Header"), root.find(f"{{{S}}}Body")
        if body is None or len(body) == 0:
            return 400, b"", {}
        op_elem = body[0]
        operation = op_elem.tag.split("}", 1)[-1].removesuffix("Request")
        with self._lock:
            self.counts[operation] += 1
            try:
                request = self._request(operation, op_elem, header, user)
                self.requests.append(request)
                fault = self._chaos(request, conn)
                if fault in ("502", "503"):
                    text = b"<html><body><h1>%s</h1></body></html>" % fault.encode()
                    return int(fault), text, {"Content-Type": "text/html"}
                if fault == "dropped":
                    return 0, b"", {}
                if self._throttle.get(operation):
                    raise EwsFault(
                        "ErrorServerBusy",
                        "The server cannot service this request right now. Try again later.",
                        self._throttle[operation].pop(0),
                    )
                if self._failures.get(operation):
                    raise EwsFault(self._failures[operation].pop(0))
                handler = getattr(self, f"_op_{operation}", None)
                if handler is None:
                    raise EwsFault("ErrorInvalidRequest", f"operation {operation} not supported")
                response = handler(request)
                if request.held is not None:
                    conn["held"] = request.held
                if fault == "lost-dropped":
                    conn["chaos"] = ("drop", 0.0)
                    return 0, b"", {}
                if self._lost[operation] > 0 or fault == "lost-503":
                    self._lost[operation] = max(0, self._lost[operation] - 1)
                    return 503, b"Service Unavailable", {"Content-Type": "text/plain"}
            except EwsFault as fault:
                return 500, self._fault(fault), {"Content-Type": "text/xml; charset=utf-8"}
        return 200, self._envelope(response), {"Content-Type": "text/xml; charset=utf-8"}

    def _ntlm_step(
        self, conn: dict[str, Any], token: str
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """One leg of the NTLM handshake; None once the connection is authenticated."""
        import spnego

        if "ntlm" not in conn:
            conn["ntlm"] = spnego.server(protocol="ntlm")
        context = conn["ntlm"]
        try:
            answer = context.step(base64.b64decode(token))
        except Exception:
            conn.pop("ntlm", None)
            return 401, b"", {"WWW-Authenticate": "NTLM"}
        if not context.complete:
            challenge = "NTLM " + base64.b64encode(answer or b"").decode()
            return 401, b"", {"WWW-Authenticate": challenge}
        principal = str(context.client_principal or "").lower()
        conn.pop("ntlm", None)
        self.handshakes += 1
        if principal != self.username.lower():
            return 401, b"", {"WWW-Authenticate": "NTLM"}
        conn["user"] = principal
        return None

    def _authenticate(self, auth: str) -> str | None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            if user.lower() == self.username.lower() and password == self.password:
                return self.username.lower()
        if scheme.lower() == "bearer" and self.token and value == self.token:
            return self.username.lower()
        return None

    def _request(
        self, operation: str, body: ET.Element, header: ET.Element | None, user: str
    ) -> Request:
        if operation == "ConvertId":
            # the version probe: any version is accepted, the answer says which we are
            return Request(operation, body, header, user, None, "Exchange2016")
        version = header.find(t("RequestServerVersion")) if header is not None else None
        if version is None:
            raise EwsFault("ErrorSchemaValidation", "RequestServerVersion header is missing")
        api = version.get("Version", "")
        if api not in API_VERSIONS:
            raise EwsFault("ErrorInvalidServerVersion", f"invalid server version {api!r}")
        impersonating = None
        imp = header.find(t("ExchangeImpersonation")) if header is not None else None
        if imp is not None:
            address = imp.findtext(f"{t('ConnectingSID')}/{t('PrimarySmtpAddress')}")
            if not address:
                raise EwsFault("ErrorInvalidExchangeImpersonationHeaderData")
            if not self.impersonation:
                raise EwsFault(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                )
            if address.lower() not in self.mailboxes:
                raise EwsFault("ErrorNonExistentMailbox", f"No mailbox with such guid: {address}")
            impersonating = address.lower()
        return Request(operation, body, header, user, impersonating, api)

    def _acting(self, req: Request) -> str:
        return req.impersonating or req.user

    def _may_access(self, req: Request, owner: str) -> None:
        acting = self._acting(req)
        if owner == acting or acting in self._box(owner).delegates:
            return
        raise ItemError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    def _box(self, email_address: str) -> Mailbox:
        box = self.mailboxes.get(email_address.lower())
        if box is None:
            raise ItemError("ErrorNonExistentMailbox", f"mailbox {email_address} does not exist")
        return box

    def _name(self, address: str) -> str:
        box = self.mailboxes.get(address.lower())
        return box.name if box else address

    def _find(self, item_id: str) -> Item:
        for box in self.mailboxes.values():
            if item_id in box.items:
                return box.items[item_id]
        raise ItemError("ErrorItemNotFound", "The specified object was not found in the store.")

    # --- XML out -----------------------------------------------------------------------

    def _envelope(self, response: ET.Element) -> bytes:
        major, minor, build, rev = self.build
        head = (
            f'<?xml version="1.0" encoding="utf-8"?>'
            f'<s:Envelope xmlns:s="{S}"><s:Header>'
            f'<h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" '
            f'MajorBuildNumber="{build}" MinorBuildNumber="{rev}" Version="V2017_07_11" '
            f'xmlns:h="{T}" xmlns="{T}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
            f'</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        )
        ET.register_namespace("m", M)
        ET.register_namespace("t", T)
        return (
            head + ET.tostring(response, encoding="unicode") + "</s:Body></s:Envelope>"
        ).encode()

    def _fault(self, fault: EwsFault) -> bytes:
        # As Exchange writes it: ResponseCode and Message in the errors namespace, the
        # MessageXml (where BackOffMilliseconds lives) in the types namespace.
        hint = ""
        if fault.back_off_ms is not None:
            hint = f'<t:Value Name="BackOffMilliseconds">{fault.back_off_ms}</t:Value>'
        return (
            f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Body>'
            f'<s:Fault><faultcode xmlns:a="{T}">a:{fault.code}</faultcode>'
            f'<faultstring xml:lang="en-US">{escape(fault.message)}</faultstring>'
            f'<detail><e:ResponseCode xmlns:e="{ERRORS}">{fault.code}</e:ResponseCode>'
            f'<e:Message xmlns:e="{ERRORS}">{escape(fault.message)}</e:Message>'
            f'<t:MessageXml xmlns:t="{T}">{hint}</t:MessageXml>'
            f"</detail></s:Fault></s:Body></s:Envelope>"
        ).encode()

    @staticmethod
    def _messages(operation: str) -> tuple[ET.Element, ET.Element]:
        response = ET.Element(m(f"{operation}Response"))
        return response, ET.SubElement(response, m("ResponseMessages"))

    @staticmethod
    def _message(parent: ET.Element, operation: str, error: ItemError | None = None) -> ET.Element:
        msg = ET.SubElement(
            parent,
            m(f"{operation}ResponseMessage"),
            ResponseClass="Error" if error else "Success",
        )
        if error:
            ET.SubElement(msg, m("MessageText")).text = error.message
        ET.SubElement(msg, m("ResponseCode")).text = error.code if error else "NoError"
        if error:
            ET.SubElement(msg, m("DescriptiveLinkKey")).text = "0"
        return msg

    # --- operations --------------------------------------------------------------------

    def _op_ConvertId(self, req: Request) -> ET.Element:
        response, msgs = self._messages("ConvertId")
        for _ in req.body.iter(t("AlternateId")):
            self._message(
                msgs, "ConvertId", ItemError("ErrorInvalidIdMalformed", "Id is malformed.")
            )
        return response

    def _folder_target(self, req: Request, parent: ET.Element | None) -> tuple[str, str]:
        """(owner, distinguished id) of the folder a request names."""
        if parent is None:
            raise EwsFault("ErrorSchemaValidation", "no folder given")
        dist = parent.find(t("DistinguishedFolderId"))
        if dist is None:
            folder = parent.find(t("FolderId"))
            if folder is None:
                raise EwsFault("ErrorSchemaValidation", "no folder id")
            owner, _, name = base64.b64decode(folder.get("Id", "")).decode().partition("|")
            return owner, name
        mailbox = dist.findtext(f"{t('Mailbox')}/{t('EmailAddress')}")
        return (mailbox or self._acting(req)).lower(), dist.get("Id", "")

    def _op_GetFolder(self, req: Request) -> ET.Element:
        response, msgs = self._messages("GetFolder")
        for ids in req.body.iter(m("FolderIds")):
            for child in ids:
                holder = ET.Element("x")
                holder.append(child)
                try:
                    owner, name = self._folder_target(req, holder)
                    self._box(owner)
                    self._may_access(req, owner)
                except ItemError as exc:
                    self._message(msgs, "GetFolder", exc)
                    continue
                msg = self._message(msgs, "GetFolder")
                folders = ET.SubElement(msg, m("Folders"))
                kind = {"calendar": "CalendarFolder"}.get(name, "Folder")
                folder = ET.SubElement(folders, t(kind))
                fid = base64.b64encode(f"{owner}|{name}".encode()).decode()
                ET.SubElement(folder, t("FolderId"), Id=fid, ChangeKey="AQAAAA==")
                ET.SubElement(folder, t("DisplayName")).text = name.title()
        return response

    def _op_FindItem(self, req: Request) -> ET.Element:
        response, msgs = self._messages("FindItem")
        try:
            owner, name = self._folder_target(req, req.body.find(m("ParentFolderIds")))
            self._box(owner)
            self._may_access(req, owner)
        except ItemError as exc:
            self._message(msgs, "FindItem", exc)
            return response
        if name not in ("calendar", "sentitems", "inbox"):
            self._message(msgs, "FindItem", ItemError("ErrorFolderNotFound"))
            return response
        kind = "CalendarItem" if name == "calendar" else "Message"
        shape = req.body.find(m("ItemShape"))
        view = req.body.find(m("CalendarView"))
        restriction = req.body.find(m("Restriction"))
        if view is not None and restriction is not None:
            raise EwsFault(
                "ErrorInvalidRestriction",
                "Restrictions and sort order may not be specified for a CalendarView.",
            )
        rendered: list[ET.Element] = []
        box = self._box(owner)
        if view is not None:
            start, end = _parse_dt(view.get("StartDate", "")), _parse_dt(view.get("EndDate", ""))
            if end < start:
                raise ItemError("ErrorCalendarEndDateIsEarlierThanStartDate")
            instances = []
            for item in box.items.values():
                if item.kind != "CalendarItem":
                    continue
                for index, s, e in item.occurrences(end):
                    if s < end and (e > start or (s == e and s >= start)):
                        instances.append((s, item, index, e))
            instances.sort(key=lambda x: (x[0], x[1].id))
            limit = int(view.get("MaxEntriesReturned") or 0)
            if len(instances) > self.find_count_limit:
                self._message(
                    msgs,
                    "FindItem",
                    ItemError(
                        "ErrorExceededFindCountLimit",
                        "You have exceeded the maximum number of objects that can be returned for the find operation. Use paging to reduce the result size and try your request again.",
                    ),
                )
                return response
            if limit and len(instances) > limit:
                self._message(
                    msgs,
                    "FindItem",
                    ItemError(
                        "ErrorCalendarViewRangeTooBig",
                        "The calendar view range is too big; narrow it or raise MaxEntriesReturned.",
                    ),
                )
                return response
            for s, item, index, e in instances:
                rendered.append(self._render(item, shape, index, s, e))
        else:
            matches = [
                i
                for i in box.items.values()
                if i.kind == kind
                and (kind == "CalendarItem" or i.folder == name)
                and self._matches(i, restriction)
            ]
            rendered = [self._render(i, shape) for i in matches]
        msg = self._message(msgs, "FindItem")
        root = ET.SubElement(
            msg,
            m("RootFolder"),
            TotalItemsInView=str(len(rendered)),
            IncludesLastItemInRange="true",
        )
        if view is None:
            root.set("IndexedPagingOffset", str(len(rendered)))
        items = ET.SubElement(root, t("Items"))
        items.extend(rendered)
        return response

    def _matches(self, item: Item, restriction: ET.Element | None) -> bool:
        if restriction is None:
            return True
        after = restriction.find(t("IsGreaterThanOrEqualTo"))
        if after is not None and len(restriction) == 1:
            field_uri = after.find(t("FieldURI"))
            constant = after.find(f"{t('FieldURIOrConstant')}/{t('Constant')}")
            if field_uri is None or field_uri.get("FieldURI") != "item:DateTimeReceived":
                raise EwsFault("ErrorUnsupportedQueryFilter", "only arrival times are compared")
            if constant is None:
                raise EwsFault("ErrorSchemaValidation", "no constant to compare with")
            return item.received >= _parse_dt(constant.get("Value", ""))
        equal = restriction.find(t("IsEqualTo"))
        if equal is None or len(restriction) != 1:
            raise EwsFault("ErrorUnsupportedQueryFilter", "only IsEqualTo is supported here")
        uri = equal.find(t("ExtendedFieldURI"))
        constant = equal.find(f"{t('FieldURIOrConstant')}/{t('Constant')}")
        field_uri = equal.find(t("FieldURI"))
        if field_uri is not None and constant is not None:
            if field_uri.get("FieldURI") != "message:InternetMessageId":
                raise EwsFault("ErrorUnsupportedQueryFilter", "only Message-IDs are searched")
            return item.message_id == constant.get("Value")
        if uri is None or constant is None:
            raise EwsFault("ErrorUnsupportedQueryFilter", "only extended properties are searched")
        return item.ext.get(_ext_key(uri)) == constant.get("Value")

    def _resolve(self, item_id: str) -> tuple[Item, int, datetime, datetime]:
        if item_id in self._occ:
            master_id, index = self._occ[item_id]
            master = self._find(master_id)
            for i, s, e in master.occurrences(datetime.max.replace(tzinfo=UTC) - timedelta(days=2)):
                if i == index:
                    return master, i, s, e
            raise ItemError("ErrorItemNotFound")
        item = self._find(item_id)
        return item, 0, item.start, item.end

    def _op_GetItem(self, req: Request) -> ET.Element:
        response, msgs = self._messages("GetItem")
        shape = req.body.find(m("ItemShape"))
        for ref in req.body.iter(t("ItemId")):
            try:
                item, index, s, e = self._resolve(ref.get("Id", ""))
                self._may_access(req, item.owner)
                if item.id in self._corrupt:
                    raise ItemError("ErrorCorruptData", "The item is corrupt.")
            except ItemError as exc:
                self._message(msgs, "GetItem", exc)
                continue
            msg = self._message(msgs, "GetItem")
            ET.SubElement(msg, m("Items")).append(self._render(item, shape, index, s, e))
        return response

    def _render(
        self,
        item: Item,
        shape: ET.Element | None,
        index: int = 0,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ET.Element:
        el = ET.Element(t(item.kind))
        item_id = item.id
        if index:
            item_id = base64.b64encode(
                b"AAMkOcc" + item.id.encode() + f"|{index}".encode()
            ).decode()
            self._occ[item_id] = (item.id, index)
        ET.SubElement(el, t("ItemId"), Id=item_id, ChangeKey=item.changekey)
        base = shape.findtext(t("BaseShape")) if shape is not None else "IdOnly"
        wanted: list[str] = []
        extended: list[ET.Element] = []
        props = shape.find(t("AdditionalProperties")) if shape is not None else None
        if props is not None:
            for p in props:
                if p.tag == t("FieldURI"):
                    wanted.append(p.get("FieldURI", ""))
                elif p.tag == t("ExtendedFieldURI"):
                    extended.append(p)
        if base != "IdOnly":
            wanted += ["item:Subject", "calendar:Start", "calendar:End", "calendar:Organizer"]
        s, e = start or item.start, end or item.end
        kind = "Single" if not item.rrule else ("Occurrence" if index else "RecurringMaster")

        def mailbox(parent: ET.Element, address: str, name: str) -> None:
            box = ET.SubElement(parent, t("Mailbox"))
            ET.SubElement(box, t("Name")).text = name or address
            ET.SubElement(box, t("EmailAddress")).text = address
            ET.SubElement(box, t("RoutingType")).text = "SMTP"
            ET.SubElement(box, t("MailboxType")).text = "Mailbox"

        def attendees(tag: str, people: list[Attendee]) -> None:
            if not people:
                return
            holder = ET.SubElement(el, t(tag))
            for a in people:
                att = ET.SubElement(holder, t("Attendee"))
                mailbox(att, a.email, a.name)
                ET.SubElement(att, t("ResponseType")).text = a.response

        values: dict[str, Any] = {
            "item:ItemClass": "IPM.Appointment" if item.kind == "CalendarItem" else "IPM.Note",
            "item:Subject": item.subject,
            "item:DateTimeCreated": _iso(item.created),
            "item:LastModifiedTime": _iso(item.modified),
            "calendar:UID": item.uid,
            "calendar:Start": _iso(s),
            "calendar:End": _iso(e),
            "calendar:IsAllDayEvent": str(item.all_day).lower(),
            "calendar:LegacyFreeBusyStatus": item.free_busy,
            "calendar:Location": item.location,
            "calendar:IsMeeting": str(item.is_meeting).lower(),
            "calendar:IsCancelled": str(item.cancelled).lower(),
            "calendar:IsRecurring": str(bool(item.rrule)).lower(),
            "calendar:CalendarItemType": kind,
            "calendar:MyResponseType": item.my_response,
            "calendar:AppointmentSequenceNumber": str(item.sequence),
            "message:InternetMessageId": item.message_id,
            "item:DateTimeReceived": _iso(item.received),
            "item:Size": str(len(item.mime)) if item.mime else "",
        }
        order = [
            "item:MimeContent",
            "item:ItemClass",
            "item:Subject",
            "item:Body",
            "item:DateTimeReceived",
            "item:Size",
            "item:InternetMessageHeaders",
            "item:DateTimeCreated",
            "extended",
            "item:LastModifiedTime",
            "item:TextBody",
            "calendar:UID",
            "calendar:Start",
            "calendar:End",
            "calendar:IsAllDayEvent",
            "calendar:LegacyFreeBusyStatus",
            "calendar:Location",
            "calendar:IsMeeting",
            "calendar:IsCancelled",
            "calendar:IsRecurring",
            "calendar:CalendarItemType",
            "calendar:MyResponseType",
            "calendar:Organizer",
            "calendar:RequiredAttendees",
            "calendar:OptionalAttendees",
            "calendar:AppointmentSequenceNumber",
            "calendar:StartTimeZone",
            "calendar:EndTimeZone",
            "message:Sender",
            "message:InternetMessageId",
        ]
        for uri in order:
            if uri == "extended":
                for ext in extended:
                    value = item.ext.get(_ext_key(ext))
                    if value is not None:
                        prop = ET.SubElement(el, t("ExtendedProperty"))
                        prop.append(_copy_uri(ext))
                        ET.SubElement(prop, t("Value")).text = value
                continue
            if uri not in wanted:
                continue
            if uri == "item:MimeContent" and item.mime:
                content = ET.SubElement(el, t("MimeContent"), CharacterSet="UTF-8")
                content.text = base64.b64encode(item.mime).decode()
            elif uri == "item:InternetMessageHeaders" and item.mime:
                headers = ET.SubElement(el, t("InternetMessageHeaders"))
                parsed = email.message_from_bytes(item.mime, policy=email.policy.compat32)
                for name, value in parsed.items():
                    ET.SubElement(headers, t("InternetMessageHeader"), HeaderName=name).text = value
            elif uri == "message:Sender" and item.sender:
                mailbox(ET.SubElement(el, t("Sender")), item.sender, "")
            elif uri == "item:Body":
                ET.SubElement(el, t("Body"), BodyType=item.body_type).text = item.body
            elif uri == "item:TextBody":
                ET.SubElement(el, t("TextBody"), BodyType="Text").text = _text(item)
            elif uri == "calendar:Organizer" and item.organizer:
                mailbox(ET.SubElement(el, t("Organizer")), item.organizer, item.organizer_name)
            elif uri == "calendar:RequiredAttendees":
                attendees("RequiredAttendees", item.required)
            elif uri == "calendar:OptionalAttendees":
                attendees("OptionalAttendees", item.optional)
            elif uri in ("calendar:StartTimeZone", "calendar:EndTimeZone"):
                ms_id = IANA_TO_MS_TIMEZONE_MAP.get(item.zone, ("UTC",))[0]
                ET.SubElement(el, t(uri.split(":")[1]), Id=ms_id, Name=ms_id)
            elif uri in values and values[uri] != "":
                ET.SubElement(el, t(uri.split(":")[1])).text = values[uri]
        return el

    def _op_CreateItem(self, req: Request) -> ET.Element:
        response, msgs = self._messages("CreateItem")
        body = req.body
        items = body.find(m("Items"))
        if items is None:
            raise EwsFault("ErrorSchemaValidation", "Items missing")
        target = body.find(m("SavedItemFolderId"))
        for elem in items:
            kind = elem.tag.split("}", 1)[-1]
            try:
                if kind == "CalendarItem":
                    owner, _ = (
                        self._folder_target(req, target)
                        if target is not None
                        else (self._acting(req), "calendar")
                    )
                    self._may_access(req, owner)
                    created = self._create_calendar_item(req, owner, elem)
                    msg = self._message(msgs, "CreateItem")
                    out = ET.SubElement(msg, m("Items"))
                    ET.SubElement(
                        ET.SubElement(out, t("CalendarItem")),
                        t("ItemId"),
                        Id=created.id,
                        ChangeKey=created.changekey,
                    )
                elif kind == "Message":
                    owner = (
                        self._folder_target(req, target)[0]
                        if target is not None
                        else self._acting(req)
                    )
                    self._may_access(req, owner)
                    self._send_message(req, owner, elem)
                    msg = self._message(msgs, "CreateItem")
                    ET.SubElement(msg, m("Items"))
                else:
                    raise ItemError("ErrorInvalidRequest", f"cannot create {kind}")
            except ItemError as exc:
                self._message(msgs, "CreateItem", exc)
        return response

    def _create_calendar_item(self, req: Request, owner: str, elem: ET.Element) -> Item:
        invitations = req.body.get("SendMeetingInvitations")
        if invitations not in ("SendToNone", "SendOnlyToAll", "SendToAllAndSaveCopy"):
            raise ItemError(
                "ErrorSendMeetingInvitationsRequired",
                "SendMeetingInvitations attribute is required for calendar items.",
            )
        box = self._box(owner)
        item = Item(id=_new_id(), owner=owner, organizer=owner, organizer_name=box.name)
        self._apply_fields(item, elem)
        if item.end < item.start:
            raise ItemError("ErrorCalendarEndDateIsEarlierThanStartDate")
        box.items[item.id] = item
        if invitations != "SendToNone" and item.is_meeting:
            self._invite(item)
        return item

    def _apply_fields(self, item: Item, elem: ET.Element) -> bool:
        """Copy the properties of a CalendarItem element; return whether the time changed."""
        timed = False
        for child in elem:
            name = child.tag.split("}", 1)[-1]
            if name == "Subject":
                item.subject = child.text or ""
            elif name == "Body":
                item.body, item.body_type = child.text or "", child.get("BodyType", "Text")
            elif name == "ExtendedProperty":
                uri = child.find(t("ExtendedFieldURI"))
                if uri is not None:
                    item.ext[_ext_key(uri)] = child.findtext(t("Value")) or ""
            elif name == "Start":
                item.start, timed = _parse_dt(child.text or ""), True
            elif name == "End":
                item.end, timed = _parse_dt(child.text or ""), True
            elif name == "IsAllDayEvent":
                item.all_day = child.text == "true"
            elif name == "LegacyFreeBusyStatus":
                if child.text not in FREE_BUSY:
                    raise ItemError("ErrorInvalidPropertyRequest", f"bad status {child.text}")
                item.free_busy = child.text or "Busy"
            elif name == "Location":
                item.location = child.text or ""
            elif name == "StartTimeZone":
                item.zone = _iana(child.get("Id", "UTC"))
            elif name in ("RequiredAttendees", "OptionalAttendees"):
                people = [
                    Attendee(
                        (a.findtext(f"{t('Mailbox')}/{t('EmailAddress')}") or "").lower(),
                        a.findtext(f"{t('Mailbox')}/{t('Name')}") or "",
                        "Unknown",
                    )
                    for a in child.findall(t("Attendee"))
                ]
                if name == "RequiredAttendees":
                    item.required = people
                else:
                    item.optional = people
        return timed

    def _invite(self, item: Item) -> None:
        """Deliver the meeting request: a tentative copy on each known attendee's calendar."""
        for a in item.required + item.optional:
            self.invitations.append(("request", a.email, item.subject))
            box = self.mailboxes.get(a.email)
            if box is None or a.email == item.owner:
                continue
            copy = Item(
                id=_new_id(),
                owner=box.email,
                subject=item.subject,
                body=item.body,
                body_type=item.body_type,
                start=item.start,
                end=item.end,
                all_day=item.all_day,
                free_busy="Tentative",
                location=item.location,
                organizer=item.organizer,
                organizer_name=item.organizer_name,
                required=[Attendee(x.email, x.name, x.response) for x in item.required],
                optional=[Attendee(x.email, x.name, x.response) for x in item.optional],
                my_response="NoResponseReceived",
                uid=item.uid,
                sequence=item.sequence,
                rrule=item.rrule,
                zone=item.zone,
                copy_of=(item.owner, item.id),
            )
            box.items[copy.id] = copy
            item.copies[a.email] = copy.id

    def _op_UpdateItem(self, req: Request) -> ET.Element:
        response, msgs = self._messages("UpdateItem")
        mode = req.body.get("SendMeetingInvitationsOrCancellations")
        conflict = req.body.get("ConflictResolution", "AutoResolve")
        for change in req.body.iter(t("ItemChange")):
            try:
                ref = change.find(t("ItemId"))
                if ref is None:
                    raise ItemError("ErrorInvalidIdEmpty")
                item = self._find(ref.get("Id", ""))
                self._may_access(req, item.owner)
                if item.kind == "CalendarItem" and mode not in (
                    "SendToNone",
                    "SendOnlyToAll",
                    "SendOnlyToChanged",
                    "SendToAllAndSaveCopy",
                    "SendToChangedAndSaveCopy",
                ):
                    raise ItemError(
                        "ErrorSendMeetingInvitationsOrCancellationsRequired",
                        "SendMeetingInvitationsOrCancellations is required for calendar items.",
                    )
                if (
                    conflict != "AlwaysOverwrite"
                    and ref.get("ChangeKey")
                    and ref.get("ChangeKey") != item.changekey
                ):
                    raise ItemError(
                        "ErrorIrresolvableConflict",
                        "The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.",
                    )
                timed = False
                for update in change.iter():
                    if update.tag == t("SetItemField"):
                        holder = update.find(t("CalendarItem"))
                        if holder is not None:
                            timed |= self._apply_fields(item, holder)
                    elif update.tag == t("DeleteItemField"):
                        uri = update.find(t("ExtendedFieldURI"))
                        if uri is not None:
                            item.ext.pop(_ext_key(uri), None)
                if item.end < item.start:
                    raise ItemError("ErrorCalendarEndDateIsEarlierThanStartDate")
                if timed and item.is_meeting and item.organizer == item.owner:
                    item.sequence += 1
                item.touch()
                if mode and mode != "SendToNone":
                    self._update_copies(item, timed)
            except ItemError as exc:
                self._message(msgs, "UpdateItem", exc)
                continue
            msg = self._message(msgs, "UpdateItem")
            out = ET.SubElement(ET.SubElement(msg, m("Items")), t("CalendarItem"))
            ET.SubElement(out, t("ItemId"), Id=item.id, ChangeKey=item.changekey)
            summary = ET.SubElement(msg, m("ConflictResults"))
            ET.SubElement(summary, t("Count")).text = "0"
        return response

    def _update_copies(self, item: Item, timed: bool) -> None:
        for address, copy_id in item.copies.items():
            self.invitations.append(("update", address, item.subject))
            copy = self.mailboxes[address].items.get(copy_id)
            if copy is None:
                continue
            copy.subject, copy.start, copy.end = item.subject, item.start, item.end
            copy.sequence, copy.location, copy.body = item.sequence, item.location, item.body
            if timed:
                copy.my_response, copy.free_busy = "NoResponseReceived", "Tentative"
            copy.touch()

    def _op_DeleteItem(self, req: Request) -> ET.Element:
        response, msgs = self._messages("DeleteItem")
        mode = req.body.get("SendMeetingCancellations")
        for ref in req.body.iter(t("ItemId")):
            try:
                item = self._find(ref.get("Id", ""))
                self._may_access(req, item.owner)
                if item.kind == "CalendarItem" and mode not in (
                    "SendToNone",
                    "SendOnlyToAll",
                    "SendToAllAndSaveCopy",
                ):
                    raise ItemError(
                        "ErrorSendMeetingCancellationsRequired",
                        "SendMeetingCancellations attribute is required for calendar items.",
                    )
                del self.mailboxes[item.owner].items[item.id]
                if mode != "SendToNone" and item.organizer == item.owner:
                    for address, copy_id in item.copies.items():
                        self.invitations.append(("cancel", address, item.subject))
                        copy = self.mailboxes[address].items.get(copy_id)
                        if copy is not None:
                            copy.cancelled, copy.free_busy = True, "Free"
                            copy.subject = f"Canceled: {item.subject}"
                            copy.touch()
            except ItemError as exc:
                self._message(msgs, "DeleteItem", exc)
                continue
            self._message(msgs, "DeleteItem")
        return response

    def _send_message(self, req: Request, owner: str, elem: ET.Element) -> None:
        disposition = req.body.get("MessageDisposition")
        if disposition not in ("SendOnly", "SendAndSaveCopy", "SaveOnly"):
            raise ItemError("ErrorInvalidRequest", "MessageDisposition is required for messages")
        mime = elem.findtext(t("MimeContent"))
        if mime:
            msg = email.message_from_bytes(base64.b64decode(mime), policy=email.policy.default)
        else:
            msg = EmailMessage()
            msg["Subject"] = elem.findtext(t("Subject")) or ""
            msg.set_content(elem.findtext(t("Body")) or "")
            msg["To"] = ", ".join(a.text or "" for a in elem.iter(t("EmailAddress")) if a.text)
        assert isinstance(msg, EmailMessage)
        if "From" not in msg:
            msg["From"] = owner
        sender = email.utils.parseaddr(str(msg["From"]))[1].lower()
        if sender != owner:
            raise ItemError(
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
            )
        if "Message-ID" not in msg:
            msg["Message-ID"] = f"<{secrets.token_hex(8)}@mail.contoso.example>"
        if disposition != "SaveOnly":
            self.sent.append(msg)
        if disposition == "SendAndSaveCopy":
            copy = Item(
                id=_new_id(),
                owner=owner,
                kind="Message",
                subject=str(msg["Subject"] or ""),
                folder="sentitems",
                message_id=str(msg["Message-ID"]),
            )
            self._box(owner).items[copy.id] = copy

    def _op_GetServerTimeZones(self, req: Request) -> ET.Element:
        response, msgs = self._messages("GetServerTimeZones")
        ids = [i.text for i in req.body.iter(t("Id"))]
        msg = self._message(msgs, "GetServerTimeZones")
        defs = ET.SubElement(msg, m("TimeZoneDefinitions"))
        for zone_id in ids or ["UTC"]:
            if zone_id != "UTC":
                raise EwsFault("ErrorInvalidRequest", f"this server knows only UTC, not {zone_id}")
            tz = ET.SubElement(
                defs, t("TimeZoneDefinition"), Id="UTC", Name="(UTC) Coordinated Universal Time"
            )
            periods = ET.SubElement(tz, t("Periods"))
            ET.SubElement(
                periods,
                t("Period"),
                Bias="PT0H",
                Name="Standard",
                Id="trule:Microsoft/Registry/UTC/2006-Standard",
            )
            groups = ET.SubElement(tz, t("TransitionsGroups"))
            group = ET.SubElement(groups, t("TransitionsGroup"), Id="0")
            tr = ET.SubElement(group, t("Transition"))
            ET.SubElement(
                tr, t("To"), Kind="Period"
            ).text = "trule:Microsoft/Registry/UTC/2006-Standard"
            transitions = ET.SubElement(tz, t("Transitions"))
            tr = ET.SubElement(transitions, t("Transition"))
            ET.SubElement(tr, t("To"), Kind="Group").text = "0"
        return response

    def _op_GetUserAvailability(self, req: Request) -> ET.Element:
        body = req.body
        tz = body.find(m("TimeZone"))
        if tz is None:
            tz = body.find(t("TimeZone"))
        if tz is None:
            raise EwsFault("ErrorSchemaValidation", "TimeZone is required")
        bias = int(tz.findtext(t("Bias")) or "0")
        dst_bias = int(tz.findtext(f"{t('DaylightTime')}/{t('Bias')}") or "0")
        if dst_bias:
            raise EwsFault("ErrorInvalidRequest", "this server handles only zones without DST")
        offset = timedelta(minutes=-bias)
        options = body.find(t("FreeBusyViewOptions"))
        if options is None:
            raise EwsFault("ErrorSchemaValidation", "FreeBusyViewOptions is required")
        window = options.find(t("TimeWindow"))
        assert window is not None
        start = datetime.fromisoformat(window.findtext(t("StartTime")) or "")
        end = datetime.fromisoformat(window.findtext(t("EndTime")) or "")
        start = (start.replace(tzinfo=None) - offset).replace(tzinfo=UTC)
        end = (end.replace(tzinfo=None) - offset).replace(tzinfo=UTC)
        if end - start > MAX_AVAILABILITY_WINDOW:
            raise EwsFault(
                "ErrorTimeIntervalTooBig",
                "The time window for the free/busy request is longer than 42 days.",
            )
        mailboxes = body.findall(f"{m('MailboxDataArray')}/{t('MailboxData')}")
        if len(mailboxes) > MAX_AVAILABILITY_MAILBOXES:
            raise EwsFault(
                "ErrorProxyRequestProcessingFailed",
                "You have exceeded the maximum number of objects that can be returned for the find operation. Use paging to reduce the result size and try your request again.",
            )
        response = ET.Element(m("GetUserAvailabilityResponse"))
        array = ET.SubElement(response, m("FreeBusyResponseArray"))
        for data in mailboxes:
            address = (data.findtext(f"{t('Email')}/{t('Address')}") or "").lower()
            answer = ET.SubElement(array, m("FreeBusyResponse"))
            box = self.mailboxes.get(address)
            if box is None:
                # each mailbox has a plain ResponseMessage of its own
                error = ItemError("ErrorMailRecipientNotFound", "No mailbox with such address.")
                self._message(answer, "", error)
                continue
            self._message(answer, "")
            view = ET.SubElement(answer, m("FreeBusyView"))
            ET.SubElement(view, t("FreeBusyViewType")).text = "Detailed"
            events = ET.SubElement(view, t("CalendarEventArray"))
            spans = []
            for item in box.items.values():
                if item.kind != "CalendarItem" or item.free_busy == "Free" or item.cancelled:
                    continue
                for _, s, e in item.occurrences(end):
                    if s < end and e > start:
                        spans.append((s, e, item))
            for s, e, item in sorted(spans, key=lambda x: (x[0], x[1])):
                ev = ET.SubElement(events, t("CalendarEvent"))
                ET.SubElement(ev, t("StartTime")).text = (
                    (s + offset).replace(tzinfo=None).isoformat()
                )
                ET.SubElement(ev, t("EndTime")).text = (e + offset).replace(tzinfo=None).isoformat()
                ET.SubElement(ev, t("BusyType")).text = item.free_busy
                details = ET.SubElement(ev, t("CalendarEventDetails"))
                ET.SubElement(details, t("Subject")).text = item.subject
                ET.SubElement(details, t("IsMeeting")).text = str(item.is_meeting).lower()
                ET.SubElement(details, t("IsRecurring")).text = str(bool(item.rrule)).lower()
        return response


def _iana(ms_id: str) -> str:
    for iana, (ms, _) in IANA_TO_MS_TIMEZONE_MAP.items():
        if ms == ms_id:
            return iana
    return "UTC"


def _ext_key(uri: ET.Element) -> tuple[str, str, str]:
    return (
        (uri.get("PropertySetId") or uri.get("DistinguishedPropertySetId") or "").lower(),
        uri.get("PropertyName") or uri.get("PropertyId") or uri.get("PropertyTag") or "",
        uri.get("PropertyType", ""),
    )


def _copy_uri(uri: ET.Element) -> ET.Element:
    out = ET.Element(t("ExtendedFieldURI"))
    for k, v in uri.attrib.items():
        out.set(k, v)
    return out


def _text(item: Item) -> str:
    if item.body_type == "HTML":
        return re.sub(r"<[^>]+>", "", item.body)
    return item.body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK (40 ms per request)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn: dict[str, Any] = {}  # one handler per TCP connection

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        server: EwsServer = self.server.ews  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != PATH:
            self._reply(404, b"", {})
            return
        status, body, headers = server.handle(
            {k.lower(): v for k, v in self.headers.items()}, raw, self.conn
        )
        if server.delay:
            time.sleep(server.delay)
        held = self.conn.pop("held", None)
        if held is not None and status == 200:
            self._hold(server, held, body, headers)
            return
        action, seconds = self.conn.pop("chaos", ("", 0.0))
        time.sleep(seconds)  # outside the server's lock: other requests go on
        if action == "drop":  # closed without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(status, body, headers)

    def _hold(self, server: EwsServer, held: Held, first: bytes, headers: dict[str, str]) -> None:
        """Answer GetStreamingEvents in chunks, one envelope each, as Exchange does."""
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(envelope: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(envelope), envelope))
            self.wfile.flush()

        try:
            send(first)
            server.hold_open(held, send)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client closed the connection
            self.close_connection = True

    def do_GET(self) -> None:
        self._reply(405, b"", {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
