"""Exchange Server on premises through EWS, with exchangelib.

One exchangelib ``Account`` per person, all sharing one ``Protocol`` (one endpoint, one
service account): ``autodiscover=False`` and the configured ``service_endpoint``, NTLM,
basic or OAuth (a bearer token) credentials, impersonation (``access_type:
impersonation``, the ApplicationImpersonation role) or delegate access (a single person,
or a service account with delegate rights on each mailbox).

What it calls:

- ``changes()``: ``FindItem`` with a ``CalendarView`` over an anchored window asking for
  ids and change keys only (one request when nothing changed), then ``GetItem`` for the
  items that are new or changed. The cursor keeps the id → change key map of the view;
  see :func:`_diff` for why this and not ``SyncFolderItems``.
- ``busy()``: ``GetUserAvailability`` through ``Protocol.get_free_busy_info``, 100
  mailboxes and 42 days per call, in UTC.
- ``create()``: ``CreateItem`` of a ``CalendarItem`` with both people and
  ``SendMeetingInvitations=SendToAllAndSaveCopy``, tagged with an extended property that
  holds the booking key; ``find()`` (``FindItem`` restricted on that property) runs first,
  so a retry never makes a second meeting. EWS has no idempotency token of its own.
- ``move()``/``cancel()``: ``UpdateItem``/``DeleteItem`` of the agent's own items only,
  with updates or cancellations sent to the attendees.
- mail: ``CreateItem`` of a ``Message`` from MIME (``send_and_save``), so Message-ID,
  In-Reply-To and References are ours and a recap threads to its agenda.

exchangelib's errors are translated in one place, :meth:`Ews.call`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Attendee,
    Build,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FailFast,
    FaultTolerance,
    Mailbox,
    Message,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar as CalendarFolder
from exchangelib.folders import Root, SentItems
from exchangelib.properties import DistinguishedFolderId
from exchangelib.protocol import Protocol
from exchangelib.protocol import RetryPolicy as EwsRetryPolicy

from agent.connectors import Context
from agent.connectors.base import ensure_own
from agent.core.errors import ConfigError, CursorExpired, PermanentError, TransientError
from agent.core.model import (
    Attendee as CadenceAttendee,
)
from agent.core.model import (
    Changes,
    Event,
    EventDraft,
    Interval,
    OutgoingMail,
    PartStat,
    Person,
    SentMail,
    Skipped,
    SyncToken,
)
from agent.core.retry import RetryPolicy
from agent.formats import mime
from agent.settings.config import ExchangeAccount

log = logging.getLogger("cadence.exchange")
T = TypeVar("T")

#: The agent's tag: a named MAPI property in a property set of its own.
KEY_SET = "c4a1e6f2-7d3b-4e58-9a0c-2b6f8d1e5a73"
KEY_NAME = "CadenceKey"
#: The booking reference in the body, the one part attendees' copies share.
REFERENCE = re.compile(r"\[cadence:([0-9A-Za-z_-]{8,64})\]")
MAX_MAILBOXES = 100  # GetUserAvailability mailboxes per request
MAX_PERIOD = timedelta(days=42)  # GetUserAvailability time window (the server default)
#: A full sync covers this much beyond the requested window, so the cursor stays valid
#: while the window slides forward; past it the view is re-anchored with a full sync.
WINDOW_SLACK = timedelta(days=30)
VIEW_LIMIT = 1000  # MaxEntriesReturned of a calendar view: Exchange's default find limit
MAX_PARTS = 64
PARTS = "#parts"  # the cursor entry that says in how many pieces the view was read
TOO_MANY = re.compile(r"ErrorExceededFindCountLimit|ErrorCalendarViewRangeTooBig")
CURSOR_PREFIX = "ews1:"
VERSIONS = {
    "2013": Build(15, 0),
    "2013_sp1": Build(15, 0, 847),
    "2016": Build(15, 1),
    "2019": Build(15, 2),
}
BUSY = {"Busy", "Tentative", "OOF"}
RESPONSES = {
    "Accept": PartStat.ACCEPTED,
    "Organizer": PartStat.ACCEPTED,
    "Decline": PartStat.DECLINED,
    "Tentative": PartStat.TENTATIVE,
}
#: What GetItem asks for (the view itself asks for ids and change keys only).
FIELDS = (
    "subject",
    "text_body",
    "start",
    "end",
    "is_all_day",
    "legacy_free_busy_status",
    "location",
    "is_cancelled",
    "organizer",
    "required_attendees",
    "optional_attendees",
    "my_response_type",
    "uid",
    "appointment_sequence_number",
    "cadence_key",
    # all-day items: exchangelib turns start/end into local dates in these zones
    "_start_timezone",
    "_end_timezone",
)
TRANSIENT = (
    ews_errors.ErrorServerBusy,
    ews_errors.RateLimitError,
    ews_errors.ErrorInternalServerTransientError,
    ews_errors.ErrorTimeoutExpired,
    ews_errors.ErrorMailboxStoreUnavailable,
    ews_errors.ErrorMailboxMoveInProgress,
    ews_errors.ErrorConnectionFailed,
    ews_errors.MalformedResponseError,
    ews_errors.SOAPError,
    requests.ConnectionError,
    requests.Timeout,
)


class CadenceKey(ExtendedProperty):  # type: ignore[misc]
    """The booking key on the organizer's item (PS_PUBLIC_STRINGS would clash with others)."""

    property_set_id = KEY_SET
    property_name = KEY_NAME
    property_type = "String"


