"""CalDAV calendars (RFC 4791) with SMTP mail: the ``caldav`` provider.

Each person's calendar is a collection URL, taken from ``calendar:`` in the person's
config or discovered from their principal (``calendar-home-set``, then the first
calendar that holds events). Requests go through the ``caldav`` library's client, with
the protocol steps spelled out here so that a quiet tick costs one request per calendar:

- ``changes``: a full sync reads the collection's ``sync-token`` (and ``getctag``) and
  runs one ``calendar-query`` over a horizon a little longer than the window; an
  incremental sync is one ``sync-collection`` REPORT (RFC 6578), or, where the server
  has no sync-collection, a ``getctag`` PROPFIND followed by an ETag listing when the
  ctag moved. Changed objects come in the sync reply or one ``calendar-multiget``.
  Recurring events are expanded on the client with recurring-ical-events.
- ``busy``: a ``free-busy-query`` REPORT per calendar where the server answers it,
  computed from the expanded events otherwise.
- ``create``: ``PUT`` of ``<key>.ics`` with ``If-None-Match: *``; a 412 means the
  event exists (a retry after a crash) and it is read back instead. Every TZID gets a
  VTIMEZONE, the booking key rides along as ``X-CADENCE-KEY``, and attendees carry
  ``SCHEDULE-AGENT=CLIENT`` because Cadence mails the iTIP invitation itself
  (``sends_invitations`` is False), so servers with RFC 6638 scheduling don't send a
  second one.
- ``move``/``cancel``: only events carrying the agent's key, with ``If-Match`` on the
  ETag and SEQUENCE incremented.

HTTP outcomes are translated to Cadence errors in one place, :meth:`CalDAVCalendar._send`.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import icalendar
from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from icalendar.cal import Component

from agent.connectors.base import Calendar, Mailer, ensure_own
from agent.connectors.caldav_ical import (
    add_timezones,
    draft_ics,
    master_event,
    merge,
    sequence_of,
    stamp,
    widen_to_local_days,
    zone_of,
)
from agent.connectors.caldav_replies import ReplyCollector
from agent.connectors.smtp import ImapReader, SmtpMailer, secret_from_env
from agent.core.errors import ConfigError, CursorExpired, PermanentError, TransientError
from agent.core.model import (
    Changes,
    Event,
    EventDraft,
    Interval,
    Person,
    Skipped,
    SyncToken,
)
from agent.core.retry import RetryPolicy
from agent.formats import ical

if TYPE_CHECKING:
    from caldav.response import DAVResponse

    from agent.connectors import Context
    from agent.settings.config import CalDAVAccount

KEY_PROPERTY = ical.KEY_PROPERTY
#: a full sync expands events this far past the window's end, so that the window can
#: move with the clock for about a month before the next full sync
HORIZON_SLACK = timedelta(days=30)
CURSOR_VERSION = 1

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


def connect(ctx: Context) -> tuple[Calendar, Mailer]:
    """Open the CalDAV calendar and the SMTP mailer of one ``caldav`` account."""
    account: CalDAVAccount = ctx.account
    where = f"account {ctx.name!r}"
    if account.smtp is None:
        raise ConfigError(f"{where}: smtp: is required to send agendas and invitations")
    password = secret_from_env(account.password_env, f"{where}: password_env")
    if account.username and password is None:
        raise ConfigError(f"{where}: username is set but password_env is not")
    client = make_client(
        account.url, account.username, password, account.auth, account.ca_bundle, account.timeout
    )
    people = ctx.settings.people
    calendar = CalDAVCalendar(
        client,
        calendars={e: p.calendar for e, p in people.items() if p.calendar},
        usernames={e: p.username for e, p in people.items() if p.username},
        account_username=account.username,
        retry=ctx.retry,
        log=ctx.log,
    )
    try:
        mailer = SmtpMailer.from_settings(
            account.smtp, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
        )
        collect = ctx.settings.collects_replies
        if account.imap is not None and collect:
            reader = ImapReader.from_settings(
                account.imap, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
            )
            calendar.replies = ReplyCollector(
                reader, {p.email: p for p in ctx.settings.people.values()}, log=ctx.log
            )
    except BaseException:
        calendar.close()
        raise
    return calendar, mailer


def make_client(
    url: str,
    username: str | None,
    password: str | None,
    auth: str = "basic",
    ca_bundle: str | None = None,
    timeout: float = 30.0,
) -> DAVClient:
    """Return a caldav client sending credentials up front (basic) or on challenge."""
    from caldav.lib.http_sync import requests

    auth_object = None
    if username is not None and password is not None:
        auth_object = (
            requests.auth.HTTPDigestAuth(username, password)
            if auth == "digest"
            else requests.auth.HTTPBasicAuth(username, password)
        )
    return DAVClient(
        url=url,
        username=username,
        password=password,
        auth=auth_object,
        timeout=timeout,  # type: ignore[arg-type]  # the library passes it on to niquests
        ssl_verify_cert=ca_bundle or True,
        enable_rfc6764=False,
        headers={"User-Agent": "cadence-agent"},
    )


# --- the cursor -----------------------------------------------------------------------------


@dataclass
class _Cursor:
    """What one calendar looked like at the last sync (opaque to the engine).

    ``ids`` maps each object's path to the event ids it produced within ``horizon``, so
    that a deleted object or a vanished instance can be reported as removed.
    """

    url: str
    mode: str  # "sync": RFC 6578 token; "etag": ctag + per-object ETags
    horizon: Interval
    token: str | None = None
    ctag: str | None = None
    etags: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)

    def encode(self) -> SyncToken:
        data = {
            "v": CURSOR_VERSION,
            "url": self.url,
            "mode": self.mode,
            "h": [self.horizon.start.isoformat(), self.horizon.end.isoformat()],
            "token": self.token,
            "ctag": self.ctag,
            "etags": self.etags,
            "ids": self.ids,
        }
        packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
        return "caldav1:" + base64.urlsafe_b64encode(packed).decode()

    @classmethod
    def decode(cls, text: SyncToken) -> _Cursor:
        try:
            if not text.startswith("caldav1:"):
                raise ValueError("not a caldav cursor")
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(text[8:])))
            if data["v"] != CURSOR_VERSION:
                raise ValueError("old cursor version")
            return cls(
                url=data["url"],
                mode=data["mode"],
                horizon=Interval(
                    datetime.fromisoformat(data["h"][0]), datetime.fromisoformat(data["h"][1])
                ),
                token=data["token"],
                ctag=data["ctag"],
                etags=dict(data["etags"]),
                ids={k: list(v) for k, v in data["ids"].items()},
            )
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise CursorExpired(f"unreadable CalDAV cursor: {exc}") from exc


@dataclass
class _Object:
    """One calendar object resource as read from the server."""

    path: str
    etag: str | None
    data: str


# --- the calendar -----------------------------------------------------------------------------


class CalDAVCalendar:
    """The ``Calendar`` of one CalDAV account."""

    sends_invitations = False

    def __init__(
        self,
        client: DAVClient,
        *,
        calendars: Mapping[str, str] | None = None,
        usernames: Mapping[str, str] | None = None,
        account_username: str | None = None,
        retry: RetryPolicy | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.base = str(client.url)
        self.retry = retry or RetryPolicy()
        self.log = log or logging.getLogger("cadence.connector.caldav")
        self.clock = clock
        self._urls = {e.lower(): self._absolute(u) for e, u in (calendars or {}).items()}
        self._usernames = {e.lower(): u for e, u in (usernames or {}).items()}
        self._account_username = account_username
        self._principal: str | None = None
        #: calendars that refused a REPORT (sync-collection, free-busy-query)
        self._refused: set[tuple[str, str]] = set()
        #: reads iTIP replies and records them, when the account collects replies
        self.replies: ReplyCollector | None = None

    def close(self) -> None:
        self.client.close()

    # --- transport ------------------------------------------------------------------------

    def _absolute(self, url: str) -> str:
        absolute = urljoin(self.base, url)
        return absolute if absolute.endswith("/") else absolute + "/"

    def _send(
        self,
        method: str,
        url: str,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        accept: Iterable[int] = (),
    ) -> DAVResponse:
        """Send one request with retries; translate every failure to a Cadence error.

        Statuses in ``accept`` are returned to the caller (401 and 403 as a raised
        ``_Refused``, since the library raises for them); any other status of 400 or
        more raises: 429, 5xx and network failures TransientError (honouring
        Retry-After), 401/403/404/400 and the rest PermanentError.
        """
        accepted = set(accept)

        def once() -> DAVResponse:
            from caldav.lib.http_sync import requests

            try:
                response = self.client.request(url, method, body, dict(headers or {}))
            except dav_error.RateLimitError as exc:
                raise TransientError(
                    f"CalDAV {method} {url}: {exc.status} (rate limited)",
                    retry_after=exc.retry_after_seconds,
                ) from exc
            except dav_error.AuthorizationError as exc:
                if exc.status in accepted:
                    raise _Refused(exc.status or 403, exc.preconditions) from exc
                what = "authentication failed" if exc.status == 401 else "forbidden"
                raise PermanentError(
                    f"CalDAV {method} {url}: {exc.status} {what}; check the account's "
                    "username, password_env and the calendar's sharing"
                ) from exc
            except requests.exceptions.SSLError as exc:
                raise PermanentError(
                    f"CalDAV {method} {url}: TLS failed ({exc}); if the server's certificate "
                    "is signed by a private CA, set ca_bundle"
                ) from exc
            except requests.exceptions.Timeout as exc:
                raise TransientError(f"CalDAV {method} {url}: timed out") from exc
            except requests.exceptions.ConnectionError as exc:
                raise TransientError(f"CalDAV {method} {url}: {exc}") from exc
            except requests.exceptions.RequestException as exc:
                raise PermanentError(f"CalDAV {method} {url}: {exc}") from exc
            except (dav_error.DAVError, SyntaxError, ValueError) as exc:
                # lxml's XMLSyntaxError is a SyntaxError: a reply that is not XML
                raise TransientError(f"CalDAV {method} {url}: unreadable reply: {exc}") from exc
            status = response.status
            if status in accepted or status < 400:
                return response
            message = f"CalDAV {method} {url}: {status} {response.reason}"
            if status == 429 or status >= 500:
                retry_after = response.headers.get("Retry-After")
                raise TransientError(message, retry_after=_seconds(retry_after))
            raise PermanentError(message)

        return self.retry.call(once)

    def _propfind(self, url: str, props: str, depth: int) -> list[Any]:
        body = f'{XML_HEAD}<D:propfind xmlns:D="{DAV}" xmlns:C="{CALDAV}" xmlns:CS="{CS}">'
        body += f"<D:prop>{props}</D:prop></D:propfind>"
        response = self._send("PROPFIND", url, body, {"Depth": str(depth)})
        if response.status not in (200, 207):
            raise PermanentError(f"CalDAV PROPFIND {url}: unexpected {response.status}")
        return list(response.parse_propfind())

    def _report(
        self, url: str, body: str, depth: int | None, accept: Iterable[int] = ()
    ) -> DAVResponse:
        headers = {"Content-Type": "application/xml; charset=utf-8"}
        if depth is not None:
            headers["Depth"] = str(depth)
        return self._send("REPORT", url, XML_HEAD + body, headers, accept)

    # --- calendars of people --------------------------------------------------------------

    def calendar_url(self, person: Person) -> str:
        """Return the person's calendar collection URL, discovering it once if needed."""
        email = person.email.lower()
        if email not in self._urls:
            self._urls[email] = self._discover(person)
        return self._urls[email]

    def _discover(self, person: Person) -> str:
        principal = self._principal_of(person)
        found = self._propfind(principal, "<C:calendar-home-set/>", 0)
        homes = found[0].properties.get(f"{{{CALDAV}}}calendar-home-set") if found else None
        if isinstance(homes, list):
            homes = homes[0] if homes else None
        if not homes:
            raise PermanentError(
                f"no calendar-home-set on principal {principal} for {person.email}; "
                "set calendar: for this person"
            )
        home = self._absolute(homes)
        props = "<D:resourcetype/><C:supported-calendar-component-set/><D:displayname/>"
        for item in sorted(self._propfind(home, props, 1), key=lambda r: str(r.href)):
            types = item.properties.get(f"{{{DAV}}}resourcetype") or []
            comps = item.properties.get(f"{{{CALDAV}}}supported-calendar-component-set")
            if f"{{{CALDAV}}}calendar" not in types:
                continue
            if comps and "VEVENT" not in comps:
                continue
            url = self._absolute(item.href)
            self.log.info("calendar of %s discovered at %s", person.email, url)
            return url
        raise PermanentError(f"no calendar for events under {home} for {person.email}")

    def _principal_of(self, person: Person) -> str:
        if self._principal is None:
            found = self._propfind(self.base, "<D:current-user-principal/>", 0)
            href = found[0].properties.get(f"{{{DAV}}}current-user-principal") if found else None
            if not href:
                raise PermanentError(f"{self.base} names no current-user-principal")
            self._principal = self._absolute(str(href))
        username = self._usernames.get(person.email.lower(), person.email)
        own = self._account_username
        if own is None or username == own:
            return self._principal
        segments = self._principal.rstrip("/").split("/")
        if unquote(segments[-1]) != own:
            raise ConfigError(
                f"cannot derive the principal of {person.email} from {self._principal}: "
                "set calendar: for this person"
            )
        return "/".join([*segments[:-1], quote(username, safe="@")]) + "/"

    # --- changes --------------------------------------------------------------------------

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Return the person's events in ``window``, or what changed since ``since``."""
        if self.replies is not None:
            self.replies.collect(self)  # answers to invitations first: see caldav_replies
        url = self.calendar_url(person)
        if since is None:
            return self._full(person, url, window)
        cursor = _Cursor.decode(since)
        if cursor.url != url:
            raise CursorExpired(f"the calendar of {person.email} is now {url}")
        if not cursor.horizon.contains(window):
            return self._full(person, url, window)
        if cursor.mode == "sync" and (url, "sync-collection") not in self._refused:
            return self._incremental_sync(person, url, cursor)
        if cursor.mode == "sync":
            return self._full(person, url, window)
        return self._incremental_etag(person, url, cursor)

    def _collection_state(self, url: str) -> tuple[str | None, str | None]:
        found = self._propfind(url, "<D:sync-token/><CS:getctag/>", 0)
        props = found[0].properties if found else {}
        token = props.get(f"{{{DAV}}}sync-token")
        ctag = props.get(f"{{{CS}}}getctag")
        return (token if isinstance(token, str) else None, ctag if isinstance(ctag, str) else None)

    def _full(self, person: Person, url: str, window: Interval) -> Changes:
        horizon = Interval(window.start, window.end + HORIZON_SLACK)
        token, ctag = self._collection_state(url)
        if (url, "sync-collection") in self._refused:
            token = None
        cursor = _Cursor(url=url, mode="sync" if token else "etag", horizon=horizon)
        cursor.token, cursor.ctag = token, ctag
        if cursor.mode == "etag":
            cursor.etags = self._etags(url)
        objects = self._query(url, horizon)
        events: list[Event] = []
        skipped: list[Skipped] = []
        for obj in objects:
            found, skip = self._expand(person, obj, horizon)
            skipped.extend(skip)
            if found:
                cursor.ids[obj.path] = [e.id for e in found]
                events.extend(found)
        return Changes(
            cursor=cursor.encode(), events=tuple(events), full=True, skipped=tuple(skipped)
        )

    def _incremental_sync(self, person: Person, url: str, cursor: _Cursor) -> Changes:
        body = (
            f'<D:sync-collection xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            f"<D:sync-token>{escape(cursor.token or '')}</D:sync-token>"
            "<D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/><C:calendar-data/></D:prop></D:sync-collection>"
        )
        try:
            response = self._report(url, body, 0, accept=(400, 403, 404, 405, 409, 412, 501))
            status, conditions = response.status, []
        except _Refused as refused:
            status, conditions = refused.status, refused.preconditions
        if status >= 400:
            if f"{{{DAV}}}valid-sync-token" in conditions or status in (409, 412):
                raise CursorExpired(f"the server no longer accepts the sync token of {url}")
            if status == 404:
                raise PermanentError(f"calendar {url} of {person.email} not found (404)")
            self.log.info("%s refuses sync-collection (%s): using ctag/ETags", url, status)
            self._refused.add((url, "sync-collection"))
            window = Interval(cursor.horizon.start, cursor.horizon.end - HORIZON_SLACK)
            return self._full(person, url, window)
        result = response.parse_sync_collection()
        pages = 1
        while result.truncated and result.sync_token and pages < 100:
            # RFC 6578 section 3.6: a truncated reply continues from its own token
            more_body = body.replace(
                f"<D:sync-token>{escape(cursor.token or '')}</D:sync-token>",
                f"<D:sync-token>{escape(result.sync_token)}</D:sync-token>",
            )
            more = self._report(url, more_body, 0).parse_sync_collection()
            more.changed = result.changed + more.changed
            more.deleted = result.deleted + more.deleted
            result, pages = more, pages + 1
        changed: dict[str, _Object] = {}
        missing: list[str] = []
        for item in result.changed:
            path = self._path(url, item.href)
            if path == self._path(url, url):
                continue
            if item.calendar_data:
                changed[path] = _Object(path, item.etag, item.calendar_data)
            else:
                missing.append(item.href)
        gone = {self._path(url, href) for href in result.deleted}
        for obj in self._multiget(url, missing):
            changed[obj.path] = obj
        gone |= {self._path(url, h) for h in missing} - set(changed)
        cursor.token = result.sync_token or cursor.token
        return self._apply(person, cursor, changed.values(), gone)

    def _incremental_etag(self, person: Person, url: str, cursor: _Cursor) -> Changes:
        ctag = None
        if cursor.ctag is not None:  # a server without getctag: straight to the ETags
            _, ctag = self._collection_state(url)
            if ctag == cursor.ctag:
                return Changes(cursor=cursor.encode())
        etags = self._etags(url)
        changed_paths = [p for p, tag in etags.items() if cursor.etags.get(p) != tag]
        gone = set(cursor.etags) - set(etags)
        objects = self._multiget(url, [quote(p) for p in changed_paths])
        cursor.ctag, cursor.etags = ctag, etags
        return self._apply(person, cursor, objects, gone)

    def _apply(
        self, person: Person, cursor: _Cursor, changed: Iterable[_Object], gone: set[str]
    ) -> Changes:
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[Skipped] = []
        for obj in changed:
            found, skip = self._expand(person, obj, cursor.horizon)
            skipped.extend(skip)
            new_ids = [e.id for e in found]
            removed.extend(i for i in cursor.ids.pop(obj.path, []) if i not in new_ids)
            if new_ids:
                cursor.ids[obj.path] = new_ids
            events.extend(found)
        for path in gone:
            removed.extend(cursor.ids.pop(path, []))
        # an object renamed by a client is gone under one name and new under another
        current = {e.id for e in events}
        return Changes(
            cursor=cursor.encode(),
            events=tuple(events),
            removed=tuple(dict.fromkeys(i for i in removed if i not in current)),
            skipped=tuple(skipped),
        )

    def _path(self, base: str, href: str) -> str:
        return unquote(urlsplit(urljoin(base, href)).path)

    def _etags(self, url: str) -> dict[str, str]:
        etags: dict[str, str] = {}
        collection = self._path(url, url)
        for item in self._propfind(url, "<D:getetag/><D:resourcetype/>", 1):
            path = self._path(url, item.href)
            etag = item.properties.get(f"{{{DAV}}}getetag")
            if path != collection and isinstance(etag, str):
                etags[path] = etag
        return etags

    def _query(self, url: str, span: Interval) -> list[_Object]:
        body = (
            f'<C:calendar-query xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{stamp(span.start)}" end="{stamp(span.end)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
        )
        return self._objects(url, self._report(url, body, 1))

    def _multiget(self, url: str, hrefs: Sequence[str]) -> list[_Object]:
        if not hrefs:
            return []
        refs = "".join(f"<D:href>{escape(h)}</D:href>" for h in hrefs)
        body = (
            f'<C:calendar-multiget xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{refs}</C:calendar-multiget>"
        )
        return self._objects(url, self._report(url, body, 1))

    def _objects(self, url: str, response: DAVResponse) -> list[_Object]:
        objects = []
        for item in response.parse_calendar_query():
            if item.status == 404 or not item.calendar_data:
                continue
            objects.append(_Object(self._path(url, item.href), item.etag, item.calendar_data))
        return objects

    def _expand(
        self, person: Person, obj: _Object, span: Interval
    ) -> tuple[list[Event], list[Skipped]]:
        """Expand one object; a malformed object or event becomes a Skipped entry."""
        try:
            return ical.read_events(obj.data, person, span)
        except Exception as exc:  # not iCalendar at all: skip the object, keep syncing
            self.log.warning("skipping %s on %s: %s", obj.path, person.email, exc)
            return [], [Skipped(person.email, obj.path, f"{type(exc).__name__}: {exc}")]

    # --- free/busy ------------------------------------------------------------------------

    def busy(self, people: Sequence[Person], window: Interval) -> dict[str, list[Interval]]:
        """Return busy intervals per email: one free-busy-query per calendar.

        CalDAV has no batched free/busy across collections (the RFC 6638 outbox POST
        needs scheduling support and sees only the server's own users), so each
        calendar costs one REPORT. Servers place all-day events on UTC days in their
        reply (RFC 4791 leaves floating values to the server); a period that starts or
        ends at 00:00 UTC is therefore widened to the owner's local midnight, so an
        all-day absence blocks the whole local day.
        """
        result: dict[str, list[Interval]] = {}
        for person in people:
            url = self.calendar_url(person)
            periods = None
            if (url, "free-busy-query") not in self._refused:
                periods = self._freebusy(url, window)
                if periods is not None:
                    periods = [widen_to_local_days(p, person, window) for p in periods]
            if periods is None:
                periods = self._busy_from_events(person, url, window)
            result[person.email] = merge(periods)
        return result

    def _freebusy(self, url: str, window: Interval) -> list[Interval] | None:
        body = (
            f'<C:free-busy-query xmlns:C="{CALDAV}">'
            f'<C:time-range start="{stamp(window.start)}" end="{stamp(window.end)}"/>'
            "</C:free-busy-query>"
        )
        try:
            response = self._report(url, body, 1, accept=(400, 403, 405, 415, 501))
            refused = response.status >= 400
        except _Refused:
            refused = True
        if refused:
            self.log.info("%s refuses free-busy-query: computing busy time from events", url)
            self._refused.add((url, "free-busy-query"))
            return None
        cal = icalendar.Calendar.from_ical(response.raw)
        periods: list[Interval] = []
        for fb in cal.walk("VFREEBUSY"):
            values = fb.get("FREEBUSY", [])
            for prop in values if isinstance(values, list) else [values]:
                if str(prop.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                    continue
                for start, end_or_duration in prop.dt if isinstance(prop.dt, list) else [prop.dt]:
                    end = (
                        start + end_or_duration
                        if isinstance(end_or_duration, timedelta)
                        else end_or_duration
                    )
                    periods.append(Interval(start, end))
        return periods

    def _busy_from_events(self, person: Person, url: str, window: Interval) -> list[Interval]:
        periods: list[Interval] = []
        for obj in self._query(url, window):
            found, _ = self._expand(person, obj, window)
            periods.extend(
                Interval(max(e.start, window.start), min(e.end, window.end))
                for e in found
                if e.blocks_time and e.end > e.start
            )
        return periods

    # --- the agent's own events -----------------------------------------------------------

    def create(self, draft: EventDraft) -> Event:
        """PUT the meeting on the organizer's calendar; on 412 read back the existing one."""
        organizer = draft.organizer
        url = self.calendar_url(organizer) + quote(f"{draft.key}.ics")
        ics = draft_ics(draft, self.clock())
        headers = {"If-None-Match": "*", "Content-Type": "text/calendar; charset=utf-8"}
        response = self._send("PUT", url, ics, headers, accept=(412,))
        if response.status != 412:
            return master_event(organizer, ics)
        self.log.info("booking %s already on %s's calendar: using it", draft.key, organizer.email)
        found = self.find(organizer, draft.key)
        if found is None:
            raise PermanentError(f"{url} exists but is not the agent's booking {draft.key}")
        return found

    def _get(self, url: str) -> _Object | None:
        response = self._send("GET", url, accept=(404, 410))
        if response.status in (404, 410):
            return None
        etag = response.headers.get("ETag")
        return _Object(self._path(url, url), etag, response.raw)

    def _own(self, person: Person, key: str) -> tuple[str, _Object] | None:
        calendar = self.calendar_url(person)
        url = calendar + quote(f"{key}.ics")
        obj = self._get(url)
        if obj is None:
            # created elsewhere (e.g. copied by a client): search by the agent's tag
            body = (
                f'<C:calendar-query xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
                f'<C:prop-filter name="{KEY_PROPERTY}">'
                f'<C:text-match collation="i;octet">{escape(key)}</C:text-match>'
                "</C:prop-filter></C:comp-filter></C:comp-filter></C:filter>"
                "</C:calendar-query>"
            )
            found = self._objects(calendar, self._report(calendar, body, 1))
            if not found:
                return None
            obj = found[0]
            url = urljoin(calendar, quote(obj.path))
        return url, obj

    def find(self, person: Person, key: str) -> Event | None:
        """Return the agent's event with booking ``key`` on the person's calendar."""
        located = self._own(person, key)
        if located is None:
            return None
        _, obj = located
        event = master_event(person, obj.data)
        return event if event.key == key else None

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        """Move one of the agent's events to ``to``, raising its SEQUENCE.

        Attendees' answers were about the old time: they are reset to NEEDS-ACTION
        (RSVP requested), as calendar programs do when an organizer reschedules.
        """

        def change(vevent: Component) -> bool:
            zone = zone_of(vevent)
            for name, value in (("DTSTART", to.start), ("DTEND", to.end)):
                vevent.pop(name, None)
                vevent.add(name, value.astimezone(zone))
            vevent.pop("DURATION", None)
            organizer = str(vevent.get("ORGANIZER", "")).lower()
            values = vevent.get("ATTENDEE", [])
            for attendee in values if isinstance(values, list) else [values]:
                if str(attendee).lower() != organizer:
                    attendee.params["PARTSTAT"] = "NEEDS-ACTION"
                    attendee.params["RSVP"] = "TRUE"
            return True

        ensure_own(event)
        assert event.key is not None
        moved = self.rewrite_own(person, event.key, change)
        if moved is None:
            raise PermanentError(f"event {event.key} not found on {person.email}'s calendar")
        return moved

    def cancel(self, person: Person, event: Event) -> None:
        """Cancel one of the agent's events (STATUS:CANCELLED, SEQUENCE raised)."""

        def change(vevent: Component) -> bool:
            if str(vevent.get("STATUS", "")).upper() == "CANCELLED":
                return False
            for name, value in (("STATUS", "CANCELLED"), ("TRANSP", "TRANSPARENT")):
                vevent.pop(name, None)
                vevent.add(name, value)
            return True

        ensure_own(event)
        assert event.key is not None
        if self.rewrite_own(person, event.key, change) is None:
            self.log.info("event %s is no longer on %s's calendar", event.key, person.email)

    def rewrite_own(
        self, person: Person, key: str, change: Callable[[Component], bool], *, bump: bool = True
    ) -> Event | None:
        """Apply ``change`` to the agent's event ``key`` and store it if it changed.

        With ``bump`` the SEQUENCE is raised (a change by the organizer); recording an
        attendee's answer leaves it alone (RFC 5546). Return None when there is no such
        event; raise PermanentError when the object there is not the agent's.
        """
        located = self._own(person, key)
        if located is None:
            return None
        url, obj = located
        cal = icalendar.Calendar.from_ical(obj.data)
        masters = [v for v in cal.walk("VEVENT") if "RECURRENCE-ID" not in v]
        if len(masters) != 1 or str(masters[0].get(KEY_PROPERTY, "")) != key:
            raise PermanentError(f"refusing to change {url}: it is not the agent's event")
        vevent = masters[0]
        sequence = sequence_of(vevent) + (1 if bump else 0)
        if not change(vevent):
            return master_event(person, obj.data)
        vevent.pop("SEQUENCE", None)
        vevent.add("SEQUENCE", sequence)
        for name in ("DTSTAMP", "LAST-MODIFIED"):
            vevent.pop(name, None)
            vevent.add(name, self.clock().astimezone(UTC).replace(microsecond=0))
        add_timezones(cal, vevent.decoded("DTSTART"))
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if obj.etag:
            headers["If-Match"] = obj.etag
        response = self._send("PUT", url, cal.to_ical().decode(), headers, accept=(412,))
        if response.status == 412:
            raise TransientError(f"{url} changed while the agent was updating it; retry")
        return master_event(person, cal.to_ical().decode())


class _Refused(Exception):
    """A 401/403 answer the caller asked to handle itself."""

    def __init__(self, status: int, preconditions: Sequence[str]) -> None:
        super().__init__(status)
        self.status = status
        self.preconditions = list(preconditions)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    return dav_error.parse_retry_after(value)
