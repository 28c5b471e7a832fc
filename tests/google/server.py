"""A local HTTP server that behaves like Calendar v3, Gmail, the Admin SDK's Directory
API (users and group members, :mod:`tests.google.admin`) and Google's token endpoint.

It keeps state (calendars with events, sync tokens, sent mail), validates every request
against the discovery documents that ship with google-api-python-client (400 for any
parameter or body field they do not define), answers 409 for duplicate event ids and
410 for expired sync tokens, computes free/busy from the stored events, serves HTTP
batch requests, and checks the signed JWT a service account presents for a token.
It counts requests per method so tests can assert what a quiet tick costs.

Only what Cadence uses is modelled; everything else answers 501.
"""

from __future__ import annotations

import base64
import copy
import email
import email.message
import email.policy
import email.utils
import json
import secrets
import socket
import ssl
import threading
import time as clock
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dateutil import rrule

from tests import chaos as faults
from tests.google.admin import ADMIN, DirectoryService
from tests.google.discovery import API, Invalid, Method, parse_datetime
from tests.google.push import Channels

CALENDAR = API("calendar.v3")
GMAIL = API("gmail.v1")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BASE32HEX = set("0123456789abcdefghijklmnopqrstuv")
SCOPE = "https://www.googleapis.com/auth/"
FORBIDDEN_WITH_SYNC_TOKEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