if "cadence_key" not in {f.name for f in CalendarItem.FIELDS}:
    CalendarItem.register("cadence_key", CadenceKey)


class _Redact(logging.Filter):
    """exchangelib logs every request's headers at DEBUG, Authorization included (basic
    credentials are the password in base64): blank that value before any handler sees it."""

    PATTERN = re.compile(
        r"""(['"]?(?:Authorization|Proxy-Authorization)['"]?\s*[:=]\s*['"]?)[^'",}\n]+""", re.I
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "uthorization" in message:
            record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", message), ()
        return True


for _name in ("exchangelib.util", "exchangelib.protocol", "exchangelib.services.common"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _Redact) for f in _logger.filters):
        _logger.addFilter(_Redact())


# --- connection ------------------------------------------------------------------------


def _adapter(ca_bundle: str) -> type[requests.adapters.HTTPAdapter]:
    """An HTTP adapter that verifies the server against ``ca_bundle`` whatever the
    environment says: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a
    session's ``verify`` (psf/requests#3829), an adapter sees the final value."""

    class TrustCA(requests.adapters.HTTPAdapter):
        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            super().cert_verify(conn, url, ca_bundle, cert)

        def get_connection_with_tls_context(
            self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
        ) -> Any:
            return super().get_connection_with_tls_context(request, ca_bundle, proxies, cert)

    return TrustCA


class _Tolerance(FaultTolerance):  # type: ignore[misc]
    """exchangelib's bounded back-off, except that a 401 is a login failure, not throttling,
    and that a request which may take effect twice (sending mail, creating a meeting) is
    never repeated by exchangelib: after a lost answer it cannot tell whether the first
    one worked, and would send or book again. Those fail fast, in this thread only, and
    Cadence's retry decides (it looks for the meeting first; it never resends)."""

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self._local = threading.local()

    @property
    def fail_fast(self) -> bool:
        return bool(getattr(self._local, "once", False))

    @contextlib.contextmanager
    def once(self) -> Iterator[None]:
        self._local.once = True
        try:
            yield
        finally:
            self._local.once = False

    def raise_response_errors(self, response: requests.Response) -> None:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
        super().raise_response_errors(response)


def _version(text: str | None) -> Version | None:
    if not text:
        return None
    key = str(text).lower().replace("exchange", "").replace(" ", "_").strip("_")
    if key in VERSIONS:
        return Version(build=VERSIONS[key])
    parts = key.split(".")
    if 2 <= len(parts) <= 4 and all(p.isdigit() for p in parts):
        return Version(build=Build(*(int(p) for p in parts)))
    raise ConfigError(
        f"exchange version {text!r}: use 2013, 2013_SP1, 2016, 2019 or a build like 15.1.2507"
    )


