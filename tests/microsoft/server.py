"""A local HTTPS server that behaves like the parts of Microsoft Graph and the Microsoft
identity platform that Cadence calls, keeping state between requests.

Identity (what MSAL calls with ``instance_discovery=False``):

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``
- ``POST /{tenant}/oauth2/v2.0/token``: ``client_credentials`` (secret, or a signed
  client assertion checked against the registered certificate) and ``device_code``
- ``POST /{tenant}/oauth2/v2.0/devicecode``

Graph v1.0, per mailbox ``/users/{id}``:

- ``calendarView/delta`` with ``startDateTime``/``endDateTime``, pages of
  ``Prefer: odata.maxpagesize`` (default 10), opaque ``$skiptoken``/``$deltatoken``
  replayed from ``@odata.nextLink``/``@odata.deltaLink``, ``@removed`` entries, and
  ``410 Gone`` with ``syncStateNotFound`` for tokens it no longer knows
- ``events``: POST (``transactionId`` de-duplication, single-value extended properties,
  invitations copied onto attendees' calendars, Teams join URL), GET with the
  extended-property ``$filter`` and ``$expand``, GET/PATCH/DELETE by id, ``cancel``
- ``calendar/getSchedule`` (at most 20 schedules, a period under 62 days), computed from
  the stored events
- ``mailboxSettings`` (``timeZone``, ``workingHours`` and ``language``, a localeInfo),
  ``sendMail`` (JSON or base64 MIME; 202; messages are kept)
- ``mailFolders/inbox/messages`` (``$filter`` on ``receivedDateTime``, ``$select``,
  ``$top`` of 1 to 1000, default 10, newest first, ``@odata.nextLink`` with ``$skip``)
  and ``messages/{id}/$value`` (the MIME as ``text/plain``), both needing ``Mail.Read``
  (``$value``) or at least ``Mail.ReadBasic`` (the listing): delegated scopes are checked,
  and :attr:`GraphServer.app_permissions` for an application's token
- ``mailFolders/SentItems/messages``: what ``sendMail`` saved (``saveToSentItems``, the
  default), listed like the inbox and filtered by ``internetMessageId eq '…'``, with
  ``Mail.ReadBasic`` at least
- ``$batch`` (at most 20 requests, each dispatched and throttled on its own)
- the directory: ``users``, ``users/delta`` and a group's ``transitiveMembers``
  (:mod:`tests.microsoft.directory`)

Every request is counted per route in :attr:`GraphServer.counts`. Tests can queue
throttling answers with :meth:`GraphServer.throttle`, expire delta tokens with
:meth:`GraphServer.expire_delta_tokens` and put mail in an inbox with
:meth:`GraphServer.deliver`.
"""

from __future__ import annotations

import base64
import collections
import email
import email.policy
import email.utils
import hashlib
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from dateutil import rrule
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from tests import chaos as faults
from tests.microsoft import directory
from tests.microsoft.push import Subscriptions

SEQUENCE_PROPERTY = "Integer {00062002-0000-0000-C000-000000000046} Id 0x8201"
MAX_BATCH = 20
MAX_SCHEDULES = 20
MAX_SCHEDULE_PERIOD = timedelta(days=62)
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class GraphError(Exception):
    def __init__(
        self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None
    ):
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message or code
        self.headers = headers or {}


def zone_of(name: str) -> ZoneInfo:
    """Resolve a Graph time zone name: UTC, IANA or Windows."""
    if name in ("UTC", "tzone://Microsoft/Utc", "Coordinated Universal Time"):
        return ZoneInfo("UTC")
    name = WINDOWS_TO_OLSON.get(name, name)
    try:
        return ZoneInfo(name)
    except Exception as exc:
        raise GraphError(400, "TimeZoneNotSupportedException", f"time zone {name!r}") from exc


def parse_dtz(value: dict[str, Any]) -> datetime:
    """Turn a Graph dateTimeTimeZone into an aware UTC datetime."""
    try:
        naive = datetime.fromisoformat(value["dateTime"][:26].rstrip("Z"))
    except (KeyError, TypeError, ValueError) as exc:
        raise GraphError(400, "ErrorInvalidRequest", f"bad dateTimeTimeZone {value!r}") from exc
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=zone_of(value.get("timeZone") or "UTC")).astimezone(UTC)


def format_dtz(dt: datetime, zone: str = "UTC") -> dict[str, str]:
    local = dt.astimezone(zone_of(zone)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(timespec="microseconds") + "0", "timeZone": zone}


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@dataclass
class StoredEvent:
    """One event (single or series master) in one mailbox."""

    id: str
    body: dict[str, Any]
    start: datetime
    end: datetime
    zone: str
    changed: int
    all_day_dates: tuple[date, date] | None = None
    sequence: int = 0
    copies: dict[str, str] = field(default_factory=dict)  # attendee email → their event id
    master_of_copy: tuple[str, str] | None = None  # (organizer mailbox, organizer event id)

    def instances(self, window_start: datetime, window_end: datetime) -> list[dict[str, Any]]:
        """The event as calendarView shows it: one item, or one per occurrence."""
        recurrence = self.body.get("recurrence")
        if not recurrence:
            if self.overlaps(self.start, self.end, window_start, window_end):
                return [self.render()]
            return []
        out = []
        duration = self.end - self.start
        for start in self.occurrences(recurrence, window_end):
            end = start + duration
            if self.overlaps(start, end, window_start, window_end):
                stamp = start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
                item = self.render(start, end)
                item.update(
                    {
                        "id": f"{self.id}_{stamp}",
                        "type": "occurrence",
                        "seriesMasterId": self.id,
                        "recurrence": None,
                    }
                )
                out.append(item)
        return out

    @staticmethod
    def overlaps(s: datetime, e: datetime, ws: datetime, we: datetime) -> bool:
        return s < we and (e > ws or (s == e and s >= ws))

    def occurrences(self, recurrence: dict[str, Any], until: datetime) -> Iterator[datetime]:
        pattern, rng = recurrence["pattern"], recurrence["range"]
        freq = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "absoluteMonthly": rrule.MONTHLY}
        zone = zone_of(rng.get("recurrenceTimeZone") or self.zone)
        local_start = self.start.astimezone(zone).replace(tzinfo=None)
        kwargs: dict[str, Any] = {"interval": int(pattern.get("interval") or 1)}
        if pattern["type"] == "weekly" and pattern.get("daysOfWeek"):
            kwargs["byweekday"] = [DAY_NAMES.index(d) for d in pattern["daysOfWeek"]]
        if rng["type"] == "numbered":
            kwargs["count"] = int(rng["numberOfOccurrences"])
        elif rng["type"] == "endDate":
            kwargs["until"] = datetime.fromisoformat(rng["endDate"]) + timedelta(days=1)
        limit = until.astimezone(zone).replace(tzinfo=None)
        for local in rrule.rrule(freq[pattern["type"]], dtstart=local_start, **kwargs):
            if local >= limit:
                return
            yield local.replace(tzinfo=zone).astimezone(UTC)

    def render(self, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
        item = dict(self.body)
        item.pop("singleValueExtendedProperties", None)
        item["id"] = self.id
        start, end = start or self.start, end or self.end
        if self.all_day_dates:
            days = (start - self.start).days
            first = self.all_day_dates[0] + timedelta(days=days)
            last = self.all_day_dates[1] + timedelta(days=days)
            item["start"] = {"dateTime": f"{first.isoformat()}T00:00:00.0000000", "timeZone": "UTC"}
            item["end"] = {"dateTime": f"{last.isoformat()}T00:00:00.0000000", "timeZone": "UTC"}
        else:
            item["start"], item["end"] = format_dtz(start), format_dtz(end)
        item.setdefault("type", "seriesMaster" if item.get("recurrence") else "singleInstance")
        return item


@dataclass
class Mailbox:
    email: str
    events: dict[str, StoredEvent] = field(default_factory=dict)
    removed: list[tuple[int, str, list[str]]] = field(
        default_factory=list
    )  # (counter, id, instance ids)
    transactions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    inbox: dict[str, StoredMessage] = field(default_factory=dict)
    sent_items: dict[str, StoredMessage] = field(default_factory=dict)


def _authentication_results(raw: bytes, authenticated: bool, results: str | None) -> str:
    """The field Exchange Online adds above a message it receives (the verdicts are
    given, not computed: there is no DNS here)."""
    if results is None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1]
        domain = sender.rpartition("@")[2] or "unknown.invalid"
        path = email.utils.parseaddr(str(msg.get("Return-Path", "")))[1] or sender
        if authenticated:
            results = (
                f"spf=pass (sender IP is 192.0.2.7) smtp.mailfrom={domain}; dkim=pass "
                f"(signature was verified) header.d={domain};dmarc=pass action=none "
                f"header.from={domain};compauth=pass reason=100"
            )
        else:
            results = (
                f"spf=fail (sender IP is 203.0.113.9) smtp.mailfrom={path.rpartition('@')[2]};"
                f" dkim=none (message not signed) header.d=none;dmarc=fail action=oreject "
                f"header.from={domain};compauth=fail reason=000"
            )
    return f"Authentication-Results: {results}\r\n"


