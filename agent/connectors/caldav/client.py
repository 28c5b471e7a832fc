"""The transport of the caldav provider: the client, the one place HTTP outcomes become
Cadence errors (:meth:`Transport._send`), finding each person's calendar, and reading
calendar objects. The capabilities in ``sync``, ``busy`` and ``events`` build on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error

from agent.connectors.caldav.ics import stamp
from agent.connectors.caldav.replies import ReplyCollector
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import (
    Event,
    Interval,
    Person,
    Skipped,
)
from agent.core.retry import RetryPolicy
from agent.formats import ical

if TYPE_CHECKING:
    from caldav.response import DAVResponse


DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


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


@dataclass
class StoredObject:
    """One calendar object resource as read from the server."""

    path: str
    etag: str | None
    data: str


class Transport:
    """Requests to one CalDAV server, shared by every capability of the calendar."""

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
        ``Refused``, since the library raises for them); any other status of 400 or
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
                    raise Refused(exc.status or 403, exc.preconditions) from exc
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

    def _path(self, base: str, href: str) -> str:
        return unquote(urlsplit(urljoin(base, href)).path)

    def _query(self, url: str, span: Interval) -> list[StoredObject]:
        body = (
            f'<C:calendar-query xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{stamp(span.start)}" end="{stamp(span.end)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
        )
        return self._objects(url, self._report(url, body, 1))

    def _objects(self, url: str, response: DAVResponse) -> list[StoredObject]:
        objects = []
        for item in response.parse_calendar_query():
            if item.status == 404 or not item.calendar_data:
                continue
            objects.append(StoredObject(self._path(url, item.href), item.etag, item.calendar_data))
        return objects

    def _expand(
        self, person: Person, obj: StoredObject, span: Interval
    ) -> tuple[list[Event], list[Skipped]]:
        """Expand one object; a malformed object or event becomes a Skipped entry."""
        try:
            return ical.read_events(obj.data, person, span)
        except Exception as exc:  # not iCalendar at all: skip the object, keep syncing
            self.log.warning("skipping %s on %s: %s", obj.path, person.email, exc)
            return [], [Skipped(person.email, obj.path, f"{type(exc).__name__}: {exc}")]


class Refused(Exception):
    """A 401/403 answer the caller asked to handle itself."""

    def __init__(self, status: int, preconditions: Sequence[str]) -> None:
        super().__init__(status)
        self.status = status
        self.preconditions = list(preconditions)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    return dav_error.parse_retry_after(value)