class Ews:
    """The shared EWS connection of one account: configuration, protocol, mailboxes."""

    def __init__(
        self,
        account: ExchangeAccount,
        resolve: Callable[[str], Path] = Path,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = account
        self.retry = retry or RetryPolicy.none()
        environ = os.environ if environ is None else environ
        secret = environ.get(account.password_env or "") if account.password_env else None
        if not secret:
            raise ConfigError(
                f"exchange account {account.username}: set the environment variable "
                f"{account.password_env or '(password_env)'} to the "
                + ("access token" if account.auth == "oauth" else "password")
            )
        policy: EwsRetryPolicy = (
            _Tolerance(max_wait=account.max_wait.total_seconds())
            if account.max_wait.total_seconds() > 0
            else FailFast()
        )
        if account.auth == "oauth":
            from exchangelib import OAuth2AuthorizationCodeCredentials
            from oauthlib.oauth2 import OAuth2Token  # type: ignore[import-untyped]

            credentials: Any = OAuth2AuthorizationCodeCredentials(
                access_token=OAuth2Token({"access_token": secret, "token_type": "Bearer"})
            )
        else:
            credentials = Credentials(account.username, secret)
        self.config = Configuration(
            service_endpoint=account.server,
            credentials=credentials,
            auth_type={"ntlm": NTLM, "basic": BASIC, "oauth": OAUTH2}[account.auth],
            version=_version(account.version),
            retry_policy=policy,
        )
        cls: type[Protocol] = Protocol
        if account.ca_bundle:
            ca = resolve(account.ca_bundle)
            if not ca.is_file():
                raise ConfigError(f"exchange ca_bundle {ca} is not a file")
            cls = type("CadenceProtocol", (Protocol,), {"HTTP_ADAPTER_CLS": _adapter(str(ca))})
        # Protocols are cached per endpoint and credentials; a new one for this account
        # (with its own adapter) replaces any stale one.
        with contextlib.suppress(KeyError):
            del Protocol[self.config]
        self.protocol = cls(config=self.config)
        self.access = IMPERSONATION if account.access_type == "impersonation" else DELEGATE
        self._accounts: dict[str, Account] = {}

    def mailbox(self, email: str) -> Account:
        """The exchangelib Account of one person (no request is made here)."""
        email = email.lower()
        if email not in self._accounts:
            acc = Account(
                email,
                config=self.config,
                autodiscover=False,
                access_type=self.access,
                default_timezone=EWSTimeZone("UTC"),
                locale="en_US",
            )
            acc.protocol = self.protocol
            self._accounts[email] = acc
        return self._accounts[email]

    def folder(self, email: str, kind: type[Any] = CalendarFolder) -> Any:
        """A distinguished folder addressed by name and mailbox, without a GetFolder call."""
        acc = self.mailbox(email)
        dist = DistinguishedFolderId(
            id=kind.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=email)
        )
        root = Root(
            account=acc,
            _distinguished_id=DistinguishedFolderId(
                id=Root.DISTINGUISHED_FOLDER_ID, mailbox=Mailbox(email_address=email)
            ),
        )
        return kind(root=root, _distinguished_id=dist)

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run ``fn`` under the retry policy, translating exchangelib's errors. A call
        that is not ``idempotent`` is retried only after errors that certainly had no
        effect."""
        return self.retry.call(lambda: self._translate(what, fn), idempotent=idempotent)

    @contextlib.contextmanager
    def once(self) -> Iterator[None]:
        """Within it, exchangelib sends each request once (see :class:`_Tolerance`)."""
        policy = self.config.retry_policy
        if isinstance(policy, _Tolerance):
            with policy.once():
                yield
        else:
            yield

    @staticmethod
    def _translate(what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (TransientError, PermanentError, CursorExpired):
            raise
        except Exception as exc:
            raise translate(what, exc) from exc

    def close(self) -> None:
        try:
            self.protocol.close()
        finally:
            with contextlib.suppress(KeyError):
                del Protocol[self.config]


def translate(what: str, exc: BaseException) -> TransientError | PermanentError:
    """The one place where exchangelib and HTTP errors become Cadence's."""
    name = type(exc).__name__
    text = f"{what}: {name}: {exc}"
    if isinstance(exc, ews_errors.ErrorServerBusy):
        # Exchange's own ErrorServerBusy refused the request; exchangelib also raises
        # it for 5xx answers and closed connections ("Reraised from …", "Caused by …"),
        # after which the request may have taken effect
        refused = not str(exc).startswith(("Reraised from", "Caused by"))
        return TransientError(text, retry_after=exc.back_off, maybe_done=not refused)
    if isinstance(exc, ews_errors.RateLimitError):
        return TransientError(text, retry_after=getattr(exc, "wait", None))
    if isinstance(exc, TRANSIENT):
        return TransientError(text)
    if isinstance(exc, ews_errors.ResponseMessageError):
        # an answer from Exchange about this request (access denied, not found, invalid)
        return PermanentError(text)
    if isinstance(exc, ews_errors.TransportError) and re.search(
        r"certificate|SSL|TLS", str(exc), re.I
    ):
        return PermanentError(f"{text} (set ca_bundle to the CA that signed the server)")
    if isinstance(exc, ews_errors.TransportError):
        return TransientError(text)
    if isinstance(exc, requests.exceptions.SSLError):
        return PermanentError(f"{text} (set ca_bundle to the CA that signed the server)")
    return PermanentError(text)