@dataclass
class StoredMessage:
    """One message in an inbox: its MIME as delivered, and the summary Graph lists."""

    id: str
    received: datetime
    raw: bytes

    def render(self) -> dict[str, Any]:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        sender = email.utils.parseaddr(str(msg.get("From", "")))
        stamp = self.received.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "@odata.etag": f'W/"{hashlib.sha256(self.raw).hexdigest()[:16]}"',
            "id": self.id,
            "createdDateTime": stamp,
            "receivedDateTime": stamp,
            "subject": str(msg.get("Subject", "")),
            "internetMessageId": str(msg.get("Message-ID", "")),
            "from": {"emailAddress": {"name": sender[0], "address": sender[1]}},
            "isRead": False,
        }

    def headers(self) -> list[dict[str, str]]:
        """``internetMessageHeaders``: every header field, in order, values unfolded."""
        msg = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return [{"name": k, "value": " ".join(str(v).split())} for k, v in msg.items()]


@dataclass
class DeltaState:
    mailbox: str
    start: datetime
    end: datetime
    counter: int
    pending: list[dict[str, Any]] = field(default_factory=list)


class GraphServer:
    """The fake Graph and identity endpoints; use as a context manager."""

    def __init__(
        self,
        users: Sequence[str],
        *,
        tenant: str = "cadence-test-tenant",
        client_id: str = "00000000-0000-4000-8000-00000000c1d0",
        client_secret: str | None = "s3cret-value",
        certificate_pem: bytes | None = None,
        page_size: int = 10,
        workdir: Path | None = None,
        latency: float = 0.0,
    ) -> None:
        #: seconds every HTTP request waits before it is answered (outside the lock)
        self.latency = latency
        #: HTTP requests received (a $batch counts once, its parts are in counts)
        self.http_requests = 0
        #: seconds spent answering them, latency excluded (the fake's own CPU time)
        self.busy_seconds = 0.0
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.certificate = (
            x509.load_pem_x509_certificate(certificate_pem) if certificate_pem else None
        )
        self.page_size = page_size
        #: the most items a page holds whatever the client prefers
        self.max_page_size = 1000
        self.mailboxes = {
            u.lower(): Mailbox(u.lower(), settings=self.default_settings()) for u in users
        }
        self.sent: list[EmailMessage] = []
        self.sent_json: list[dict[str, Any]] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str]] = []
        self.tokens: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.device_codes: dict[str, str] = {}  # device code → "pending" | "approved"
        self.delta_states: dict[str, DeltaState] = {}
        self.throttles: list[tuple[str, int, float]] = []
        #: every request as (time.monotonic() on arrival, mailbox, route, the Retry-After
        #: it was answered with or None), for tests of who waited how long
        self.arrivals: list[tuple[float, str, str, float | None]] = []
        #: seconds the answer of a route is held back (outside the lock), so that a
        #: request is still in flight while others are answered
        self.slow: dict[str, float] = {}
        #: routes whose requests fail with 500 (a lookup that breaks), until removed
        self.broken: set[str] = set()
        #: random faults for soak tests (see ``chaos``)
        self.chaos_rate = 0.0
        self.chaos_random: Any = None
        self.chaos_kinds: tuple[str, ...] = ()
        self.clock: Any = None
        self.throttled: dict[str, float] = {}
        #: throttling by the requests of the $batch being answered (see handle)
        self.batch_throttled: dict[str, float] = {}
        self.early: list[str] = []
        self.chaos_count: Counter[str] = Counter()
        #: whether the identity endpoints are faulted too, and their faults by kind
        self.chaos_token: tuple[str, ...] = ()
        self.token_faults: Counter[str] = Counter()
        self.drop: set[str] = set()
        self.allowed_providers = ["teamsForBusiness"]
        #: the application permissions an administrator granted (client credentials)
        self.app_permissions = {
            "Calendars.ReadWrite",
            "Mail.Send",
            "MailboxSettings.Read",
            "Mail.Read",
            "User.Read.All",
            "GroupMember.Read.All",
        }
        #: the tenant's users and groups (users, users/delta, transitiveMembers)
        self.directory = directory.GraphDirectory(self)
        #: what a repeated transactionId gets (undocumented): the event, or a conflict
        self.duplicate_transaction = "return"
        self.counter = 0
        #: change notifications: subscriptions and the thread delivering them
        self.subscriptions = Subscriptions(self)
        self.lock = threading.RLock()
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self._workdir = workdir
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> GraphServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        server = self

        class Handler(_Handler):
            graph = server

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="graph", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.subscriptions.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def write_ca(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path

    # --- test hooks ------------------------------------------------------------------

    def throttle(
        self, route: str, times: int = 1, retry_after: float = 1, status: int = 429
    ) -> None:
        """Answer the next ``times`` requests to ``route`` with ``status`` and Retry-After."""
        with self.lock:
            self.throttles.extend([(route, status, retry_after)] * times)

    def chaos(
        self,
        rate: float,
        seed: int,
        clock: Any = None,
        kinds: tuple[str, ...] = faults.KINDS,
        token: bool | tuple[str, ...] = False,
    ) -> None:
        """Fault ``rate`` of API requests at random with one of ``kinds`` (see
        tests.chaos; the requests inside a ``$batch`` only get answers, the batch as a
        whole tests.chaos.BATCH). ``clock.now()`` (seconds; the monotonic clock by
        default) tells when a throttled mailbox may be called again; earlier calls land
        in ``early``. Faults are counted by kind in ``chaos_count``. The identity
        endpoints are left alone unless ``token``: then the same share of token requests
        gets tests.chaos.TOKEN faults (the OpenID configuration, 5xx and the connection
        ones), counted in ``token_faults``."""
        import random

        self.chaos_rate, self.chaos_random, self.clock = rate, random.Random(seed), clock
        self.chaos_kinds = kinds
        #: the token endpoints' fault kinds (all of tests.chaos.TOKEN for True)
        self.chaos_token = faults.TOKEN if token is True else tuple(token or ())

    def _chaos(
        self, route: str, path: str, headers: dict[str, str], inner: bool
    ) -> tuple[int, dict[str, str], bytes] | str:
        """Maybe fail this request with an answer; else return the fault still to come."""
        if self.chaos_rate and self.chaos_token and route in ("openid", "token"):
            return self._token_chaos(route)
        if not self.chaos_rate or route in ("openid", "token", "devicecode"):
            return ""
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/.*", path)
        who = f"{route}|{(m.group(1) if m else '').lower()}"
        now = self.clock.now() if self.clock else time.monotonic()
        if self.throttled.get(who, 0.0) > now:
            self.early.append(f"{who} {self.throttled[who] - now:.2f}s early")
        if self.chaos_random.random() >= self.chaos_rate:
            return ""
        # a request inside a $batch can only be answered; the batch as a whole may lose
        # its connection, and is never throttled (its requests are, mailbox by mailbox)
        kinds = faults.BATCH if route == "batch" else faults.STATUS if inner else faults.KINDS
        allowed = [k for k in self.chaos_kinds if k in kinds]
        if not allowed:
            return ""
        kind: str = self.chaos_random.choice(allowed)
        self.chaos_count[kind] += 1
        hdrs = {"Content-Type": "application/json"}
        if kind == "expired":  # the token expires now: this request and later ones get 401
            self.tokens.pop(headers.get("authorization", "")[7:], None)
            err = {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}
            return 401, hdrs, json.dumps({"error": err}).encode()
        if kind not in ("429", "500", "502", "503"):
            return kind
        if kind == "429":
            (self.batch_throttled if inner else self.throttled)[who] = now + 2
            hdrs["Retry-After"] = "2"
        code = {"429": "TooManyRequests", "502": "BadGateway"}.get(kind, "ServiceUnavailable")
        err = {"error": {"code": code, "message": "Retry later."}}
        return int(kind), hdrs, json.dumps(err).encode()

    def _token_chaos(self, route: str) -> tuple[int, dict[str, str], bytes] | str:
        if self.chaos_random.random() >= self.chaos_rate:
            return ""
        # MSAL takes a 4xx from discovery for a wrong tenant: only 5xx and the connection
        allowed = [
            k
            for k in self.chaos_token
            if route == "token" or k in ("500", "502", "503", *faults.TRANSPORT)
        ]
        if not allowed:
            return ""
        kind: str = self.chaos_random.choice(allowed)
        self.token_faults[f"{route} {kind}"] += 1
        if kind in ("429", "500", "502", "503"):
            return faults.token_answer(kind)
        return kind

    def expire_delta_tokens(self) -> None:
        with self.lock:
            self.delta_states.clear()

    def approve_device_codes(self) -> None:
        with self.lock:
            for code in self.device_codes:
                self.device_codes[code] = "approved"

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    @staticmethod
    def default_settings() -> dict[str, Any]:
        return {
            "timeZone": "W. Europe Standard Time",
            # every mailbox has a locale (localeInfo); a new one has the tenant's default
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {
                "daysOfWeek": list(DAY_NAMES[:5]),
                "startTime": "09:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "W. Europe Standard Time"},
            },
        }

    def add_event(self, owner: str, body: dict[str, Any]) -> str:
        """Put an event on a calendar as Outlook would (no transactionId, no tag)."""
        with self.lock:
            return self._create(self._mailbox(owner), dict(body), invite=True)["id"]

    def respond(self, attendee: str, event_id: str, response: str) -> None:
        """The attendee answers an invitation: accepted, tentativelyAccepted or declined."""
        with self.lock:
            box = self._mailbox(attendee)
            ev = box.events[event_id]
            ev.body["responseStatus"] = {"response": response, "time": _now()}
            if response == "declined":
                ev.body["showAs"] = "free"
            self._touch(box, ev)
            if ev.master_of_copy:
                org_box = self._mailbox(ev.master_of_copy[0])
                org = org_box.events[ev.master_of_copy[1]]
                for a in org.body.get("attendees", []):
                    if a["emailAddress"]["address"].lower() == attendee.lower():
                        a["status"] = {"response": response, "time": _now()}
                self._touch(org_box, org)

    def deliver(
        self,
        mailbox: str,
        raw: bytes,
        received: datetime | None = None,
        *,
        authenticated: bool = True,
        results: str | None = None,
    ) -> str:
        """Put a message (RFC 5322 bytes) in ``mailbox``'s inbox; return its Graph id.

        Like Exchange Online's receiving servers, put an ``Authentication-Results`` field
        on top (without an authserv-id, as Exchange Online writes it): SPF, DKIM and
        DMARC passing for the From domain, or, unless ``authenticated``, failing for it,
        or ``results`` as given.
        """
        raw = _authentication_results(raw, authenticated, results).encode() + raw
        with self.lock:
            box = self._mailbox(mailbox)
            self.counter += 1
            ident = f"AAMkAD{self.counter:04d}{secrets.token_urlsafe(12)}AAA="
            when = received or datetime.now(UTC).replace(microsecond=0)
            box.inbox[ident] = StoredMessage(ident, when, raw)
            return ident

    def events_of(self, owner: str) -> list[dict[str, Any]]:
        with self.lock:
            return [ev.render() for ev in self._mailbox(owner).events.values()]

    # --- dispatch --------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, inner: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request; used for HTTP requests and for each request of a batch
        (``inner``)."""
        parts = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(parts.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        route = self._route_name(method, path)
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/.*", path)
        who = (m.group(1) if m else "").lower()
        with self.lock:
            self.counts[route] += 1
            self.log.append((route, target))
            arrival = (time.monotonic(), who, route)
            for i, (r, status, after) in enumerate(self.throttles):
                if r == route:
                    self.arrivals.append((*arrival, after))
                    del self.throttles[i]
                    err = {"error": {"code": "TooManyRequests", "message": "Please retry later."}}
                    if status == 503:
                        err = {"error": {"code": "ServiceUnavailable", "message": "Retry later."}}
                    hdrs = {"Retry-After": f"{after:g}", "Content-Type": "application/json"}
                    return status, hdrs, json.dumps(err).encode()
            self.arrivals.append((*arrival, None))  # not throttled: the loop returns
            if route in self.broken:
                err = {"error": {"code": "InternalServerError", "message": "Broken."}}
                return 500, {"Content-Type": "application/json"}, json.dumps(err).encode()
            fault = self._chaos(route, path, headers, inner)
            if isinstance(fault, tuple):
                return fault
            if fault == "drop":
                raise faults.Transport(fault)
        with self.lock:
            if route == "batch":  # its requests' Retry-After holds once the client can read it
                self.batch_throttled = {}
            answer = self._answer(route, method, path, query, headers, body)
            if route == "batch" and fault not in ("timeout", "drop-after"):
                self.throttled.update(self.batch_throttled)
        if self.slow.get(route):
            time.sleep(self.slow[route])
        if fault == "lost" and route == "token":
            return faults.token_answer(fault)
        if fault == "lost":
            err = {"error": {"code": "ServiceUnavailable", "message": "Retry later."}}
            return 503, {"Content-Type": "application/json"}, json.dumps(err).encode()
        if fault:
            raise faults.Transport(fault, answer)
        return answer

    def _answer(
        self,
        route: str,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            with self.lock:
                status, payload, extra = self._dispatch(route, method, path, query, headers, body)
        except GraphError as exc:
            err = {"error": {"code": exc.code, "message": exc.message}}
            hdrs = {"Content-Type": "application/json", **exc.headers}
            return exc.status, hdrs, json.dumps(err).encode()
        if isinstance(payload, bytes):  # a raw answer ($value): its type is in extra
            return status, extra, payload
        hdrs = {"Content-Type": "application/json", **extra}
        data = b"" if payload is None else json.dumps(payload).encode()
        if payload is None:
            hdrs.pop("Content-Type")
        return status, hdrs, data

    @staticmethod
    def _route_name(method: str, path: str) -> str:
        if path.endswith("/.well-known/openid-configuration"):
            return "openid"
        if path.endswith("/oauth2/v2.0/token"):
            return "token"
        if path.endswith("/oauth2/v2.0/devicecode"):
            return "devicecode"
        if path == "/v1.0/$batch":
            return "batch"
        if path == "/v1.0/subscriptions" and method == "POST":
            return "subscriptions.create"
        if re.fullmatch(r"/v1\.0/subscriptions/[^/]+", path) and method in ("PATCH", "DELETE"):
            return f"subscriptions.{method.lower()}"
        named = directory.route(method, path)
        if named:
            return named
        m = re.fullmatch(r"/v1\.0/users/[^/]+/(.*)", path)
        rest = m.group(1) if m else ""
        if rest == "calendarView/delta":
            return "delta"
        if rest == "calendar/getSchedule":
            return "getSchedule"
        if rest in ("mailboxSettings", "sendMail", "calendar"):
            return rest
        if re.fullmatch(r"(?i)mailFolders/inbox/messages", rest):
            return "messages.list"
        if re.fullmatch(r"(?i)mailFolders/sentitems/messages", rest):
            return "sentitems.list"
        if re.fullmatch(r"messages/[^/]+/\$value", rest):
            return "messages.value"
        if re.fullmatch(r"messages/[^/]+", rest) and method == "GET":
            return "messages.get"
        if rest == "events":
            return "events.create" if method == "POST" else "events.list"
        if re.fullmatch(r"events/[^/]+/cancel", rest):
            return "events.cancel"
        if re.fullmatch(r"events/[^/]+", rest):
            return f"events.{method.lower()}"
        return f"unknown {method} {path}"

    def _dispatch(
        self,
        route: str,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        if route == "openid":
            return 200, self._openid(path), {}
        if route == "token":
            return self._token(path, body)
        if route == "devicecode":
            return 200, self._devicecode(body), {}
        self._authorize(headers)
        if route == "batch":
            return 200, self._batch(body, headers), {}
        if route in directory.ROUTES:
            return 200, self.directory.dispatch(route, path, query, headers), {}
        if route.startswith("subscriptions."):
            return self.subscriptions.dispatch(route, path, body)
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/(.*)", path)
        if not m:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        box = self._mailbox(m.group(1))
        rest = m.group(2)
        if route == "delta":
            return 200, self._delta(box, query, headers), {}
        if route == "getSchedule":
            return 200, self._get_schedule(_json(body)), {}
        if route == "mailboxSettings":
            return 200, box.settings, {}
        if route == "calendar":
            return (
                200,
                {"id": "calendar", "allowedOnlineMeetingProviders": self.allowed_providers},
                {},
            )
        if route == "sendMail":
            self._send_mail(box, headers, body)
            return 202, None, {}
        if route == "messages.list":
            # extended properties are withheld from Mail.ReadBasic, like bodies
            self._may_read(headers, body_too="$expand" in query)
            return 200, self._messages(box, query), {}
        if route == "messages.get":
            # internetMessageHeaders, like the body, need Mail.Read
            self._may_read(headers, body_too=True)
            found = box.inbox.get(rest.split("/")[1])
            if found is None:
                raise GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            return 200, self._select(found, query.get("$select", "")), {}
        if route == "sentitems.list":
            self._may_read(headers, body_too=False)
            return 200, self._messages(box, query, folder="sentitems"), {}
        if route == "messages.value":
            self._may_read(headers, body_too=True)
            found = box.inbox.get(rest.split("/")[1])
            if found is None:
                raise GraphError(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            return 200, found.raw, {"Content-Type": "text/plain"}
        if route == "events.create":
            payload = _json(body)
            if "drop-events.create" in self.drop:
                self.drop.discard("drop-events.create")
                self._create(box, payload, invite=True)
                raise _DropConnection
            return 201, self._create(box, payload, invite=True), {}
        if route == "events.list":
            return 200, self._list(box, query), {}
        event_id = rest.split("/")[1]
        ev = box.events.get(event_id)
        if ev is None:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if route == "events.get":
            return 200, self._expand(ev, ev.render(), query), {}
        if route == "events.patch":
            return 200, self._patch(box, ev, _json(body)), {}
        if route == "events.delete":
            self._delete(box, ev, notify=True)
            return 204, None, {}
        if route == "events.cancel":
            if ev.master_of_copy:
                raise GraphError(
                    400,
                    "ErrorInvalidRequest",
                    "Your request can't be completed. "
                    "You need to be an organizer to cancel a meeting.",
                )
            self._delete(box, ev, notify=True)
            return 202, None, {}
        raise GraphError(400, "BadRequest", f"unsupported {method} {path}")

    # --- identity --------------------------------------------------------------------

    def _openid(self, path: str) -> dict[str, Any]:
        tenant = path.strip("/").split("/")[0]
        if tenant != self.tenant:
            raise GraphError(400, "invalid_tenant", f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def _token(self, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if path.strip("/").split("/")[0] != self.tenant:
            return (
                400,
                {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."},
                {},
            )
        if form.get("client_id") != self.client_id:
            return (
                400,
                {
                    "error": "unauthorized_client",
                    "error_description": "AADSTS700016: Application not found.",
                },
                {},
            )
        grant = form.get("grant_type")
        scope = form.get("scope", "")
        if grant == "client_credentials":
            if not self._client_authenticated(form):
                return (
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                    {},
                )
            if not scope.endswith("/.default"):
                return (
                    400,
                    {"error": "invalid_scope", "error_description": "AADSTS1002012: use /.default"},
                    {},
                )
            return 200, self._issue(scope, app=True), {}
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            state = self.device_codes.get(form.get("device_code", ""))
            if state is None:
                return 400, {"error": "expired_token", "error_description": "AADSTS70019"}, {}
            if state == "pending":
                return (
                    400,
                    {"error": "authorization_pending", "error_description": "AADSTS70016"},
                    {},
                )
            del self.device_codes[form["device_code"]]
            return 200, self._issue(scope, app=False), {}
        if grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant", "error_description": "AADSTS700082"}, {}
            return 200, self._issue(scope, app=False), {}
        return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}, {}

    def _client_authenticated(self, form: dict[str, str]) -> bool:
        if "client_secret" in form:
            return self.client_secret is not None and secrets.compare_digest(
                form["client_secret"], self.client_secret
            )
        if self.certificate and form.get("client_assertion"):
            token = form["client_assertion"]
            header = jwt.get_unverified_header(token)
            sha1, sha256 = (
                base64.urlsafe_b64encode(self.certificate.fingerprint(h)).rstrip(b"=").decode()
                for h in (hashes.SHA1(), hashes.SHA256())
            )
            given = {k: str(header.get(k, "")).rstrip("=") for k in ("x5t", "x5t#S256")}
            if given["x5t"] != sha1 and given["x5t#S256"] != sha256:
                return False
            try:
                claims = jwt.decode(
                    token,
                    self.certificate.public_key(),  # type: ignore[arg-type]
                    algorithms=["RS256", "PS256"],
                    audience=f"{self.url}/{self.tenant}/oauth2/v2.0/token",
                )
            except jwt.PyJWTError:
                return False
            return bool(claims.get("iss") == self.client_id == claims.get("sub"))
        return False

    def _issue(self, scope: str, app: bool) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = {"scope": scope, "app": app}
        out: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3599, "access_token": token}
        if not app:
            refresh = secrets.token_urlsafe(24)
            self.refresh_tokens[refresh] = scope
            user = next(iter(self.mailboxes))
            claims = {
                "iss": f"{self.url}/{self.tenant}/v2.0",
                "aud": self.client_id,
                "sub": "user-1",
                "oid": "00000000-0000-4000-8000-0000000000a1",
                "tid": self.tenant,
                "preferred_username": user,
                "iat": int(time.time()),
                "exp": int(time.time()) + 3600,
            }
            info = {"uid": claims["oid"], "utid": self.tenant}
            out.update(
                refresh_token=refresh,
                scope=" ".join(
                    s for s in scope.split() if s not in ("openid", "profile", "offline_access")
                ),
                id_token=jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256"),
                client_info=base64.urlsafe_b64encode(json.dumps(info).encode())
                .decode()
                .rstrip("="),
            )
        return out

    def _devicecode(self, body: bytes) -> dict[str, Any]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("client_id") != self.client_id:
            raise GraphError(400, "unauthorized_client")
        code = secrets.token_urlsafe(16)
        self.device_codes[code] = "pending"
        user_code = secrets.token_hex(4).upper()
        return {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": f"{self.url}/devicelogin",
            "expires_in": 900,
            "interval": 1,
            "message": f"To sign in, open {self.url}/devicelogin and enter the code {user_code}.",
        }

    def _authorize(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")

    def _may_read(self, headers: dict[str, str], body_too: bool) -> None:
        """Mail.ReadBasic lists messages without bodies; the MIME needs Mail.Read."""
        grant = self.tokens[headers.get("authorization", "")[7:]]
        if grant["app"]:
            held = self.app_permissions
            enough = {"Mail.Read", "Mail.ReadWrite"} | (
                set() if body_too else {"Mail.ReadBasic.All"}
            )
        else:
            held = {s.rsplit("/", 1)[-1] for s in str(grant["scope"]).split()}
            enough = {"Mail.Read", "Mail.ReadWrite"} | (set() if body_too else {"Mail.ReadBasic"})
        if not held & enough:
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )

    # --- mail in the inbox ------------------------------------------------------------

    def _select(self, msg: StoredMessage, selected: str) -> dict[str, Any]:
        """A message as Graph renders it, cut to ``$select``; ``internetMessageHeaders``
        only when selected, as Graph gives them."""
        item = msg.render()
        select = [f.strip() for f in selected.split(",") if f.strip()]
        if not select:
            return item
        known = {*item, "internetMessageHeaders"}
        for name in select:
            if name not in known:
                raise GraphError(
                    400,
                    "RequestBroker--ParseUri",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
                )
        if "internetMessageHeaders" in select:
            item["internetMessageHeaders"] = msg.headers()
        return {k: v for k, v in item.items() if k in select or k in ("id", "@odata.etag")}

    def _messages(
        self, box: Mailbox, query: dict[str, str], folder: str = "inbox"
    ) -> dict[str, Any]:
        stored = box.sent_items if folder == "sentitems" else box.inbox
        messages = sorted(stored.values(), key=lambda m: (m.received, m.id), reverse=True)
        flt = query.get("$filter", "")
        for clause in [c for c in re.split(r"(?i)\s+and\s+", flt.strip()) if c]:
            wanted = re.fullmatch(r"(?i)internetMessageId eq '((?:[^']|'')*)'", clause.strip())
            if wanted:
                value = wanted.group(1).replace("''", "'")
                messages = [msg for msg in messages if msg.render()["internetMessageId"] == value]
                continue
            m = re.fullmatch(r"(?i)receivedDateTime (ge|gt|le|lt|eq) (\S+)", clause.strip())
            try:
                bound = parse_iso(m.group(2)) if m else None
            except ValueError:
                bound = None
            if m is None or bound is None:
                raise GraphError(
                    400, "ErrorInvalidUrlQueryFilter", f"The query filter '{flt}' is not supported."
                )
            op = m.group(1).lower()
            keep = {
                "ge": lambda r, b=bound: r >= b,
                "gt": lambda r, b=bound: r > b,
                "le": lambda r, b=bound: r <= b,
                "lt": lambda r, b=bound: r < b,
                "eq": lambda r, b=bound: r == b,
            }[op]
            messages = [msg for msg in messages if keep(msg.received)]
        try:
            top = int(query.get("$top", "10"))
            skip = int(query.get("$skip", "0"))
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Invalid $top or $skip.") from exc
        if not 1 <= top <= 1000 or skip < 0:
            raise GraphError(400, "ErrorInvalidPageSize", "$top must be between 1 and 1000.")
        expand = query.get("$expand", "")
        size = re.fullmatch(
            r"singleValueExtendedProperties\(\$filter=id eq '(?i:Integer 0x0?E08)'\)", expand
        )
        if expand and size is None:
            raise GraphError(400, "BadRequest", f"Parsing OData $expand failed: '{expand}'.")
        items = [
            self._select(msg, query.get("$select", ""))
            | (
                {
                    "singleValueExtendedProperties": [
                        {"id": "Integer 0xe08", "value": str(len(msg.raw))}
                    ]
                }
                if size
                else {}
            )
            for msg in messages[skip : skip + top]
        ]
        base = (
            f"{self.url}/v1.0/users/{urllib.parse.quote(box.email)}/mailFolders/{folder}/messages"
        )
        out: dict[str, Any] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#users('{box.email}')"
            f"/mailFolders('{folder}')/messages",
            "value": items,
        }
        if skip + top < len(messages):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            rest["$skip"] = str(skip + top)
            out["@odata.nextLink"] = f"{base}?{urllib.parse.urlencode(rest, safe='$,:')}"
        return out

    # --- calendars -------------------------------------------------------------------

    def _mailbox(self, ident: str) -> Mailbox:
        box = self.mailboxes.get(urllib.parse.unquote(ident).lower())
        if box is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")
        return box

    def _touch(self, box: Mailbox, ev: StoredEvent) -> None:
        self.counter += 1
        ev.changed = self.counter
        ev.body["lastModifiedDateTime"] = _now()
        ev.body["@odata.etag"] = f'W/"{self.counter}"'
        ev.body["changeKey"] = str(self.counter)
        self.subscriptions.changed(box.email, ev.id, "updated")

    def _create(self, box: Mailbox, payload: dict[str, Any], invite: bool) -> dict[str, Any]:
        tx = payload.get("transactionId")
        if tx and tx in box.transactions and box.transactions[tx] in box.events:
            if self.duplicate_transaction == "conflict":
                raise GraphError(409, "ErrorDuplicateTransactionId", "transactionId already used")
            existing = box.events[box.transactions[tx]]
            return existing.render()
        for key in ("subject", "start", "end"):
            if key not in payload:
                raise GraphError(400, "ErrorInvalidRequest", f"missing {key}")
        props = payload.get("singleValueExtendedProperties") or []
        for p in props:
            if not re.fullmatch(
                r"(String|Integer|Boolean|SystemTime) \{[0-9A-Fa-f-]{36}\} "
                r"(Name \S+|Id 0x[0-9A-Fa-f]+)",
                p.get("id", ""),
            ):
                raise GraphError(
                    400, "ErrorInvalidProperty", f"bad extended property id {p.get('id')!r}"
                )
        ev_id = "AAMkAD" + secrets.token_urlsafe(18)
        ev = self._store(box, ev_id, payload)
        body = ev.body
        body.update(
            {
                "isOrganizer": True,
                "organizer": {
                    "emailAddress": {"address": box.email, "name": box.email.split("@")[0]}
                },
                "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
                "iCalUId": "040000008200E00074C5B7101A82E008"
                + hashlib.sha256(ev_id.encode()).hexdigest()[:40],
                "createdDateTime": _now(),
                "transactionId": tx,
            }
        )
        body["attendees"] = [
            {
                "type": a.get("type", "required"),
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": {
                    "address": a["emailAddress"]["address"],
                    "name": a["emailAddress"].get("name", ""),
                },
            }
            for a in payload.get("attendees", [])
        ]
        if payload.get("isOnlineMeeting"):
            provider = payload.get("onlineMeetingProvider", "teamsForBusiness")
            if provider not in self.allowed_providers:
                raise GraphError(
                    400, "ErrorInvalidRequest", f"online meeting provider {provider} not allowed"
                )
            body["onlineMeeting"] = {
                "joinUrl": f"https://teams.example/l/meetup-join/{ev_id[-12:]}"
            }
        if tx:
            box.transactions[tx] = ev_id
        if invite:
            for a in body["attendees"]:
                other = self.mailboxes.get(a["emailAddress"]["address"].lower())
                if other is None or other is box:
                    continue
                copy_payload = {
                    k: v
                    for k, v in payload.items()
                    if k not in ("transactionId", "singleValueExtendedProperties", "attendees")
                }
                copy_id = "AAMkAD" + secrets.token_urlsafe(18)
                copy = self._store(other, copy_id, copy_payload)
                copy.body.update(
                    {
                        "isOrganizer": False,
                        "organizer": body["organizer"],
                        "responseStatus": {
                            "response": "notResponded",
                            "time": "0001-01-01T00:00:00Z",
                        },
                        "iCalUId": body["iCalUId"],
                        "attendees": body["attendees"],
                        "onlineMeeting": body.get("onlineMeeting"),
                        "transactionId": None,
                    }
                )
                copy.master_of_copy = (box.email, ev_id)
                ev.copies[other.email] = copy_id
        return self._expand(ev, ev.render(), {})

    def _store(self, box: Mailbox, ev_id: str, payload: dict[str, Any]) -> StoredEvent:
        zone = payload["start"].get("timeZone") or "UTC"
        body = {
            "@odata.type": "#microsoft.graph.event",
            "subject": payload.get("subject", ""),
            "body": payload.get("body", {"contentType": "text", "content": ""}),
            "showAs": payload.get("showAs", "busy"),
            "isAllDay": bool(payload.get("isAllDay")),
            "isCancelled": False,
            "sensitivity": payload.get("sensitivity", "normal"),
            "location": payload.get("location", {"displayName": ""}),
            "recurrence": payload.get("recurrence"),
            "attendees": payload.get("attendees", []),
            "originalStartTimeZone": zone,
            "isOnlineMeeting": bool(payload.get("isOnlineMeeting")),
            "singleValueExtendedProperties": [
                dict(p) for p in payload.get("singleValueExtendedProperties", [])
            ],
        }
        if payload.get("isAllDay"):
            first = date.fromisoformat(payload["start"]["dateTime"][:10])
            last = date.fromisoformat(payload["end"]["dateTime"][:10])
            start = datetime.combine(first, datetime.min.time(), zone_of(zone)).astimezone(UTC)
            end = datetime.combine(last, datetime.min.time(), zone_of(zone)).astimezone(UTC)
            ev = StoredEvent(ev_id, body, start, end, zone, 0, all_day_dates=(first, last))
        else:
            ev = StoredEvent(
                ev_id, body, parse_dtz(payload["start"]), parse_dtz(payload["end"]), zone, 0
            )
        if ev.end < ev.start:
            raise GraphError(400, "ErrorInvalidRequest", "end before start")
        box.events[ev_id] = ev
        self._touch(box, ev)
        return ev

    def _patch(self, box: Mailbox, ev: StoredEvent, payload: dict[str, Any]) -> dict[str, Any]:
        if ev.master_of_copy and set(payload) & {"start", "end", "subject", "attendees"}:
            raise GraphError(403, "ErrorAccessDenied", "Only the organizer can update the meeting.")
        if "transactionId" in payload:
            raise GraphError(400, "ErrorInvalidPropertyUpdate", "transactionId is immutable")
        moved = False
        if "start" in payload:
            ev.start, moved = parse_dtz(payload["start"]), True
        if "end" in payload:
            ev.end, moved = parse_dtz(payload["end"]), True
        for key in ("subject", "body", "showAs", "location"):
            if key in payload:
                ev.body[key] = payload[key]
        if moved:
            ev.sequence += 1
        self._touch(box, ev)
        for mail, copy_id in ev.copies.items():
            other = self.mailboxes[mail]
            copy = other.events.get(copy_id)
            if copy is None:
                continue
            copy.start, copy.end = ev.start, ev.end
            for key in ("subject", "body", "location"):
                copy.body[key] = ev.body[key]
            if moved:
                copy.body["responseStatus"] = {
                    "response": "notResponded",
                    "time": "0001-01-01T00:00:00Z",
                }
                copy.sequence = ev.sequence
            self._touch(other, copy)
        return self._expand(ev, ev.render(), {})

    def _delete(self, box: Mailbox, ev: StoredEvent, notify: bool) -> None:
        far = datetime(2100, 1, 1, tzinfo=UTC)
        ids = [i["id"] for i in ev.instances(datetime(1970, 1, 1, tzinfo=UTC), far)] or [ev.id]
        del box.events[ev.id]
        self.counter += 1
        box.removed.append((self.counter, ev.id, ids))
        self.subscriptions.changed(box.email, ev.id, "deleted")
        if notify:
            for mail, copy_id in ev.copies.items():
                other = self.mailboxes[mail]
                copy = other.events.get(copy_id)
                if copy is not None:
                    copy.body["isCancelled"] = True
                    copy.body["subject"] = "Canceled: " + copy.body["subject"]
                    self._touch(other, copy)

    def _list(self, box: Mailbox, query: dict[str, str]) -> dict[str, Any]:
        flt = query.get("$filter")
        events = list(box.events.values())
        if flt:
            m = re.fullmatch(
                r"singleValueExtendedProperties/[Aa]ny\((\w+): "
                r"\1/id eq '([^']+)' and \1/value eq '([^']*)'\)",
                flt,
            )
            if not m:
                raise GraphError(400, "ErrorInvalidUrlQueryFilter", f"unsupported filter {flt!r}")
            pid, value = m.group(2), m.group(3)
            events = [
                ev
                for ev in events
                if any(
                    p["id"] == pid and str(p["value"]).lower() == value.lower()
                    for p in ev.body.get("singleValueExtendedProperties", [])
                )
            ]
        return {"value": [self._expand(ev, ev.render(), query) for ev in events]}

    def _expand(
        self, ev: StoredEvent, item: dict[str, Any], query: dict[str, str]
    ) -> dict[str, Any]:
        expand = query.get("$expand", "")
        if not expand:
            return item
        m = re.fullmatch(r"singleValueExtendedProperties\(\$filter=(.+)\)", expand)
        if not m:
            raise GraphError(400, "BadRequest", f"unsupported $expand {expand!r}")
        wanted = re.findall(r"id eq '([^']+)'", m.group(1))
        props = [dict(p) for p in ev.body.get("singleValueExtendedProperties", [])]
        props.append({"id": SEQUENCE_PROPERTY, "value": str(ev.sequence)})
        # Graph echoes property ids in a normalised form: GUIDs in lower case.
        shown = [
            {"id": re.sub(r"\{[^}]+\}", lambda g: g.group(0).lower(), p["id"]), "value": p["value"]}
            for p in props
            if any(p["id"].lower() == w.lower() for w in wanted)
            and not (p["id"] == SEQUENCE_PROPERTY and ev.sequence == 0)
        ]
        if shown:
            item["singleValueExtendedProperties"] = shown
        return item

    def _delta(
        self, box: Mailbox, query: dict[str, str], headers: dict[str, str]
    ) -> dict[str, Any]:
        for bad in ("$select", "$expand", "$filter", "$orderby", "$search"):
            if bad in query:
                raise GraphError(400, "ErrorInvalidUrlQuery", f"{bad} is not supported with delta")
        page = self.page_size
        m = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
        if m:
            page = int(m.group(1))
        page = min(page, self.max_page_size)
        lower = {k.lower(): v for k, v in query.items()}
        token = lower.get("$skiptoken") or lower.get("$deltatoken")
        if token is not None:
            state = self.delta_states.pop(token, None)
            if state is None or state.mailbox != box.email:
                raise GraphError(
                    410, "syncStateNotFound", "The sync state generation is not found."
                )
            if "$deltatoken" in lower:
                state.pending = self._changes_since(box, state)
                state.counter = self.counter
        else:
            try:
                start = parse_iso(lower["startdatetime"])
                end = parse_iso(lower["enddatetime"])
            except (KeyError, ValueError) as exc:
                raise GraphError(
                    400, "ErrorInvalidParameter", "startDateTime and endDateTime are required"
                ) from exc
            items = [i for ev in box.events.values() for i in ev.instances(start, end)]
            items.sort(key=lambda i: i["start"]["dateTime"])
            state = DeltaState(box.email, start, end, self.counter, items)
        chunk, state.pending = state.pending[:page], state.pending[page:]
        new_token = secrets.token_urlsafe(18)
        self.delta_states[new_token] = state
        base = f"{self.url}/v1.0/users/{urllib.parse.quote(box.email)}/calendarView/delta"
        out: dict[str, Any] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#Collection(event)",
            "value": chunk,
        }
        if state.pending:
            out["@odata.nextLink"] = f"{base}?$skiptoken={new_token}"
        else:
            out["@odata.deltaLink"] = f"{base}?$deltatoken={new_token}"
        return out

    def _changes_since(self, box: Mailbox, state: DeltaState) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for counter, _ev_id, ids in box.removed:
            if counter > state.counter:
                out.extend({"id": i, "@removed": {"reason": "deleted"}} for i in ids)
        for ev in box.events.values():
            if ev.changed <= state.counter:
                continue
            instances = ev.instances(state.start, state.end)
            if instances:
                out.extend(instances)
            else:
                # Documented quirk: changes outside the window come back as @removed.
                out.append({"id": ev.id, "@removed": {"reason": "deleted"}})
        return out

    def _get_schedule(self, payload: dict[str, Any]) -> dict[str, Any]:
        schedules = payload.get("schedules") or []
        if not schedules or len(schedules) > MAX_SCHEDULES:
            raise GraphError(
                400, "ErrorInvalidParameter", f"schedules must hold 1 to {MAX_SCHEDULES} entries"
            )
        start, end = parse_dtz(payload["startTime"]), parse_dtz(payload["endTime"])
        if end - start >= MAX_SCHEDULE_PERIOD:
            raise GraphError(
                400, "ErrorTimeIntervalTooBig", "The time interval must be less than 62 days."
            )
        interval = int(payload.get("availabilityViewInterval") or 30)
        if not 5 <= interval <= 1440:
            raise GraphError(400, "ErrorInvalidParameter", "availabilityViewInterval out of range")
        codes = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingElsewhere": "4"}
        out = []
        for who in schedules:
            box = self.mailboxes.get(who.lower())
            if box is None:
                out.append(
                    {
                        "scheduleId": who,
                        "availabilityView": "",
                        "error": {
                            "message": "The mailbox was not found.",
                            "responseCode": "ErrorMailboxNotFound",
                        },
                    }
                )
                continue
            items = []
            for ev in box.events.values():
                for inst in ev.instances(start, end):
                    if inst.get("isCancelled") or inst.get("showAs", "busy") == "free":
                        continue
                    s, e = parse_dtz(inst["start"]), parse_dtz(inst["end"])
                    if inst.get("isAllDay"):
                        # all-day dates are floating: they block the owner's local days
                        zone = zone_of(ev.zone)
                        s = s.replace(tzinfo=zone).astimezone(UTC)
                        e = e.replace(tzinfo=zone).astimezone(UTC)
                    items.append(
                        {
                            "isPrivate": False,
                            "status": inst.get("showAs", "busy"),
                            "subject": inst.get("subject", ""),
                            "start": format_dtz(s),
                            "end": format_dtz(e),
                        }
                    )
            view = []
            slot = start
            spans = [
                (parse_dtz(it["start"]), parse_dtz(it["end"]), codes.get(it["status"], "2"))
                for it in items
            ]
            while slot < end:
                slot_end = slot + timedelta(minutes=interval)
                code = "0"
                for s, e, c in spans:
                    if s < slot_end and e > slot:
                        code = max(code, c)
                view.append(code)
                slot = slot_end
            out.append(
                {
                    "scheduleId": who,
                    "availabilityView": "".join(view),
                    "scheduleItems": items,
                    "workingHours": box.settings.get("workingHours", {}),
                }
            )
        return {
            "@odata.context": f"{self.url}/v1.0/$metadata"
            "#Collection(microsoft.graph.scheduleInformation)",
            "value": out,
        }

    # --- mail ------------------------------------------------------------------------

    def _send_mail(self, box: Mailbox, headers: dict[str, str], body: bytes) -> None:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/plain":
            try:
                raw = base64.b64decode(body, validate=False)
                if not raw.strip() or b":" not in raw.split(b"\n", 1)[0]:
                    raise ValueError("not MIME")
            except ValueError as exc:
                raise GraphError(
                    400,
                    "ErrorMimeContentInvalidBase64String",
                    "Invalid base64 string for MIME content.",
                ) from exc
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            sender = email.utils.parseaddr(str(msg.get("From", "")))[1].lower()
            if sender and sender != box.email:
                raise GraphError(
                    403,
                    "ErrorSendAsDenied",
                    "The user account which was used to submit this request does not have "
                    "the right to send mail on behalf of the specified sending account.",
                )
            if not msg.get("From"):
                msg["From"] = box.email
            if not msg.get("Message-ID"):
                msg["Message-ID"] = email.utils.make_msgid(domain="graph.local")
            self.sent.append(msg)
            self._save_sent(box, msg)
            return
        if ctype != "application/json":
            raise GraphError(415, "UnsupportedMediaType", ctype)
        payload = _json(body)
        message = payload.get("message") or {}
        for h in message.get("internetMessageHeaders") or []:
            if not h.get("name", "").lower().startswith("x-"):
                raise GraphError(
                    400,
                    "InvalidInternetMessageHeader",
                    f"The internet message header name '{h.get('name')}' "
                    "should start with 'x-' or 'X-'.",
                )
        self.sent_json.append({"from": box.email, **payload})
        msg = EmailMessage()
        msg["From"] = box.email
        msg["To"] = ", ".join(r["emailAddress"]["address"] for r in message.get("toRecipients", []))
        msg["Subject"] = message.get("subject", "")
        msg["Message-ID"] = email.utils.make_msgid(domain="graph.local")
        content = (message.get("body") or {}).get("content", "")
        if (message.get("body") or {}).get("contentType", "text").lower() == "html":
            msg.set_content(content, subtype="html")
        else:
            msg.set_content(content)
        self.sent.append(msg)
        if payload.get("saveToSentItems", True):
            self._save_sent(box, msg)

    def _save_sent(self, box: Mailbox, msg: EmailMessage) -> None:
        ident = f"AAMkSent{len(box.sent_items):06d}"
        box.sent_items[ident] = StoredMessage(ident, datetime.now(UTC), msg.as_bytes())

    # --- batch -----------------------------------------------------------------------

    def _batch(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        requests = _json(body).get("requests") or []
        if len(requests) > MAX_BATCH:
            raise GraphError(
                400, "BadRequest", f"The number of requests in a batch must not exceed {MAX_BATCH}."
            )
        ids = [r.get("id") for r in requests]
        if len(set(ids)) != len(ids) or None in ids:
            raise GraphError(400, "BadRequest", "Each request needs a unique id.")
        responses = []
        for r in requests:
            inner_headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
            inner_headers["authorization"] = headers.get("authorization", "")
            inner_body = b""
            if r.get("body") is not None:
                if "content-type" not in inner_headers:
                    err = {"code": "BadRequest", "message": "Content-Type header is required."}
                    responses.append({"id": r["id"], "status": 400, "body": {"error": err}})
                    continue
                inner_body = json.dumps(r["body"]).encode()
            url = r["url"] if r["url"].startswith("/") else "/" + r["url"]
            status, hdrs, data = self.handle(
                r["method"], "/v1.0" + url, inner_headers, inner_body, inner=True
            )
            responses.append(
                {
                    "id": r["id"],
                    "status": status,
                    "headers": hdrs,
                    "body": json.loads(data) if data else None,
                }
            )
        return {"responses": responses}


class _DropConnection(Exception):
    """Close the connection without answering (a crash after the server acted)."""


class _Handler(BaseHTTPRequestHandler):
    graph: GraphServer
    protocol_version = "HTTP/1.1"
    timeout = 10

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, delayed ACKs cost 40 ms each
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.graph.lock:
            self.graph.http_requests += 1
        if self.graph.latency:
            time.sleep(self.graph.latency)
        began = time.perf_counter()
        try:
            status, hdrs, data = self.graph.handle(self.command, self.path, headers, body)
        except _DropConnection:
            self.close_connection = True
            return
        except faults.Transport as fault:
            answer = faults.carry_out(self, fault)
            if answer is None:
                return
            status, hdrs, data = answer
        finally:
            with self.graph.lock:
                self.graph.busy_seconds += time.perf_counter() - began
        self.send_response(status)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(value, dict):
        raise GraphError(400, "BadRequest", "Expected a JSON object.")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