class Failure(Exception):
    """An error answer in Google's JSON error format."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        410: "FAILED_PRECONDITION",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
        503: "UNAVAILABLE",
    }

    def __init__(
        self,
        code: int,
        message: str,
        reason: str,
        domain: str = "global",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"domain": self.domain, "reason": self.reason, "message": self.message}],
                "status": self.STATUS.get(self.code, "UNKNOWN"),
            }
        }


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def now() -> datetime:
    return datetime.now(UTC)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Grant:
    """What an access token allows: the user it acts as (None: the bare service account)."""

    user: str | None
    scopes: frozenset[str]
    client: str


@dataclass
class ServiceAccount:
    email: str
    key_id: str
    private_key: rsa.RSAPrivateKey
    #: scopes an administrator granted the client id for domain-wide delegation
    delegated: frozenset[str]

    def key_file(self, token_uri: str) -> dict[str, Any]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": "cadence-test",
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }


@dataclass
class AuthorizedUser:
    email: str
    client_id: str
    client_secret: str
    refresh_token: str
    scopes: frozenset[str]


@dataclass
class Calendar:
    owner: str
    timezone: str = "UTC"
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: change counter of each event id when it last changed
    changed: dict[str, int] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)


@dataclass
class SyncState:
    calendar: str
    seq: int
    single: bool
    window: tuple[datetime | None, datetime | None]
    valid: bool = True


@dataclass
class Sent:
    """A message in a Gmail mailbox: sent by its user, or delivered to its inbox."""

    user: str
    id: str
    thread_id: str
    raw: bytes
    at: datetime = field(default_factory=lambda: now())
    labels: tuple[str, ...] = ("SENT",)

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class GoogleState:
    """Everything the fake Google remembers; guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calendars: dict[str, Calendar] = {}
        self.seq = 0
        self.sync: dict[str, SyncState] = {}
        self.pages: dict[str, tuple[list[dict[str, Any]], dict[str, str]]] = {}
        self.tokens: dict[str, Grant] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.users: dict[str, AuthorizedUser] = {}
        self.sent: list[Sent] = []
        #: messages delivered to inboxes (``deliver``), per mailbox
        self.inbox: dict[str, list[Sent]] = {}
        self.codes: dict[str, tuple[str, frozenset[str], str, str, str | None]] = {}
        self.threads: dict[str, set[str]] = {}
        self.notifications: list[tuple[str, str, str, tuple[str, ...]]] = []
        self.counts: Counter[str] = Counter()
        self.faults: list[tuple[str, Failure]] = []
        #: calendars whose free/busy freebusy.query answers with this error reason
        #: (a calendar shared without free/busy, say), while the rest of the query works
        self.freebusy_errors: dict[str, str] = {}
        #: random faults for soak tests (see ``chaos``)
        self.chaos_rate = 0.0
        self.chaos_random: Any = None
        self.chaos_kinds: tuple[str, ...] = ()
        self.clock: Any = None
        self.throttled: dict[str, float] = {}
        #: throttling by the parts of the batch being answered (see GoogleServer.handle)
        self.batch_throttled: dict[str, float] = {}
        self.early: list[str] = []
        self.chaos_count: Counter[str] = Counter()
        #: whether the token endpoint is faulted too, and its faults by kind
        self.chaos_token: tuple[str, ...] = ()
        self.token_faults: Counter[str] = Counter()
        self.log: list[str] = []
        #: push channels (events.watch) and the thread delivering their messages
        self.push = Channels(self)

    # --- setup used by tests ---------------------------------------------------------

    def add_calendar(self, owner: str, timezone: str = "UTC") -> Calendar:
        with self.lock:
            cal = self.calendars.setdefault(owner.lower(), Calendar(owner.lower(), timezone))
            return cal

    def add_service_account(
        self,
        email_address: str,
        delegated: set[str] | frozenset[str],
        key: rsa.RSAPrivateKey | None = None,
    ) -> ServiceAccount:
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa = ServiceAccount(email_address, secrets.token_hex(20), key, frozenset(delegated))
        self.service_accounts[email_address] = sa
        return sa

    def add_user(self, email_address: str, scopes: set[str] | frozenset[str]) -> AuthorizedUser:
        user = AuthorizedUser(
            email_address.lower(),
            f"{secrets.token_hex(6)}.apps.googleusercontent.com",
            secrets.token_urlsafe(12),
            secrets.token_urlsafe(24),
            frozenset(scopes),
        )
        self.users[user.refresh_token] = user
        return user

    def deliver(
        self,
        mailbox: str,
        raw: bytes,
        at: datetime | None = None,
        *,
        authenticated: bool = True,
        results: str | None = None,
    ) -> Sent:
        """Put ``raw`` into ``mailbox``'s inbox, received ``at`` (default: now); a reply
        joins the thread of the message it references, as Gmail threads it.

        Like Gmail's receiving servers, put an ``Authentication-Results`` field on top:
        SPF, DKIM and DMARC passing for the From domain, or, unless ``authenticated``,
        failing for it (a forged From), or ``results`` as given.
        """
        raw = authentication_results(raw, authenticated, results).encode() + raw
        with self.lock:
            user = mailbox.lower()
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            refs = f"{parsed.get('References', '')} {parsed.get('In-Reply-To', '')}".split()
            thread = next(
                (
                    m.thread_id
                    for m in self.mailbox(user)
                    if str(m.message["Message-ID"] or "").strip() in refs
                ),
                None,
            )
            ident = secrets.token_hex(8)
            thread = thread or ident
            self.threads.setdefault(user, set()).add(thread)
            got = Sent(user, ident, thread, raw, at or now(), ("INBOX", "UNREAD"))
            self.inbox.setdefault(user, []).append(got)
            return got

    def mailbox(self, user: str) -> list[Sent]:
        """Every message of ``user``, newest first (the order messages.list answers in)."""
        mine = [m for m in self.sent if m.user == user] + self.inbox.get(user, [])
        return sorted(mine, key=lambda m: m.at, reverse=True)

    def fail(
        self,
        method_id: str,
        code: int,
        reason: str,
        *,
        domain: str = "global",
        message: str = "",
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method_id`` with an error."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        failure = Failure(code, message or reason, reason, domain, headers)
        self.faults.extend([(method_id, failure)] * times)

    def chaos(
        self,
        rate: float,
        seed: int,
        clock: Any = None,
        kinds: tuple[str, ...] = ("403", *faults.KINDS),
        token: bool | tuple[str, ...] = False,
    ) -> None:
        """Fault ``rate`` of API calls at random with one of ``kinds`` (see tests.chaos;
        the parts of a batch only get answers, the batch as a whole tests.chaos.BATCH).
        ``clock.now()`` (seconds; the monotonic clock by default) tells when a throttled
        caller may come back; calls before that are recorded in ``early``. Faults are
        counted by kind in ``chaos_count``. With ``token``, the same share of token
        requests gets tests.chaos.TOKEN faults, counted in ``token_faults``."""
        import random

        self.chaos_rate, self.chaos_random, self.clock = rate, random.Random(seed), clock
        self.chaos_kinds = kinds
        #: the token endpoints' fault kinds (all of tests.chaos.TOKEN for True)
        self.chaos_token = faults.TOKEN if token is True else tuple(token or ())

    def expire_sync_tokens(self, owner: str | None = None) -> None:
        with self.lock:
            for state in self.sync.values():
                if owner is None or state.calendar == owner.lower():
                    state.valid = False

    def put(self, owner: str, event: dict[str, Any]) -> dict[str, Any]:
        """Store ``event`` on a calendar as the Google UI would (no validation, no copies)."""
        with self.lock:
            cal = self.calendars[owner.lower()]
            event = copy.deepcopy(event)
            event.setdefault("id", uuid.uuid4().hex)
            self._stamp(event, owner.lower(), owner.lower())
            cal.events[event["id"]] = event
            self._touch(cal, event["id"])
            return event

    def api_calls(self) -> int:
        """Count calls of API methods, not token requests."""
        return sum(n for k, n in self.counts.items() if k.startswith(("calendar.", "gmail.")))

    # --- internals -------------------------------------------------------------------

    def _touch(self, cal: Calendar, event_id: str) -> None:
        self.seq += 1
        cal.changed[event_id] = self.seq
        ev = cal.events[event_id]
        ev["updated"] = rfc3339(now())
        ev["etag"] = f'"{self.seq}"'
        self.push.changed(cal.owner)

    def _stamp(self, ev: dict[str, Any], owner: str, creator: str) -> None:
        ev.setdefault("kind", "calendar#event")
        ev.setdefault("status", "confirmed")
        ev.setdefault("created", rfc3339(now()))
        ev.setdefault("htmlLink", f"https://calendar.example/event?eid={ev['id']}")
        ev.setdefault("creator", {"email": creator})
        ev.setdefault("organizer", {"email": owner, "self": True})
        ev.setdefault("iCalUID", f"{ev['id']}@google.com")
        ev.setdefault("sequence", 0)
        ev.setdefault("eventType", "default")
        ev.setdefault("reminders", {"useDefault": True})


def _when(value: dict[str, Any], zone: ZoneInfo) -> datetime:
    if "dateTime" in value:
        return parse_datetime(value["dateTime"])
    return datetime.combine(date.fromisoformat(value["date"]), time(), zone)


def _instances(
    master: dict[str, Any], zone: ZoneInfo, lo: datetime | None, hi: datetime | None
) -> Iterator[dict[str, Any]]:
    """Expand a recurring event into its instances overlapping (lo, hi)."""
    all_day = "date" in master["start"]
    start = _when(master["start"], zone)
    end = _when(master["end"], zone)
    tz = ZoneInfo(master["start"].get("timeZone") or str(zone))
    local = start.astimezone(tz)
    length = end - start
    lines = [line for line in master.get("recurrence", []) if not line.startswith("EXDATE")]
    rule = rrule.rrulestr("\n".join(lines), dtstart=local, forceset=True)
    for line in master.get("recurrence", []):
        if line.startswith("EXDATE"):
            for value in line.split(":", 1)[1].split(","):
                rule.exdate(_exdate(value, tz))
    upper = hi or (now() + timedelta(days=730))
    lower = (lo - length) if lo else None
    for count, occurrence in enumerate(rule):
        if count > 2000 or occurrence >= upper:
            break
        if lower is not None and occurrence <= lower:
            continue
        inst = copy.deepcopy(master)
        inst.pop("recurrence", None)
        if all_day:
            day = occurrence.date()
            suffix = day.strftime("%Y%m%d")
            inst["start"] = {"date": day.isoformat()}
            inst["end"] = {"date": (day + (end.date() - start.date())).isoformat()}
            inst["originalStartTime"] = {"date": day.isoformat()}
        else:
            suffix = occurrence.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            inst["start"] = {"dateTime": occurrence.isoformat(), "timeZone": str(tz)}
            inst["end"] = {"dateTime": (occurrence + length).isoformat(), "timeZone": str(tz)}
            inst["originalStartTime"] = dict(inst["start"])
        inst["id"] = f"{master['id']}_{suffix}"
        inst["recurringEventId"] = master["id"]
        yield inst


def _exdate(value: str, tz: ZoneInfo) -> datetime:
    value = value.strip()
    if value.endswith("Z"):
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if "T" in value:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=tz)
    return datetime.strptime(value, "%Y%m%d").replace(tzinfo=tz)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class CalendarService:
    """Calendar v3 semantics on top of GoogleState."""

    def __init__(self, state: GoogleState) -> None:
        self.s = state

    def calendar(self, grant: Grant, calendar_id: str, *, write: bool = False) -> Calendar:
        owner = (grant.user or "") if calendar_id == "primary" else calendar_id.lower()
        cal = self.s.calendars.get(owner)
        if cal is None or not (owner == grant.user or (not write and grant.user in cal.readers)):
            raise Failure(404, "Not Found", "notFound")
        return cal

    # events.list ---------------------------------------------------------------------

    def list(self, grant: Grant, p: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
        cal = self.calendar(grant, p["calendarId"])
        if "pageToken" in q:
            return self._page(q["pageToken"], q)
        single = bool(q.get("singleEvents", False))
        if q.get("orderBy") == "startTime" and not single:
            raise Failure(400, "The requested ordering is not available.", "badRequest")
        if "syncToken" in q:
            bad = [name for name in FORBIDDEN_WITH_SYNC_TOKEN if name in q]
            if bad:
                raise Failure(400, f"{bad[0]} cannot be used with syncToken", "invalid")
            state = self.s.sync.get(q["syncToken"])
            if state is None or state.calendar != cal.owner:
                raise Failure(400, "Invalid sync token value.", "invalid")
            if not state.valid:
                raise Failure(
                    410,
                    "Sync token is no longer valid, a full sync is required.",
                    "fullSyncRequired",
                )
            if state.single != single:
                raise Failure(400, "Sync token parameters do not match.", "invalid")
            items = self._changed(cal, state, single)
            window = state.window
        else:
            lo = parse_datetime(q["timeMin"]) if "timeMin" in q else None
            hi = parse_datetime(q["timeMax"]) if "timeMax" in q else None
            if lo and hi and hi <= lo:
                raise Failure(400, "The specified time range is empty.", "timeRangeEmpty")
            window = (lo, hi)
            items = self._current(cal, lo, hi, single, bool(q.get("showDeleted", False)))
            for prop in q.get("privateExtendedProperty", []):
                name, _, value = prop.partition("=")
                items = [
                    e
                    for e in items
                    if e.get("extendedProperties", {}).get("private", {}).get(name) == value
                ]
            if q.get("orderBy") == "startTime":
                zone = ZoneInfo(cal.timezone)
                items.sort(key=lambda e: _when(e["start"], zone))
        token = secrets.token_urlsafe(16)
        self.s.sync[token] = SyncState(cal.owner, self.s.seq, single, window)
        items = [self._view(cal, e) for e in items]
        head = {
            "kind": "calendar#events",
            "summary": cal.owner,
            "timeZone": cal.timezone,
            "accessRole": "owner" if cal.owner == grant.user else "reader",
            "updated": rfc3339(now()),
            "defaultReminders": [],
        }
        page = secrets.token_urlsafe(12)
        self.s.pages[page] = (items, {"nextSyncToken": token, **head})
        return self._page(page, q)

    def _page(self, page: str, q: dict[str, Any]) -> dict[str, Any]:
        if page not in self.s.pages:
            raise Failure(400, "Invalid page token value.", "invalid")
        items, tail = self.s.pages.pop(page)
        size = min(int(q.get("maxResults", 250)), 2500)
        body: dict[str, Any] = {k: v for k, v in tail.items() if k != "nextSyncToken"}
        body["items"] = items[:size]
        if len(items) > size:
            follow = secrets.token_urlsafe(12)
            self.s.pages[follow] = (items[size:], tail)
            body["nextPageToken"] = follow
        else:
            body["nextSyncToken"] = tail["nextSyncToken"]
        return body

    def _expanded(
        self,
        cal: Calendar,
        lo: datetime | None,
        hi: datetime | None,
        single: bool,
        only: set[str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (source id, item) for every stored event (or those in ``only``),
        recurring ones expanded."""
        zone = ZoneInfo(cal.timezone)
        chosen = [ev for i, ev in cal.events.items() if only is None or i in only]
        for ev in chosen:
            if ev.get("recurringEventId"):
                yield ev["id"], ev
            elif ev.get("recurrence") and single:
                overridden = {
                    x["id"] for x in cal.events.values() if x.get("recurringEventId") == ev["id"]
                }
                for inst in _instances(ev, zone, lo, hi):
                    if inst["id"] not in overridden:
                        yield ev["id"], inst
            else:
                yield ev["id"], ev

    def _inside(
        self, cal: Calendar, ev: dict[str, Any], lo: datetime | None, hi: datetime | None
    ) -> bool:
        zone = ZoneInfo(cal.timezone)
        try:
            if ev.get("recurrence"):
                return hi is None or _when(ev["start"], zone) < hi
            start, end = _when(ev["start"], zone), _when(ev["end"], zone)
        except (KeyError, ValueError, Invalid):
            return True  # deletions reported by id only, and items stored broken on purpose
        return (lo is None or end > lo) and (hi is None or start < hi)

    def _current(
        self, cal: Calendar, lo: datetime | None, hi: datetime | None, single: bool, deleted: bool
    ) -> list[dict[str, Any]]:
        out = []
        for _, ev in self._expanded(cal, lo, hi, single):
            if ev.get("status") == "cancelled" and not deleted:
                continue
            if self._inside(cal, ev, lo, hi):
                out.append(ev)
        return out

    def _changed(self, cal: Calendar, state: SyncState, single: bool) -> list[dict[str, Any]]:
        lo, hi = state.window
        out = []
        since = {i for i, seq in cal.changed.items() if seq > state.seq}
        # series with a changed exception are expanded again, unchanged ones never
        since |= {
            str(cal.events[i]["recurringEventId"])
            for i in list(since)
            if i in cal.events and cal.events[i].get("recurringEventId")
        }
        for source, ev in self._expanded(cal, lo, hi, single, since):
            if cal.changed.get(source, 0) > state.seq and self._inside(cal, ev, lo, hi):
                out.append(ev)
        return out

    def _view(self, cal: Calendar, ev: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(ev)
        for a in view.get("attendees", []):
            if a.get("email", "").lower() == cal.owner:
                a["self"] = True
        return view

    # events.get / insert / patch / delete ---------------------------------------------

    def get(self, grant: Grant, p: dict[str, Any]) -> dict[str, Any]:
        cal = self.calendar(grant, p["calendarId"])
        ev = cal.events.get(p["eventId"])
        if ev is None:
            raise Failure(404, "Not Found", "notFound")
        return self._view(cal, ev)

    def insert(self, grant: Grant, p: dict[str, Any], q: dict[str, Any], body: dict[str, Any]):
        cal = self.calendar(grant, p["calendarId"], write=True)
        ev = copy.deepcopy(body)
        event_id = ev.get("id") or uuid.uuid4().hex
        if not (5 <= len(event_id) <= 1024 and set(event_id) <= BASE32HEX):
            raise Failure(400, "Invalid resource id value.", "invalid")
        if event_id in cal.events:
            raise Failure(409, "The requested identifier already exists.", "duplicate")
        ev["id"] = event_id
        self._check_times(ev)
        if ev.get("attendees") and grant.user is None:
            raise Failure(
                403,
                "Service accounts cannot invite attendees without Domain-Wide Delegation "
                "of Authority.",
                "forbiddenForServiceAccounts",
            )
        for field_name in ("organizer", "creator", "iCalUID", "sequence", "recurringEventId"):
            ev.pop(field_name, None)
        self._conference(ev, None, q)
        for a in ev.get("attendees", []):
            a["email"] = a["email"].lower()
            if a["email"] == cal.owner:
                a.setdefault("organizer", True)
                a.setdefault("responseStatus", "accepted")
            a.setdefault("responseStatus", "needsAction")
        self.s._stamp(ev, cal.owner, grant.user or "")
        cal.events[event_id] = ev
        self.s._touch(cal, event_id)
        self._copies(cal, ev)
        self._notify(q, "REQUEST", cal.owner, ev)
        return self._view(cal, ev)

    def patch(self, grant: Grant, p: dict[str, Any], q: dict[str, Any], body: dict[str, Any]):
        cal = self.calendar(grant, p["calendarId"], write=True)
        ev = cal.events.get(p["eventId"])
        if ev is None:
            raise Failure(404, "Not Found", "notFound")
        if "id" in body and body["id"] != ev["id"]:
            raise Failure(400, "The event id cannot be changed.", "invalid")
        before = (ev["start"], ev["end"], ev.get("status"))
        updated = copy.deepcopy(ev)
        incoming = copy.deepcopy(body)
        incoming.pop("conferenceData", None)
        for name in ("attendees", "recurrence"):
            if name in incoming:
                updated[name] = incoming.pop(name)
        _merge(updated, incoming)
        self._check_times(updated)
        self._conference(updated, ev, q, body.get("conferenceData"))
        if (updated["start"], updated["end"], updated.get("status")) != before:
            updated["sequence"] = int(ev.get("sequence", 0)) + 1
        cal.events[ev["id"]] = updated
        self.s._touch(cal, ev["id"])
        self._copies(cal, updated)
        self._notify(q, "REQUEST", cal.owner, updated)
        return self._view(cal, updated)

    def delete(self, grant: Grant, p: dict[str, Any], q: dict[str, Any]) -> None:
        cal = self.calendar(grant, p["calendarId"], write=True)
        ev = cal.events.get(p["eventId"])
        if ev is None:
            raise Failure(404, "Not Found", "notFound")
        if ev.get("status") == "cancelled":
            raise Failure(410, "Resource has been deleted", "deleted")
        ev["status"] = "cancelled"
        ev["sequence"] = int(ev.get("sequence", 0)) + 1
        self.s._touch(cal, ev["id"])
        self._copies(cal, ev)
        self._notify(q, "CANCEL", cal.owner, ev)

    def _check_times(self, ev: dict[str, Any]) -> None:
        for name in ("start", "end"):
            value = ev.get(name)
            if not value or not ({"date", "dateTime"} & set(value)):
                raise Failure(400, f"Missing {name} time.", "required")
            if "dateTime" in value:
                parse_datetime(value["dateTime"])
        if ev.get("recurrence") and "dateTime" in ev["start"] and not ev["start"].get("timeZone"):
            raise Failure(400, "Missing time zone definition for start time.", "required")
        if _when(ev["end"], UTC) < _when(ev["start"], UTC):
            raise Failure(400, "The specified time range is empty.", "timeRangeEmpty")

    def _conference(
        self,
        ev: dict[str, Any],
        old: dict[str, Any] | None,
        q: dict[str, Any],
        data: dict[str, Any] | None = None,
    ) -> None:
        """Apply conference data the way conferenceDataVersion governs it."""
        data = data if old is not None else ev.pop("conferenceData", None)
        if q.get("conferenceDataVersion", 0) != 1:
            # without version 1, a write drops what the event had (API_NOTES.md)
            ev.pop("conferenceData", None)
            ev.pop("hangoutLink", None)
            return
        if data and "createRequest" in data:
            request = data["createRequest"]
            kind = request.get("conferenceSolutionKey", {}).get("type")
            if kind != "hangoutsMeet":
                raise Failure(400, "Invalid conference type value.", "invalid")
            code = secrets.token_hex(5)
            meet = f"https://meet.google.com/{code[:3]}-{code[3:7]}-{code[7:]}"
            ev["conferenceData"] = {
                "createRequest": {**request, "status": {"statusCode": "success"}},
                "entryPoints": [{"entryPointType": "video", "uri": meet, "label": meet[8:]}],
                "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
                "conferenceId": meet.rsplit("/", 1)[1],
            }
            ev["hangoutLink"] = meet
        elif data:
            ev["conferenceData"] = data

    def _copies(self, cal: Calendar, ev: dict[str, Any]) -> None:
        """Mirror the organizer's event onto attendees' calendars on this server."""
        invited = {a["email"].lower() for a in ev.get("attendees", [])}
        for other in self.s.calendars.values():
            if other.owner == cal.owner:
                continue
            mine = other.events.get(ev["id"])
            if other.owner not in invited and mine is None:
                continue
            if mine is not None and mine.get("organizer", {}).get("email") != cal.owner:
                continue  # an unrelated event that happens to share the id
            fresh = copy.deepcopy(ev)
            fresh["organizer"] = {"email": cal.owner}
            props = fresh.get("extendedProperties", {})
            props.pop("private", None)
            if mine is not None:
                if "private" in mine.get("extendedProperties", {}):
                    props["private"] = mine["extendedProperties"]["private"]
                answers = {a["email"]: a for a in mine.get("attendees", [])}
                for a in fresh.get("attendees", []):
                    if a["email"] == other.owner and a["email"] in answers:
                        a["responseStatus"] = answers[a["email"]]["responseStatus"]
            if not props:
                fresh.pop("extendedProperties", None)
            if other.owner not in invited:
                fresh["status"] = "cancelled"
            other.events[ev["id"]] = fresh
            self.s._touch(other, ev["id"])

    def _notify(self, q: dict[str, Any], method: str, organizer: str, ev: dict[str, Any]) -> None:
        if q.get("sendUpdates", "none") == "none" and not q.get("sendNotifications"):
            return
        to = tuple(a["email"] for a in ev.get("attendees", []) if a["email"] != organizer)
        self.s.notifications.append((method, organizer, ev["id"], to))

    def respond(self, owner: str, event_id: str, status: str) -> None:
        """Let an attendee answer an invitation (test helper; updates the organizer's copy)."""
        with self.s.lock:
            mine = self.s.calendars[owner].events[event_id]
            organizer = mine["organizer"]["email"]
            for holder in {owner, organizer}:
                cal = self.s.calendars.get(holder)
                if cal and event_id in cal.events:
                    for a in cal.events[event_id].get("attendees", []):
                        if a["email"] == owner:
                            a["responseStatus"] = status
                    self.s._touch(cal, event_id)

    # freebusy.query ------------------------------------------------------------------

    def freebusy(self, grant: Grant, body: dict[str, Any]) -> dict[str, Any]:
        if "timeMin" not in body or "timeMax" not in body:
            raise Failure(400, "Missing timeMin or timeMax.", "required")
        lo, hi = parse_datetime(body["timeMin"]), parse_datetime(body["timeMax"])
        if hi <= lo:
            raise Failure(400, "The specified time range is empty.", "timeRangeEmpty")
        if hi - lo > timedelta(days=90):
            raise Failure(400, "The requested time range is too long.", "timeRangeTooLong")
        result: dict[str, Any] = {}
        for n, item in enumerate(body.get("items", [])):
            ident = item["id"].lower()
            cal = self.s.calendars.get(ident)
            if n >= 50:
                error = {"domain": "global", "reason": "tooManyCalendarsRequested"}
                result[item["id"]] = {"errors": [error], "busy": []}
            elif cal is None:
                result[item["id"]] = {"errors": [{"domain": "global", "reason": "notFound"}]}
            elif ident in self.s.freebusy_errors:
                error = {"domain": "global", "reason": self.s.freebusy_errors[ident]}
                result[item["id"]] = {"errors": [error], "busy": []}
            else:
                result[item["id"]] = {"busy": self._busy(cal, lo, hi)}
        return {
            "kind": "calendar#freeBusy",
            "timeMin": rfc3339(lo),
            "timeMax": rfc3339(hi),
            "calendars": result,
        }

    def _busy(self, cal: Calendar, lo: datetime, hi: datetime) -> list[dict[str, str]]:
        zone = ZoneInfo(cal.timezone)
        spans: list[tuple[datetime, datetime]] = []
        for _, ev in self._expanded(cal, lo, hi, True):
            if ev.get("status") == "cancelled" or ev.get("transparency") == "transparent":
                continue
            if ev.get("eventType") == "workingLocation":
                continue
            mine = [a for a in ev.get("attendees", []) if a["email"] == cal.owner]
            if mine and mine[0].get("responseStatus") == "declined":
                continue
            start, end = max(_when(ev["start"], zone), lo), min(_when(ev["end"], zone), hi)
            if start < end:
                spans.append((start, end))
        merged: list[list[datetime]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [{"start": rfc3339(s), "end": rfc3339(e)} for s, e in merged]


def authentication_results(raw: bytes, authenticated: bool, results: str | None) -> str:
    """The field mx.google.com adds above a message it receives (what it found for the
    From domain; the verdicts are given, not computed: there is no DNS here)."""
    if results is None:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        sender = email.utils.parseaddr(str(parsed.get("From", "")))[1]
        domain = sender.rpartition("@")[2] or "unknown.invalid"
        path = email.utils.parseaddr(str(parsed.get("Return-Path", "")))[1] or sender
        if authenticated:
            results = (
                f"mx.google.com;\r\n       dkim=pass header.i=@{domain} header.s=s1 "
                f"header.b=AbCdEf;\r\n       spf=pass (google.com: domain of {sender} "
                f"designates 192.0.2.7 as permitted sender) smtp.mailfrom={sender};\r\n"
                f"       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from={domain}"
            )
        else:
            results = (
                f"mx.google.com;\r\n       spf=fail (google.com: domain of {path} does not "
                f"designate 203.0.113.9 as permitted sender) smtp.mailfrom={path};\r\n"
                f"       dmarc=fail (p=REJECT sp=REJECT dis=NONE) header.from={domain}"
            )
    return f"Authentication-Results: {results}\r\n"


class GmailService:
    def __init__(self, state: GoogleState) -> None:
        self.s = state

    def send(self, grant: Grant, p: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        user = grant.user if p["userId"] == "me" else p["userId"].lower()
        if grant.user is None or user != grant.user:
            raise Failure(403, "Delegation denied for " + str(grant.user), "forbidden")
        if "raw" not in body:
            raise Failure(
                400,
                "'raw' RFC822 payload message string or uploading message via "
                "/upload/* URL required",
                "invalidArgument",
            )
        try:
            raw = b64url_decode(body["raw"])
        except ValueError:
            raise Failure(400, "Invalid value for ByteString", "invalidArgument") from None
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        if not parsed.get_all("To"):
            raise Failure(400, "Recipient address required", "invalidArgument")
        thread = body.get("threadId")
        if thread is not None and thread not in self.s.threads.get(user, set()):
            raise Failure(404, "Requested entity was not found.", "notFound")
        message_id = secrets.token_hex(8)
        thread = thread or message_id
        self.s.threads.setdefault(user, set()).add(thread)
        self.s.sent.append(Sent(user, message_id, thread, raw))  # stamped now
        return {"id": message_id, "threadId": thread, "labelIds": ["SENT"]}

    def _user(self, grant: Grant, p: dict[str, Any]) -> str:
        user = grant.user if p["userId"] == "me" else p["userId"].lower()
        if grant.user is None or user != grant.user:
            raise Failure(403, "Delegation denied for " + str(grant.user), "forbidden")
        return user

    def list(self, grant: Grant, p: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
        user = self._user(grant, p)
        query = q.get("q", "")
        if (
            query
            and SCOPE + "gmail.metadata" in grant.scopes
            and not (grant.scopes & {SCOPE + "gmail.readonly", SCOPE + "gmail.modify"})
        ):
            raise Failure(403, "Metadata scope does not support 'q' parameter", "forbidden")
        labels = q.get("labelIds") or []
        labels = [labels] if isinstance(labels, str) else labels
        found = [
            m
            for m in self.s.mailbox(user)
            if all(_term(t, m) for t in query.split()) and all(x in m.labels for x in labels)
        ]
        size = min(int(q.get("maxResults", 100)), 500)
        token = q.get("pageToken", "0")
        if not token.isdigit():
            raise Failure(400, "Invalid pageToken", "invalidArgument")
        start = int(token)
        page = found[start : start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            body["nextPageToken"] = str(start + size)
        return body

    def get(self, grant: Grant, p: dict[str, Any], q: dict[str, Any]) -> dict[str, Any]:
        user = self._user(grant, p)
        form = q.get("format", "full")
        if form in ("raw", "full") and not (
            grant.scopes
            & {SCOPE + "gmail.readonly", SCOPE + "gmail.modify", "https://mail.google.com/"}
        ):
            raise Failure(403, f"Metadata scope doesn't allow format {form.upper()}", "forbidden")
        if not set(p["id"]) <= set("0123456789abcdef"):
            raise Failure(400, "Invalid id value", "invalidArgument")
        m = next((m for m in self.s.mailbox(user) if m.id == p["id"]), None)
        if m is None:
            raise Failure(404, "Requested entity was not found.", "notFound")
        body: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": list(m.labels),
            "historyId": str(len(self.s.sent)),
            "internalDate": str(int(m.at.timestamp() * 1000)),
            "sizeEstimate": len(m.raw),
        }
        if form == "raw":
            body["raw"] = base64.urlsafe_b64encode(m.raw).decode()
        elif form == "metadata":
            wanted = {h.lower() for h in q.get("metadataHeaders", [])}
            headers = [
                {"name": k, "value": str(v)}
                for k, v in m.message.items()
                if not wanted or k.lower() in wanted
            ]
            body["payload"] = {"mimeType": m.message.get_content_type(), "headers": headers}
        elif form == "full":
            raise Failure(501, "format=full is not modelled", "notImplemented")
        return body


def _term(term: str, m: Sent) -> bool:
    """Whether message ``m`` matches one term of a Gmail search."""
    name, _, value = term.partition(":")
    match name.lower():
        case "rfc822msgid":
            return str(m.message["Message-ID"] or "").strip().strip("<>") == value.strip("<>")
        case "in" if value.lower() == "inbox":
            return "INBOX" in m.labels
        case "in" if value.lower() == "sent":
            return "SENT" in m.labels
        case "after" | "before" if value.isdigit():  # seconds since the epoch
            later = m.at.timestamp() > int(value)
            return later if name.lower() == "after" else m.at.timestamp() < int(value)
        case "newer_than" | "older_than" if value[:-1].isdigit() and value[-1:] in "dmy":
            days = int(value[:-1]) * {"d": 1, "m": 31, "y": 366}[value[-1]]
            newer = m.at >= now() - timedelta(days=days)
            return newer if name.lower() == "newer_than" else not newer
    raise Failure(501, f"the search term {term!r} is not modelled", "notImplemented")


class TokenService:
    def __init__(self, state: GoogleState) -> None:
        self.s = state

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        kind = form.get("grant_type")
        if kind == JWT_BEARER:
            return self._jwt(form.get("assertion", ""))
        if kind == "authorization_code":
            return self._code(form)
        if kind == "refresh_token":
            user = self.s.users.get(form.get("refresh_token", ""))
            if user is None or (form.get("client_id"), form.get("client_secret")) != (
                user.client_id,
                user.client_secret,
            ):
                raise OAuthError("invalid_grant", "Token has been expired or revoked.")
            asked = frozenset(form["scope"].split()) if form.get("scope") else user.scopes
            if not asked <= user.scopes:
                raise OAuthError("invalid_scope", "Bad Request")
            return self._issue(Grant(user.email, asked, user.client_id), scope=True)
        raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {kind}")

    def consent(self, auth_url: str, user: str) -> str:
        """Act as the user consenting in a browser: return the address Google redirects to."""
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))
        client = next(u for u in self.s.users.values() if u.client_id == q["client_id"])
        asked = frozenset(q["scope"].split())
        if q.get("response_type") != "code" or not asked <= client.scopes:
            raise OAuthError("invalid_request", "bad authorization request")
        code = "4/" + secrets.token_urlsafe(16)
        self.s.codes[code] = (
            user,
            asked,
            q["client_id"],
            q["redirect_uri"],
            q.get("code_challenge"),
        )
        query = urllib.parse.urlencode(
            {"code": code, "state": q.get("state", ""), "scope": q["scope"]}
        )
        return f"{q['redirect_uri']}?{query}"

    def _code(self, form: dict[str, str]) -> dict[str, Any]:
        found = self.s.codes.pop(form.get("code", ""), None)
        if found is None:
            raise OAuthError("invalid_grant", "Malformed auth code.")
        user, scopes, client_id, redirect, challenge = found
        client = next(u for u in self.s.users.values() if u.client_id == client_id)
        if (form.get("client_id"), form.get("client_secret")) != (client_id, client.client_secret):
            raise OAuthError("invalid_client", "The OAuth client was not found.")
        if form.get("redirect_uri") != redirect:
            raise OAuthError("redirect_uri_mismatch", "Bad Request")
        if challenge is not None:
            digest = hashes.Hash(hashes.SHA256())
            digest.update(form.get("code_verifier", "").encode())
            expected = base64.urlsafe_b64encode(digest.finalize()).rstrip(b"=").decode()
            if expected != challenge:
                raise OAuthError("invalid_grant", "Invalid code verifier.")
        body = self._issue(Grant(user.lower(), scopes, client_id), scope=True)
        body["refresh_token"] = client.refresh_token
        return body

    def _jwt(self, assertion: str) -> dict[str, Any]:
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            head = json.loads(b64url_decode(head_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(sig_b64)
        except ValueError:
            raise OAuthError("invalid_grant", "Invalid JWT: malformed") from None
        sa = self.s.service_accounts.get(claims.get("iss", ""))
        if sa is None:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        if head.get("alg") != "RS256" or head.get("kid", sa.key_id) != sa.key_id:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            sa.private_key.public_key().verify(
                signature,
                f"{head_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.") from None
        t = now().timestamp()
        # aud is not checked: google-auth always names Google's token endpoint there
        if not (claims.get("iat", 0) - 300 <= t < claims.get("exp", 0)):
            raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        if claims["exp"] - claims["iat"] > 3600:
            raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        subject = claims.get("sub")
        if subject is not None:
            if not scopes <= sa.delegated:
                raise OAuthError(
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                )
            subject = subject.lower()
        return self._issue(Grant(subject, scopes, sa.email))

    def _issue(self, grant: Grant, *, scope: bool = False) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(24)
        self.s.tokens[token] = grant
        body: dict[str, Any] = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        if scope:
            body["scope"] = " ".join(sorted(grant.scopes))
        return body


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class GoogleServer:
    """The fake Google on 127.0.0.1, served from a thread; use as a context manager."""

    def __init__(
        self, tls: ssl.SSLContext | None = None, *, latency: float = 0.0, threaded: bool = False
    ) -> None:
        self.state = GoogleState()
        #: seconds every HTTP request waits before it is answered (outside the state lock)
        self.latency = latency
        #: HTTP requests received (a batch counts once, its parts are in state.counts)
        self.http_requests = 0
        #: seconds spent answering them, latency excluded (the fake's own CPU time)
        self.busy_seconds = 0.0
        #: path prefixes served as other paths, like a reverse proxy would map them
        self.mounts: dict[str, str] = {}
        self.calendar = CalendarService(self.state)
        self.gmail = GmailService(self.state)
        self.tokens = TokenService(self.state)
        self.directory = DirectoryService(self.state)
        # threaded: one thread per connection and HTTP/1.1 keep-alive, as Google serves
        # concurrent clients; the default serves one request at a time on fresh connections
        self.httpd = (ThreadingHTTPServer if threaded else HTTPServer)(
            ("127.0.0.1", 0), _handler(self, threaded)
        )
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.02,), name="fake-google"
        )

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @property
    def endpoints(self) -> dict[str, str]:
        return {"calendar": self.url + "calendar/v3/", "gmail": self.url}

    def __enter__(self) -> GoogleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.push.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def add_event(
        self,
        owner: str,
        title: str,
        start: datetime | date,
        end: datetime | date,
        attendees: tuple[str, ...] | list[str] = (),
        **fields: Any,
    ) -> str:
        """Put an event on a calendar as its owner would in the Google UI; return its id."""
        zone = self.state.calendars[owner.lower()].timezone
        body: dict[str, Any] = {"summary": title}
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, datetime):
                body[name] = {"dateTime": value.isoformat(), "timeZone": zone}
            else:
                body[name] = {"date": value.isoformat()}
        if attendees:
            body["attendees"] = [{"email": owner, "responseStatus": "accepted"}] + [
                {"email": a} for a in attendees
            ]
        body.update(fields)
        grant = Grant(owner.lower(), frozenset({SCOPE + "calendar"}), "ui")
        with self.state.lock:
            made = self.calendar.insert(grant, {"calendarId": owner}, {}, body)
        return str(made["id"])

    # --- dispatch --------------------------------------------------------------------

    def handle(
        self, verb: str, target: str, headers: dict[str, str], body: bytes, *, outer: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request (also each part of a batch); return status, headers, body."""
        url = urllib.parse.urlsplit(target)
        path = url.path.lstrip("/")
        for mount, real in self.mounts.items():
            if path.startswith(mount):  # a reverse proxy in front of Google
                path = real + path[len(mount) :]
                break
        s = self.state
        with s.lock:
            s.log.append(f"{verb} {target}")
            try:
                if path == "token" and verb == "POST":
                    s.counts["token"] += 1
                    form = dict(urllib.parse.parse_qsl(body.decode()))
                    kind, _, basic = headers.get("authorization", "").partition(" ")
                    if kind.lower() == "basic":  # RFC 6749 2.3.1: client credentials in a header
                        client_id, _, secret = base64.b64decode(basic).decode().partition(":")
                        form.setdefault("client_id", urllib.parse.unquote_plus(client_id))
                        form.setdefault("client_secret", urllib.parse.unquote_plus(secret))
                    kind = self._token_fault()
                    if kind == "drop":
                        raise faults.Transport(kind)
                    if kind in ("429", "500", "502", "503"):
                        return faults.token_answer(kind)
                    answer = _json(200, self.tokens.grant(form))
                    if kind == "lost":
                        return faults.token_answer(kind)
                    if kind:
                        raise faults.Transport(kind, answer)
                    return answer
                if verb == "POST" and path in (CALENDAR.batch_path, "batch/gmail/v1", "batch"):
                    s.counts["batch"] += 1
                    kind = self._roll(faults.BATCH)
                    # an expired token fails each part of the batch with 401
                    self._fault_before(kind, headers.get("authorization", ""), answer=False)
                    # the parts' Retry-After holds from when the client can read it
                    s.batch_throttled = {}
                    answer = self._batch(headers, body)
                    if kind not in ("timeout", "drop-after"):
                        s.throttled.update(s.batch_throttled)
                    return self._fault_after(kind, answer)
                api = (
                    ADMIN
                    if path.startswith("admin/directory/")
                    else CALENDAR
                    if path.startswith(CALENDAR.service_path)
                    else GMAIL
                )
                found = api.match(verb, path)
                if found is None:
                    raise Failure(404, f"Not Found: {verb} {url.path}", "notFound")
                method, params = found
                s.counts[method.id] += 1
                query = api.check_query(method, urllib.parse.parse_qs(url.query, True))
                payload = json.loads(body) if body.strip() else None
                api.check_body(method, payload)
                authorization = headers.get("authorization") or outer
                grant = self._grant(authorization, method)
                for i, (name, failure) in enumerate(s.faults):
                    if name == method.id:
                        del s.faults[i]
                        raise failure
                kind = self._chaos(method.id, grant, inner=bool(outer))
                self._fault_before(kind, authorization)
                result = self._call(method, grant, params, query, payload)
                return self._fault_after(
                    kind, (204, {}, b"") if result is None else _json(200, result)
                )
            except faults.Transport:
                raise
            except Invalid as exc:
                return _json(400, Failure(400, exc.message, exc.reason).body())
            except Failure as exc:
                status, head, data = _json(exc.code, exc.body())
                return status, {**head, **exc.headers}, data
            except OAuthError as exc:
                return _json(400, {"error": exc.error, "error_description": exc.description})
            except Exception as exc:  # a bug in the fake: answer like a backend error
                s.log.append(f"500 {exc!r}")
                return _json(500, Failure(500, f"fake server bug: {exc!r}", "backendError").body())

    def _token_fault(self) -> str:
        """The tests.chaos.TOKEN fault this token request gets ("" for none)."""
        s = self.state
        if not (s.chaos_token and s.chaos_rate) or s.chaos_random.random() >= s.chaos_rate:
            return ""
        kind: str = s.chaos_random.choice(s.chaos_token)
        s.token_faults[kind] += 1
        return kind

    def _roll(self, kinds: tuple[str, ...]) -> str:
        """The fault this request gets ("" for none), counted by kind."""
        s = self.state
        if not s.chaos_rate or s.chaos_random.random() >= s.chaos_rate:
            return ""
        allowed = [k for k in s.chaos_kinds if k in kinds]
        if not allowed:
            return ""
        kind: str = s.chaos_random.choice(allowed)
        s.chaos_count[kind] += 1
        return kind

    def _chaos(self, method_id: str, grant: Grant, *, inner: bool) -> str:
        """Maybe fail this call with an answer; else return the fault still to come."""
        s = self.state
        if not s.chaos_rate:
            return ""
        who = f"{method_id}|{grant.user}"
        now = s.clock.now() if s.clock else clock.monotonic()
        if s.throttled.get(who, 0.0) > now:
            s.early.append(f"{who} {s.throttled[who] - now:.2f}s early")
        # a part of a batch can only be answered; the batch as a whole loses its connection
        kind = self._roll(("403", *faults.STATUS) if inner else ("403", *faults.KINDS))
        if kind == "429":
            (s.batch_throttled if inner else s.throttled)[who] = now + 2
            raise Failure(
                429,
                "Too many requests",
                "rateLimitExceeded",
                "usageLimits",
                headers={"Retry-After": "2"},
            )
        if kind == "403":
            raise Failure(403, "Rate Limit Exceeded", "rateLimitExceeded", "usageLimits")
        if kind in ("500", "502", "503"):
            raise Failure(int(kind), "Backend Error", "backendError")
        return kind

    def _fault_before(self, kind: str, authorization: str, *, answer: bool = True) -> None:
        """Carry out the faults that come before the call takes effect."""
        if kind == "drop":
            raise faults.Transport(kind)
        if kind == "expired":  # the token expires now: this call and later ones get 401
            self.state.tokens.pop(authorization.partition(" ")[2], None)
            if answer:
                raise Failure(
                    401,
                    "Request had invalid authentication credentials.",
                    "authError",
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                )

    @staticmethod
    def _fault_after(
        kind: str, answer: tuple[int, dict[str, str], bytes]
    ) -> tuple[int, dict[str, str], bytes]:
        """Carry out the faults that come after the call took effect."""
        if kind == "lost":
            raise Failure(503, "The service is currently unavailable.", "backendError")
        if kind in ("latency", "timeout", "drop-after"):
            raise faults.Transport(kind, answer)
        return answer

    def _grant(self, authorization: str, method: Method) -> Grant:
        kind, _, token = authorization.partition(" ")
        grant = self.state.tokens.get(token) if kind.lower() == "bearer" else None
        if grant is None:
            raise Failure(
                401,
                "Request had invalid authentication credentials.",
                "authError",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if not grant.scopes & method.scopes:
            raise Failure(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        return grant

    def _call(
        self, method: Method, grant: Grant, p: dict[str, str], q: dict[str, Any], body: Any
    ) -> dict[str, Any] | None:
        c = self.calendar
        match method.id:
            case "calendar.events.list":
                return c.list(grant, p, q)
            case "calendar.events.get":
                return c.get(grant, p)
            case "calendar.events.insert":
                return c.insert(grant, p, q, body)
            case "calendar.events.patch":
                return c.patch(grant, p, q, body)
            case "calendar.events.delete":
                c.delete(grant, p, q)
                return None
            case "calendar.events.watch":
                return self.state.push.watch(grant, c.calendar(grant, p["calendarId"]), body)
            case "calendar.channels.stop":
                self.state.push.stop(grant, body)
                return None
            case "calendar.freebusy.query":
                return c.freebusy(grant, body)
            case "gmail.users.messages.send":
                return self.gmail.send(grant, p, body)
            case "gmail.users.messages.list":
                return self.gmail.list(grant, p, q)
            case "gmail.users.messages.get":
                return self.gmail.get(grant, p, q)
            case "directory.users.list":
                return self.directory.list_users(grant, q)
            case "directory.members.list":
                return self.directory.list_members(grant, p, q)
        raise Failure(501, f"{method.id} is not modelled by the test server", "notImplemented")

    def _batch(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        kind = headers.get("content-type", "")
        if not kind.startswith("multipart/mixed"):
            raise Failure(400, "Batch requests must be multipart/mixed", "badRequest")
        outer = headers.get("authorization", "")
        message = email.message_from_bytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + body)
        parts = message.get_payload()
        if not isinstance(parts, list) or not parts:
            raise Failure(400, "Empty batch", "badRequest")
        if len(parts) > 1000:
            raise Failure(400, "Too many requests in a batch", "badRequest")
        boundary = "batch_" + secrets.token_hex(8)
        out = []
        for part in parts:
            inner = part.get_payload(decode=False)
            head, _, data = inner.replace("\r\n", "\n").partition("\n\n")
            request_line, *lines = head.split("\n")
            verb, target, _ = request_line.split(" ", 2)
            inner_headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                inner_headers[name.strip().lower()] = value.strip()
            status, answer_headers, answer = self.handle(
                verb, target, inner_headers, data.encode(), outer=outer
            )
            reason = "OK" if status < 300 else "Error"
            answer_head = "".join(f"{k}: {v}\r\n" for k, v in answer_headers.items())
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{part['Content-ID'].strip('<>')}>\r\n\r\n"
                f"HTTP/1.1 {status} {reason}\r\n{answer_head}\r\n{answer.decode()}\r\n"
            )
        out.append(f"--{boundary}--\r\n")
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, "".join(out).encode()


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def _handler(server: GoogleServer, keep_alive: bool = False) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def setup(self) -> None:
            super().setup()
            if keep_alive:  # headers and body go out in two writes: no delayed-ACK stalls
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with server.state.lock:
                server.http_requests += 1
            if server.latency:
                clock.sleep(server.latency)
            headers = {k.lower(): v for k, v in self.headers.items()}
            began = clock.perf_counter()
            try:
                status, head, data = server.handle(self.command, self.path, headers, body)
            except faults.Transport as fault:
                answer = faults.carry_out(self, fault)
                if answer is None:
                    return
                status, head, data = answer
            finally:
                with server.state.lock:
                    server.busy_seconds += clock.perf_counter() - began
            self.send_response(status)
            for name, value in head.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