def _check(results: Iterable[Any], what: str) -> list[Any]:
    """exchangelib returns per-item errors as values: raise the first one."""
    out = list(results)
    for r in out:
        if isinstance(r, Exception):
            raise translate(what, r)
    return out


# --- time ------------------------------------------------------------------------------


def _ews(dt: datetime, zone: str | EWSTimeZone = "UTC") -> EWSDateTime:
    """``dt`` as exchangelib's datetime, in ``zone`` (the zone Exchange stores it in)."""
    tz = zone if isinstance(zone, EWSTimeZone) else EWSTimeZone(zone)
    utc = dt.astimezone(UTC).replace(tzinfo=None)
    return EWSDateTime.from_datetime(utc).replace(tzinfo=EWSTimeZone("UTC")).astimezone(tz)


def _aware(value: Any, zone: Any = UTC) -> datetime:
    """An aware datetime from what exchangelib returns (naive values are in ``zone``)."""
    if isinstance(value, datetime):
        dt = datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            tzinfo=value.tzinfo or zone,
        )
        return dt.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), zone).astimezone(UTC)
    raise ValueError(f"not a date or time: {value!r}")


def _pieces(window: Interval, size: timedelta) -> Iterator[Interval]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + size)
        yield Interval(start, end)
        start = end


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


# --- events ----------------------------------------------------------------------------


def to_event(owner: Person, item: Any) -> Event:
    """Map one CalendarItem (or occurrence) onto an Event of ``owner``'s calendar."""
    if item.is_all_day:
        if isinstance(item.start, datetime) or not isinstance(item.start, date):
            first = _aware(item.start).astimezone(owner.zone).date()
            last = _aware(item.end).astimezone(owner.zone).date()
        else:  # exchangelib's dates: the first and the last day (inclusive)
            first, last = item.start, item.end + timedelta(days=1)
        start = datetime.combine(first, time(0), owner.zone)
        end = datetime.combine(max(last, first + timedelta(days=1)), time(0), owner.zone)
    else:
        start, end = _aware(item.start), _aware(item.end)
    organizer = item.organizer.email_address.lower() if item.organizer else None
    me = owner.email.lower()
    attendees: dict[str, CadenceAttendee] = {}
    for a in list(item.required_attendees or []) + list(item.optional_attendees or []):
        address = (a.mailbox.email_address or "").lower() if a.mailbox else ""
        if address:
            status = RESPONSES.get(a.response_type or "", PartStat.NEEDS_ACTION)
            attendees[address] = CadenceAttendee(address, status)
    if organizer and organizer != me and item.my_response_type:
        # the owner's own answer lives in MyResponseType on their copy
        attendees[me] = CadenceAttendee(
            me, RESPONSES.get(item.my_response_type, PartStat.NEEDS_ACTION)
        )
    text = item.text_body or ""
    key = item.cadence_key
    if not key and organizer and organizer != me:
        # An invitation's copy has no tag, only the body: the reference there makes both
        # copies one meeting. The agent never changes such a copy (only the organizer's).
        found = REFERENCE.search(text)
        key = found.group(1) if found else None
    busy_status = str(item.legacy_free_busy_status or "Busy")
    return Event(
        owner=owner.email,
        id=str(item.id),
        title=str(item.subject or ""),
        start=start,
        end=end,
        uid=str(item.uid or ""),
        all_day=bool(item.is_all_day),
        cancelled=bool(item.is_cancelled),
        transparent=busy_status in ("Free", "WorkingElsewhere"),
        kind="outOfOffice" if busy_status == "OOF" else "default",
        organizer=organizer,
        attendees=tuple(attendees.values()),
        key=str(key) if key else None,
        sequence=int(item.appointment_sequence_number or 0),
        description=REFERENCE.sub("", text).strip(),
        location=str(item.location or ""),
    )


def _encode(anchor: Interval, items: Mapping[str, str]) -> str:
    data = {"start": anchor.start.isoformat(), "end": anchor.end.isoformat(), "items": items}
    packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return CURSOR_PREFIX + base64.urlsafe_b64encode(packed).decode()


def _decode(cursor: str) -> tuple[Interval, dict[str, str]]:
    """Read a cursor written by changes(); raise CursorExpired for anything else."""
    try:
        if cursor.startswith(CURSOR_PREFIX):
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor[5:])))
            anchor = Interval(
                datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
            )
            items = data["items"]
            if isinstance(items, dict):
                return anchor, {str(k): str(v) for k, v in items.items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        pass
    raise CursorExpired(f"not an Exchange cursor: {cursor[:40]!r}")


def _diff(before: Mapping[str, str], now: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(changed or new ids, removed ids) between two id → change key maps.

    Why not SyncFolderItems: it reports changes to recurring masters, not to the
    occurrences a calendar view shows, and its first sync walks the whole folder history
    512 items at a time. The view of ids and change keys costs one request too, sees
    occurrence-level changes directly, and an occurrence's change key follows its master.
    """
    changed = [i for i, ck in now.items() if before.get(i) != ck]
    removed = [i for i in before if i not in now]
    return changed, removed


class ExchangeCalendar:
    """The Calendar protocol on EWS."""

    sends_invitations = True

    def __init__(self, ews: Ews, people: Sequence[Person] = ()) -> None:
        self.ews = ews
        self.people = {p.email.lower(): p for p in people}

    def close(self) -> None:
        self.ews.close()

    # -- sync

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        anchor: Interval | None = None
        before: dict[str, str] = {}
        if since:
            anchor, before = _decode(since)
            if window.end > anchor.end or window.start < anchor.start:
                log.info("re-anchoring the calendar view of %s", person.email)
                anchor, before = None, {}
        full = anchor is None
        if anchor is None:
            anchor = Interval(window.start, window.end + WINDOW_SLACK)
        span = anchor
        folder = self.ews.folder(person.email)
        parts = max(1, int(before.pop(PARTS, "1"))) if before else 1

        def view(piece: Interval) -> dict[str, str]:
            qs = folder.view(start=_ews(piece.start), end=_ews(piece.end), max_items=VIEW_LIMIT)
            return {str(i.id): str(i.changekey) for i in _check(qs.only("id", "changekey"), "view")}

        # Exchange answers at most 1000 items per FindItem (EWSFindCountLimit) and a
        # calendar view cannot page: a busy calendar is read in 2, 4, 8 ... pieces, and
        # the cursor remembers how many it took.
        while True:
            size = (span.end - span.start) / parts
            pieces = [
                Interval(
                    span.start + size * i,
                    span.end if i == parts - 1 else span.start + size * (i + 1),
                )
                for i in range(parts)
            ]
            try:
                now: dict[str, str] = {}
                for piece in pieces:
                    now.update(
                        self.ews.call(f"calendar view of {person.email}", partial(view, piece))
                    )
                break
            except PermanentError as exc:
                if not TOO_MANY.search(str(exc)) or parts >= MAX_PARTS:
                    raise
                parts *= 2
        changed, removed = _diff(before, now)
        events, skipped = self._fetch(person, [(i, now[i]) for i in changed])
        return Changes(
            cursor=_encode(anchor, {**now, PARTS: str(parts)} if parts > 1 else now),
            events=tuple(events),
            removed=() if full else tuple(removed),
            full=full,
            skipped=tuple(skipped),
        )

    def _fetch(
        self, person: Person, ids: Sequence[tuple[str, str]]
    ) -> tuple[list[Event], list[Skipped]]:
        """GetItem for ``ids``; an item that cannot be read becomes a Skipped."""
        if not ids:
            return [], []
        acc = self.ews.mailbox(person.email)
        folder = self.ews.folder(person.email)
        items = self.ews.call(
            f"items of {person.email}",
            lambda: list(acc.fetch(ids=ids, folder=folder, only_fields=FIELDS)),
        )
        events: list[Event] = []
        skipped: list[Skipped] = []
        for (ref, _), item in zip(ids, items, strict=True):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                continue  # deleted between the view and the fetch: the next view shows it gone
            if isinstance(item, Exception):
                skipped.append(Skipped(person.email, ref, f"{type(item).__name__}: {item}"))
                continue
            try:
                events.append(to_event(person, item))
            except (AttributeError, TypeError, ValueError) as exc:
                skipped.append(Skipped(person.email, ref, f"{type(exc).__name__}: {exc}"))
        return events, skipped

    # -- free/busy

    def busy(self, people: Sequence[Person], window: Interval) -> dict[str, list[Interval]]:
        """Busy intervals from GetUserAvailability: 100 mailboxes and 42 days per call."""
        result: dict[str, list[Interval]] = {p.email.lower(): [] for p in people}
        emails = list(result)
        if not emails:
            return {}
        protocol = self.ews.protocol
        utc = EWSTimeZone("UTC")
        for i in range(0, len(emails), MAX_MAILBOXES):
            group = emails[i : i + MAX_MAILBOXES]
            for piece in _pieces(window, MAX_PERIOD):

                def ask(group: list[str] = group, piece: Interval = piece) -> list[Any]:
                    return list(
                        protocol.get_free_busy_info(
                            accounts=[(e, "Required", False) for e in group],
                            start=_ews(piece.start),
                            end=_ews(piece.end),
                            merged_free_busy_interval=15,
                            requested_view="Detailed",
                        )
                    )

                views = self.ews.call(f"free/busy of {len(group)} mailboxes", ask)
                for who, view in zip(group, views, strict=True):
                    if isinstance(view, Exception):
                        raise translate(f"free/busy of {who}", view)
                    for ev in view.calendar_events or []:
                        if ev.busy_type in BUSY:
                            # EWS answers in the request's time zone, without an offset
                            result[who].append(Interval(_aware(ev.start, utc), _aware(ev.end, utc)))
        return {k: _merge(v) for k, v in result.items()}

    # -- the agent's own events

    def _tagged(self, person: Person, key: str) -> list[tuple[str, str]]:
        """(id, change key) of the items tagged with ``key`` (one FindItem, no retry)."""
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,200}", key):
            raise PermanentError(f"not a booking key: {key!r}")
        folder = self.ews.folder(person.email)
        found = _check(folder.filter(cadence_key=key).only("id", "changekey"), "find")
        return [(str(i.id), str(i.changekey)) for i in found]

    def find(self, person: Person, key: str) -> Event | None:
        ids = self.ews.call(f"booking {key} of {person.email}", lambda: self._tagged(person, key))
        events, _ = self._fetch(person, ids)
        events.sort(key=lambda e: e.cancelled)
        return events[0] if events else None

    def create(self, draft: EventDraft) -> Event:
        organizer = draft.organizer
        existing = self.find(organizer, draft.key)
        if existing is not None:
            return existing
        acc = self.ews.mailbox(organizer.email)
        zone = _zone(draft.timezone)
        body = f"{draft.description}\n\n[cadence:{draft.key}]".strip()
        item = CalendarItem(
            account=acc,
            folder=self.ews.folder(organizer.email),
            subject=draft.title,
            body=body,
            start=_ews(draft.start, zone),
            end=_ews(draft.end, zone),
            legacy_free_busy_status="Busy",
            required_attendees=[
                Attendee(
                    mailbox=Mailbox(email_address=p.email, name=p.name), response_type="Unknown"
                )
                for p in draft.attendees
                if p.email.lower() != organizer.email.lower()
            ],
            cadence_key=draft.key,
        )

        tries = 0

        def save() -> tuple[str, str]:
            # EWS has no idempotency token: a retry (after a timeout or a lost answer,
            # when the first CreateItem may have worked) looks for the tag first.
            nonlocal tries
            tries += 1
            if tries > 1:
                made = self._tagged(organizer, draft.key)
                if made:
                    return made[0]
            with self.ews.once():
                item.save(send_meeting_invitations="SendToAllAndSaveCopy")
            return str(item.id), str(item.changekey)

        ref = self.ews.call(f"create {draft.key} on {organizer.email}", save)
        events, _ = self._fetch(organizer, [ref])
        if not events:
            raise PermanentError(f"the new meeting {draft.key} could not be read back")
        return events[0]

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        _ensure_organizer(person, event)
        acc = self.ews.mailbox(person.email)
        folder = self.ews.folder(person.email)
        zone = _zone(person.timezone)

        def update() -> tuple[str, str]:
            [item] = _check(
                acc.fetch(ids=[(event.id, None)], folder=folder, only_fields=("start", "end")),
                "get",
            )
            item.start = _ews(to.start, zone)
            item.end = _ews(to.end, zone)
            item.save(
                update_fields=["start", "end"],
                send_meeting_invitations="SendToAllAndSaveCopy",
            )
            return str(item.id), str(item.changekey)

        ref = self.ews.call(f"move {event.id} on {person.email}", update)
        events, _ = self._fetch(person, [ref])
        if not events:
            raise PermanentError(f"the moved meeting {event.id} could not be read back")
        moved = events[0]
        return replace(moved, sequence=max(moved.sequence, event.sequence + 1))

    def cancel(self, person: Person, event: Event) -> None:
        _ensure_organizer(person, event)
        acc = self.ews.mailbox(person.email)

        def delete() -> None:
            results = acc.bulk_delete(
                ids=[(event.id, None)],
                delete_type="MoveToDeletedItems",
                send_meeting_cancellations="SendToAllAndSaveCopy",
            )
            for r in results:
                if isinstance(r, ews_errors.ErrorItemNotFound):
                    log.info("event %s on %s was already gone", event.id, person.email)
                elif isinstance(r, Exception):
                    raise r

        self.ews.call(f"cancel {event.id} on {person.email}", delete)


def _zone(name: str) -> EWSTimeZone:
    try:
        return EWSTimeZone(name)
    except Exception:  # exchangelib has no Windows name for it: UTC is always known
        return EWSTimeZone("UTC")


def _ensure_organizer(person: Person, event: Event) -> None:
    """Only the agent's own events, on the calendar of the person who organizes them."""
    ensure_own(event)
    if event.organizer and event.organizer.lower() != person.email.lower():
        raise PermanentError(
            f"refusing to change event {event.id!r} on {person.email}: "
            f"only its organizer {event.organizer} can"
        )


# --- mail ------------------------------------------------------------------------------


class ExchangeMailer:
    """The Mailer protocol on EWS: the MIME message sent from the sender's own mailbox."""

    def __init__(self, ews: Ews) -> None:
        self.ews = ews

    def close(self) -> None:
        self.ews.close()

    def send(self, mail: OutgoingMail) -> SentMail:
        sender = mail.sender.lower()
        for value in (mail.subject, *mail.to, *mail.headers.values()):
            if "\n" in value or "\r" in value:
                raise PermanentError("a mail header holds a line break")
        message = mime.build(mail)
        acc = self.ews.mailbox(sender)

        def send() -> None:
            with self.ews.once():
                Message(
                    account=acc,
                    folder=self.ews.folder(sender, SentItems),
                    mime_content=message.as_bytes(),
                    to_recipients=[Mailbox(email_address=a) for a in mail.to],
                ).send_and_save()

        # a lost answer may hide a sent mail: retried only when Exchange refused it
        self.ews.call(f"mail {mail.key} from {sender}", send, idempotent=False)
        return SentMail(mail.key, str(message["Message-ID"]), f"ews:{sender}")


# --- wiring ----------------------------------------------------------------------------


def connect(ctx: Context) -> tuple[ExchangeCalendar, ExchangeMailer]:
    account: ExchangeAccount = ctx.account
    ews = Ews(account, ctx.settings.resolve, ctx.retry)
    return ExchangeCalendar(ews, ctx.people), ExchangeMailer(ews)


__all__ = ["CadenceKey", "Ews", "ExchangeCalendar", "ExchangeMailer", "connect", "translate"]
