"""Google Workspace: Calendar API v3 for calendars, Gmail ``users.messages.send`` for mail.

With ``gmail.readonly`` (only when a program collects replies) the mailer also reads
replies to recaps from the employees' inboxes (:class:`GoogleReplyMailer`).

Two ways in, both from the account's ``credentials`` file (mode 0600):

* a service-account key with domain-wide delegation: the connector acts as each person
  (``subject`` = their email), so every calendar is read and written by its owner;
* an authorized-user token written by ``cadence auth google`` (:func:`authorize`): one
  person's consent; other people's calendars must be shared with them.

Every request goes to the configured endpoints (batch requests included), through one
place (:meth:`_Client.execute`) that translates errors: 429, 5xx and 403
``rateLimitExceeded``/``userRateLimitExceeded`` become TransientError (retried by the
engine's policy, honouring Retry-After); 403 ``quotaExceeded`` stops the account for the
rest of the tick; 410 on a sync token becomes CursorExpired; the rest PermanentError.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from email.message import EmailMessage
from email.utils import formatdate
from functools import partial
from http.client import BadStatusLine, HTTPConnection, HTTPResponse
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from agent.connectors.base import IncomingMail, ensure_own
from agent.core.errors import (
    CadenceError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from agent.core.model import (
    Attendee,
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
from agent.formats import mime

if TYPE_CHECKING:
    from agent.connectors import Context
    from agent.settings.config import GoogleAccount, Settings

SCOPE = "https://www.googleapis.com/auth/"
SCOPE_EVENTS = SCOPE + "calendar.events"
SCOPE_FREEBUSY = SCOPE + "calendar.freebusy"
SCOPE_SEND = SCOPE + "gmail.send"
SCOPE_READ = SCOPE + "gmail.readonly"

#: the extended property that marks the agent's events (keys ≤ 44 characters): private on
#: the organizer's copy (what find() filters on and what makes an event the agent's own),
#: shared so that attendees' copies are known as the same booking
TAG = "cadenceKey"
TAG_SERIES = "cadenceSeries"
FREEBUSY_BATCH = 50  # calendarExpansionMax
FREEBUSY_SPAN = timedelta(days=90)  # longer free/busy ranges are refused
BATCH_LIMIT = 50  # inner requests per HTTP batch (Google advises no more)
PAGE_SIZE = 2500
#: the partial response changes() asks for: what to_event() reads, and the paging tokens
LIST_FIELDS = (
    "nextPageToken,nextSyncToken,items(id,status,summary,description,location,start,end,"
    "eventType,attendees(email,responseStatus),extendedProperties,organizer(email),"
    "iCalUID,transparency,sequence)"
)
REPLY_QUERY = "in:inbox newer_than:30d"  # where replies to recaps are looked for
REPLY_PAGE = 500  # messages.list maxResults (Gmail's largest page)
QUOTA_PAUSE = 600.0  # seconds an account rests after 403 quotaExceeded
CONSENT_TIMEOUT = 600  # seconds to wait for the browser's answer
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
PARTSTAT = {
    "accepted": PartStat.ACCEPTED,
    "declined": PartStat.DECLINED,
    "tentative": PartStat.TENTATIVE,
    "needsAction": PartStat.NEEDS_ACTION,
}


def scopes_for(read_replies: bool = False) -> list[str]:
    """Return the least OAuth scopes Cadence needs (the read scope only to collect replies)."""
    scopes = [SCOPE_EVENTS, SCOPE_FREEBUSY, SCOPE_SEND]
    return [*scopes, SCOPE_READ] if read_replies else scopes


def needed_scopes(settings: Settings) -> list[str]:
    """Return the scopes a configuration needs: the read scope only if replies are collected."""
    return scopes_for(settings.collects_replies)


class GoogleFailure(PermanentError):
    """A refused request, with the HTTP status and Google's reason."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


# --- credentials ----------------------------------------------------------------------


def read_secret_json(path: Path) -> dict[str, Any]:
    """Read a JSON secret file, refusing one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path}: credentials file not found") from None
    if mode & 0o077:
        raise ConfigError(
            f"{path}: credentials must be readable by their owner only; run: chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON credentials file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def write_secret_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Auth:
    """Credentials per person: a delegated service account or one user's token."""

    def __init__(self, path: Path, scopes: Sequence[str]) -> None:
        self.path = path
        self.scopes = list(scopes)
        self.info = read_secret_json(path)
        self.kind = self.info.get("type")
        self._cache: dict[str, Credentials] = {}
        self._saved_token: str | None = None
        try:
            if self.kind == "service_account":
                load = service_account.Credentials.from_service_account_info
                self._base: Credentials = load(self.info, scopes=self.scopes)  # type: ignore[no-untyped-call]
            elif self.kind == "authorized_user":
                info = self.info
                expiry = info.get("expiry")
                self._base = user_credentials.Credentials(  # type: ignore[no-untyped-call]
                    token=info.get("token"),
                    refresh_token=info["refresh_token"],
                    # from_authorized_user_info() would reset token_uri to Google's
                    token_uri=info.get("token_uri") or "https://oauth2.googleapis.com/token",
                    client_id=info["client_id"],
                    client_secret=info["client_secret"],
                    scopes=info.get("scopes") or self.scopes,
                    expiry=(
                        datetime.fromisoformat(expiry.rstrip("Z")).replace(tzinfo=None)
                        if expiry
                        else None
                    ),
                )
                self._saved_token = info.get("token")
                missing = set(self.scopes) - set(info.get("scopes") or self.scopes)
                if missing:
                    raise ConfigError(
                        f"{path}: the token lacks {', '.join(sorted(missing))}; "
                        "run `cadence auth google` again"
                    )
            else:
                raise ConfigError(
                    f"{path}: expected a service-account key or an authorized-user token "
                    f"(type {self.kind!r})"
                )
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: incomplete {self.kind} credentials ({exc})") from None

    @property
    def delegated(self) -> bool:
        return self.kind == "service_account"

    def for_user(self, user: str) -> Credentials:
        """Credentials acting as ``user`` (domain-wide delegation) or the token's owner."""
        if not self.delegated:
            return self._base
        creds = self._cache.get(user)
        if creds is None:
            assert isinstance(self._base, service_account.Credentials)
            creds = self._base.with_subject(user)  # type: ignore[no-untyped-call]
            self._cache[user] = creds
        return creds

    def save_refreshed(self) -> None:
        """Write a refreshed user token back to its file (0600), so the next run reuses it."""
        creds = self._base
        if self.delegated or not isinstance(creds, user_credentials.Credentials):
            return
        if creds.token and creds.token != self._saved_token:
            data = dict(self.info)
            data["token"] = creds.token
            if creds.expiry:
                data["expiry"] = creds.expiry.isoformat() + "Z"
            if creds.refresh_token:
                data["refresh_token"] = creds.refresh_token
            write_secret_json(self.path, data)
            self._saved_token = creds.token


# --- the HTTP client --------------------------------------------------------------------


def _answered_once(base: type[HTTPConnection]) -> Any:
    class Connection(base):  # type: ignore[misc,valid-type]
        def getresponse(self) -> HTTPResponse:
            try:
                answer: HTTPResponse = super().getresponse()
            except BadStatusLine as exc:  # RemoteDisconnected among them
                # an OSError, which httplib2 raises instead of sending the request again
                raise ConnectionAbortedError(
                    f"connection closed without an answer ({exc})"
                ) from exc
            return answer

    return Connection


_ONCE = {
    "http": _answered_once(httplib2.HTTPConnectionWithTimeout),
    "https": _answered_once(httplib2.HTTPSConnectionWithTimeout),
}


class _SendOnceHttp(httplib2.Http):  # type: ignore[misc]
    """An Http that never sends a request twice.

    httplib2 sends a request again when its connection closes without an answer, taking
    the connection for a stale keep-alive one. Gmail may have sent the mail before the
    line dropped, so a call that is not idempotent goes through this Http, on a fresh
    connection, and a connection closed without an answer is a transient error that may
    hide an effect: the engine then asks whether the mail went out instead of sending it
    again.
    """

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> Any:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        kind = connection_type or _ONCE.get(scheme)
        return super().request(uri, method, body, headers, redirections, kind)


class _Unrefreshed:
    """An authorized Http that googleapiclient's batch cannot see the credentials of."""

    def __init__(self, authed: Any) -> None:
        self._authed = authed

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self._authed.request(*args, **kwargs)


def _document(name: str, endpoint: str) -> dict[str, Any]:
    """Load a shipped discovery document pointed at ``endpoint`` (batch URI included)."""
    text = get_static_doc(name, "v3" if name == "calendar" else "v1")
    if text is None:  # pragma: no cover - shipped with google-api-python-client
        raise ConfigError(f"the discovery document of {name} is missing")
    doc: dict[str, Any] = json.loads(text)
    if not endpoint.endswith("/"):
        endpoint += "/"
    service_path = doc["servicePath"]
    if service_path and endpoint.endswith(service_path):
        doc["rootUrl"] = endpoint[: -len(service_path)]
    else:
        doc["rootUrl"], doc["servicePath"] = endpoint, ""
    return doc


class _Client:
    """Both APIs of one account, the credentials, and the one place errors are translated."""

    def __init__(self, ctx: Context) -> None:
        account: GoogleAccount = ctx.account
        self.name = ctx.name
        self.retry = ctx.retry
        self.log = ctx.log
        scopes = needed_scopes(ctx.settings)
        self.read_scope = SCOPE_READ in scopes
        self.auth = _Auth(ctx.settings.resolve(account.credentials), scopes)
        ca = str(ctx.settings.resolve(account.ca_bundle)) if account.ca_bundle else None
        if ca and not Path(ca).is_file():
            raise ConfigError(f"account {ctx.name!r}: ca_bundle {ca} not found")
        # httplib2 is not thread-safe: every thread that calls Google gets its own Http
        # (kept for connection reuse) and its own authorized wrappers; the engine bounds
        # how many threads call at once
        self._ca = ca
        self.timeout = account.timeout
        self._local = threading.local()
        self._made: list[tuple[threading.Thread, httplib2.Http]] = []
        self._lock = threading.Lock()  # guards _made and the token file
        self.http = self._thread_http()
        self.paused_until = 0.0
        self.paused_why = ""
        calendar = _document("calendar", account.endpoints.calendar)
        self.calendar = build_from_document(calendar, http=self.http)
        gmail = _document("gmail", account.endpoints.gmail)
        self.gmail = build_from_document(gmail, http=self.http)
        # build() would leave batches on www.googleapis.com: name the URIs ourselves
        self.batch_uri = calendar["rootUrl"] + calendar["batchPath"]
        self.gmail_batch_uri = gmail["rootUrl"] + gmail["batchPath"]

    def _thread_http(self) -> httplib2.Http:
        http = getattr(self._local, "http", None)
        if http is None:
            http = httplib2.Http(ca_certs=self._ca, timeout=self.timeout)
            self._local.http, self._local.authed = http, None
            with self._lock:
                # the connections of threads that have ended are closed, not kept
                for thread, old in self._made:
                    if not thread.is_alive():
                        old.close()
                self._made = [(t, h) for t, h in self._made if t.is_alive()]
                self._made.append((threading.current_thread(), http))
        return http

    def _http(self, user: str) -> Any:
        http = self._thread_http()
        # the wrapper of the thread's last user only: kept for every user a thread
        # ever served, they grew with threads × people from tick to tick
        last = self._local.authed
        if last and last[0] == user:
            return last[1]
        with self._lock:  # for_user() fills a cache shared by the threads
            creds = self.auth.for_user(user)
        authed = google_auth_httplib2.AuthorizedHttp(creds, http=http)
        self._local.authed = (user, authed)
        return authed

    def _save_refreshed(self) -> None:
        with self._lock:
            self.auth.save_refreshed()

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for _, http in made:
            http.close()
        self._local = threading.local()

    def _guard(self) -> None:
        if time.monotonic() < self.paused_until:
            raise PermanentError(f"account {self.name!r} paused for this tick: {self.paused_why}")

    def execute(self, request: HttpRequest, user: str, *, idempotent: bool = True) -> Any:
        """Run one API request as ``user`` under the retry policy."""

        def once() -> Any:
            self._guard()
            fresh = None if idempotent else _SendOnceHttp(ca_certs=self._ca, timeout=self.timeout)
            try:
                if fresh is None:
                    return request.execute(http=self._http(user), num_retries=0)
                with self._lock:
                    creds = self.auth.for_user(user)
                authed = google_auth_httplib2.AuthorizedHttp(creds, http=fresh)
                return request.execute(http=authed, num_retries=0)
            except Exception as exc:
                raise self.translate(exc, user) from exc
            finally:
                if fresh is not None:
                    fresh.close()
                self._save_refreshed()

        return self.retry.call(once, idempotent=idempotent)

    def batch(
        self,
        requests: Sequence[HttpRequest],
        user: str,
        *,
        uri: str | None = None,
        missing_ok: bool = False,
    ) -> list[Any]:
        """Run requests in HTTP batches at the configured batch endpoint, in order; with
        ``missing_ok`` a part answered 404 gives None instead of failing the batch."""
        results: list[Any] = []
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = requests[start : start + BATCH_LIMIT]
            once = partial(self._batch_once, chunk, user, uri or self.batch_uri, missing_ok)
            results.extend(self.retry.call(once))
        return results

    def _batch_once(
        self, chunk: Sequence[HttpRequest], user: str, uri: str, missing_ok: bool
    ) -> list[Any]:
        self._guard()
        answers: dict[str, Any] = {}
        failures: dict[str, Exception] = {}

        def collect(request_id: str, response: Any, exception: Exception | None) -> None:
            if exception is not None:
                failures[request_id] = exception
            else:
                answers[request_id] = response

        try:
            authed = self._http(user)
            # googleapiclient refreshes a token itself (when it is invalid, or when parts
            # answer 401) through an Http of its own: without the account's ca_bundle and
            # timeout, and never closed. It finds no credentials behind _Unrefreshed, so
            # the token is refreshed here, through this thread's connection.
            refresh = partial(
                authed.credentials.refresh, google_auth_httplib2.Request(self._thread_http())
            )
            if not authed.credentials.valid:
                refresh()
            for fresh in (False, True):
                answers.clear()
                failures.clear()
                batch = BatchHttpRequest(callback=collect, batch_uri=uri)
                for n, request in enumerate(chunk):
                    batch.add(request, request_id=str(n))
                batch.execute(http=_Unrefreshed(authed))
                expired = any(
                    isinstance(e, HttpError) and int(e.resp.status) == 401
                    for e in failures.values()
                )
                if fresh or not expired:
                    break
                refresh()  # the token expired or was revoked early: a new one, once
        except Exception as exc:
            raise self.translate(exc, user) from exc
        finally:
            self._save_refreshed()
        errors = {n: self.translate(exc, user) for n, exc in failures.items()}
        if missing_ok:
            errors = {
                n: e
                for n, e in errors.items()
                if not (isinstance(e, GoogleFailure) and e.status == 404)
            }
        if errors:
            # transient trouble on any part retries the whole batch, not before the longest
            # Retry-After of its parts; the rest is final
            found = list(errors.values())
            transient = [e for e in found if isinstance(e, TransientError)]
            if transient:
                raise max(transient, key=lambda e: e.retry_after or 0.0)
            raise found[0]
        return [answers.get(str(n)) for n in range(len(chunk))]

    def translate(self, exc: Exception, user: str) -> CadenceError:
        """Map a library or transport error to the connector error tree."""
        if isinstance(exc, CadenceError):
            return exc
        if isinstance(exc, HttpError):
            return self._http_error(exc, user)
        if isinstance(exc, google.auth.exceptions.RefreshError):
            if getattr(exc, "retryable", False):
                return TransientError(f"token refresh for {user} failed: {exc}")
            hint = (
                "check domain-wide delegation of the service account's client id with "
                f"the scopes {' '.join(self.auth.scopes)}"
                if self.auth.delegated
                else "run `cadence auth google` again"
            )
            return PermanentError(f"Google refused a token for {user}: {exc}; {hint}")
        if isinstance(exc, google.auth.exceptions.TransportError):
            if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                return self.translate(exc.__cause__, user)
            return TransientError(f"token endpoint unreachable: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(
                f"TLS certificate not trusted ({exc.verify_message}); set ca_bundle for "
                f"account {self.name!r} if a proxy intercepts TLS"
            )
        if isinstance(exc, socket.timeout | TimeoutError):
            return TransientError(f"Google request timed out: {exc}")
        if isinstance(exc, httplib2.HttpLib2Error | OSError):
            return TransientError(f"Google unreachable: {exc}")
        raise exc

    def _http_error(self, exc: HttpError, user: str) -> CadenceError:
        status = int(exc.resp.status)
        reason, message = "", str(getattr(exc, "reason", "") or "")
        try:
            error = json.loads(exc.content)["error"]
            message = error.get("message") or message
            reason = (error.get("errors") or [{}])[0].get("reason", "")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        retry_after = _retry_after(exc.resp.get("retry-after"))
        what = f"Google {status} {reason or 'error'} for {user}: {message}"
        if status == 429 or (status == 403 and reason in RATE_REASONS):
            return TransientError(what, retry_after=retry_after, maybe_done=False)
        if status >= 500:
            return TransientError(what, retry_after=retry_after)
        if status == 403 and reason in QUOTA_REASONS:
            self.paused_until = time.monotonic() + QUOTA_PAUSE
            self.paused_why = what
            self.log.warning("account %s: %s; pausing it for this tick", self.name, what)
            return PermanentError(
                f"{what}. Google's usage limits for this account are exhausted; Cadence "
                "stops working for it this tick and tries again later (see the quotas in "
                "the Google Cloud console)"
            )
        if status == 410 and reason in ("fullSyncRequired", "updatedMinTooLongAgo"):
            return CursorExpired(what)
        return GoogleFailure(what, status, reason)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- mapping ------------------------------------------------------------------------------


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: dict[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    if "dateTime" in value:
        parsed = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(value.get("timeZone") or "UTC"))
        return parsed, False
    return datetime.combine(date.fromisoformat(value["date"]), clock(), zone), True


def to_event(person: Person, item: dict[str, Any]) -> Event:
    """Map a Calendar v3 event resource to an Event on ``person``'s calendar."""
    start, all_day = _parse_time(item["start"], person.zone)
    end, _ = _parse_time(item["end"], person.zone)
    kind = item.get("eventType", "default")
    attendees = tuple(
        Attendee(
            a["email"].lower(), PARTSTAT.get(a.get("responseStatus", ""), PartStat.NEEDS_ACTION)
        )
        for a in item.get("attendees", [])
        if a.get("email")
    )
    props = item.get("extendedProperties") or {}
    organizer = (item.get("organizer") or {}).get("email")
    key = (props.get("private") or {}).get(TAG)
    if key is None and organizer and organizer.lower() != person.email.lower():
        # an attendee's copy: the private tag stays with the organizer, the shared one
        # tells that this is the same booking
        key = (props.get("shared") or {}).get(TAG)
    return Event(
        owner=person.email,
        id=item["id"],
        title=item.get("summary", ""),
        start=start,
        end=end,
        uid=item.get("iCalUID", ""),
        all_day=all_day,
        cancelled=item.get("status") == "cancelled",
        transparent=item.get("transparency") == "transparent" or kind == "workingLocation",
        kind="outOfOffice" if kind == "outOfOffice" else "default",
        organizer=organizer.lower() if organizer else None,
        attendees=attendees,
        key=key,
        sequence=int(item.get("sequence", 0)),
        description=item.get("description", ""),
        location=item.get("location", ""),
    )


def _pieces(window: Interval, span: timedelta) -> Iterator[Interval]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + span)
        yield Interval(start, end)
        start = end


# --- the calendar -----------------------------------------------------------------------


class GoogleCalendar:
    """Calendar v3 for the people of one Google account."""

    sends_invitations = True
    concurrent_writes = True  # each thread has its own connection

    def __init__(self, client: _Client) -> None:
        self.c = client
        self.events = client.calendar.events()

    def close(self) -> None:
        self.c.close()

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Full sync of ``window`` (since=None) or the changes since a sync token."""
        params: dict[str, Any] = {
            "calendarId": person.email,
            "singleEvents": True,
            "maxResults": PAGE_SIZE,
            "fields": LIST_FIELDS,
        }
        if since is None:
            params.update(timeMin=_rfc3339(window.start), timeMax=_rfc3339(window.end))
        else:
            params["syncToken"] = since
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[Skipped] = []
        body: dict[str, Any] = {}
        page: str | None = None
        while True:
            extra = {"pageToken": page} if page else {}
            body = self.c.execute(self.events.list(**params, **extra), person.email)
            for item in body.get("items", []):
                ref = str(item.get("id", "?"))
                try:
                    if item.get("status") == "cancelled" and "start" not in item:
                        removed.append(item["id"])  # a deletion reported by id only
                        continue
                    event = to_event(person, item)
                except Exception as exc:  # one unreadable item never fails the sync
                    skipped.append(Skipped(person.email, ref, f"unreadable event: {exc!r}"))
                    continue
                if since is not None and not event.interval.overlaps(window):
                    removed.append(event.id)  # moved out of the window we keep
                else:
                    events.append(event)
            page = body.get("nextPageToken")
            if not page:
                break
        cursor = body.get("nextSyncToken")
        if not cursor:
            raise PermanentError(f"Google sent no sync token for {person.email}")
        return Changes(
            cursor=cursor,
            events=tuple(events),
            removed=tuple(removed),
            full=since is None,
            skipped=tuple(skipped),
        )

    def busy(self, people: Sequence[Person], window: Interval) -> dict[str, list[Interval]]:
        """Busy time of everyone through freebusy.query, 50 calendars per query."""
        result: dict[str, list[Interval]] = {p.email: [] for p in people}
        if not people:
            return result
        emails = list(result)
        requests = [
            self.c.calendar.freebusy().query(
                body={
                    "timeMin": _rfc3339(piece.start),
                    "timeMax": _rfc3339(piece.end),
                    "items": [{"id": e} for e in emails[i : i + FREEBUSY_BATCH]],
                }
            )
            for i in range(0, len(emails), FREEBUSY_BATCH)
            for piece in _pieces(window, FREEBUSY_SPAN)
        ]
        # with delegation any colleague's free/busy is visible to a person of the domain
        user = people[0].email
        if len(requests) == 1:
            answers = [self.c.execute(requests[0], user)]
        else:
            answers = self.c.batch(requests, user)
        by_lower = {e.lower(): e for e in emails}
        for answer in answers:
            for ident, cal in answer.get("calendars", {}).items():
                email_address = by_lower.get(ident.lower(), ident)
                if cal.get("errors"):
                    reasons = ", ".join(str(e.get("reason")) for e in cal["errors"])
                    raise PermanentError(f"free/busy of {email_address} unavailable: {reasons}")
                for span in cal.get("busy", []):
                    start, _ = _parse_time({"dateTime": span["start"]}, ZoneInfo("UTC"))
                    end, _ = _parse_time({"dateTime": span["end"]}, ZoneInfo("UTC"))
                    result.setdefault(email_address, []).append(Interval(start, end))
        return {e: sorted(spans) for e, spans in result.items()}

    def _body(self, draft: EventDraft) -> dict[str, Any]:
        zone = ZoneInfo(draft.timezone)
        body: dict[str, Any] = {
            "id": draft.key,
            "summary": draft.title,
            "description": draft.description,
            "start": {
                "dateTime": draft.start.astimezone(zone).isoformat(),
                "timeZone": draft.timezone,
            },
            "end": {"dateTime": draft.end.astimezone(zone).isoformat(), "timeZone": draft.timezone},
            "attendees": [
                {
                    "email": draft.organizer.email,
                    "displayName": draft.organizer.name,
                    "responseStatus": "accepted",
                },
                *({"email": p.email, "displayName": p.name} for p in draft.attendees),
            ],
            "extendedProperties": {
                "private": {TAG: draft.key, TAG_SERIES: draft.series},
                "shared": {TAG: draft.key},
            },
            "guestsCanModify": False,
            "reminders": {"useDefault": True},
        }
        if draft.conference == "auto":
            body["conferenceData"] = {
                "createRequest": {
                    "requestId": draft.key,
                    "conferenceSolutionKey": {"type": "hangoutsMeet"},
                }
            }
        return body

    def create(self, draft: EventDraft) -> Event:
        """Insert with the key as event id; a 409 means a retry: use (or restore) that event."""
        organizer = draft.organizer
        where = {"calendarId": organizer.email, "conferenceDataVersion": 1, "sendUpdates": "all"}
        body = self._body(draft)
        try:
            item = self.c.execute(self.events.insert(body=body, **where), organizer.email)
        except GoogleFailure as exc:
            if exc.status != 409:
                raise
            item = self.c.execute(
                self.events.get(calendarId=organizer.email, eventId=draft.key), organizer.email
            )
            private = (item.get("extendedProperties") or {}).get("private") or {}
            cancelled = item.get("status") == "cancelled"
            # a deleted event may come back with little more than its id; the id is the
            # key's hash, so it is ours all the same, and the patch tags it again
            if private.get(TAG) != draft.key and not cancelled:
                raise PermanentError(
                    f"event id {draft.key} on {organizer.email} exists and is not the agent's"
                ) from exc
            if cancelled:
                # deleted events keep their id: restore by patch, never re-insert
                restore = {k: v for k, v in body.items() if k not in ("id", "conferenceData")}
                restore["status"] = "confirmed"
                item = self.c.execute(
                    self.events.patch(eventId=draft.key, body=restore, **where), organizer.email
                )
        return to_event(organizer, item)

    def find(self, person: Person, key: str) -> Event | None:
        """The agent's event tagged ``key`` on the person's calendar, if there is one."""
        body = self.c.execute(
            self.events.list(
                calendarId=person.email,
                privateExtendedProperty=f"{TAG}={key}",
                singleEvents=True,
                maxResults=10,
            ),
            person.email,
        )
        for item in body.get("items", []):
            if item.get("status") != "cancelled":
                return to_event(person, item)
        return None

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        ensure_own(event)
        zone = person.zone
        body = {
            "start": {
                "dateTime": to.start.astimezone(zone).isoformat(),
                "timeZone": person.timezone,
            },
            "end": {"dateTime": to.end.astimezone(zone).isoformat(), "timeZone": person.timezone},
        }
        item = self.c.execute(
            self.events.patch(
                calendarId=person.email,
                eventId=event.id,
                body=body,
                conferenceDataVersion=1,
                sendUpdates="all",
            ),
            person.email,
        )
        return to_event(person, item)

    def cancel(self, person: Person, event: Event) -> None:
        ensure_own(event)
        try:
            self.c.execute(
                self.events.delete(calendarId=person.email, eventId=event.id, sendUpdates="all"),
                person.email,
            )
        except GoogleFailure as exc:
            if exc.status not in (404, 410):  # already gone: cancelling again is done
                raise


# --- mail -------------------------------------------------------------------------------


def _angle(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def build_message(mail: OutgoingMail, mailbox: str) -> EmailMessage:
    """Build the RFC 5322 message from ``mailbox`` (replies still reach ``mail.sender``)."""
    own = mailbox.lower() == mail.sender.lower()
    try:
        msg = mime.build(mail if own else replace(mail, sender=mailbox))
    except ValueError as exc:
        raise PermanentError(f"mail {mail.key}: {exc}") from None
    if not own:
        msg["Reply-To"] = mime.clean_header(mail.sender)
    if "Date" not in msg:
        msg["Date"] = formatdate(usegmt=True)
    return msg


class GoogleMailer:
    """Gmail ``users.messages.send`` from each sender's own mailbox (or the account's)."""

    def __init__(self, client: _Client, sender: str | None) -> None:
        self.c = client
        self.sender = sender
        self.messages = client.gmail.users().messages()
        self.threads: dict[str, str] = {}  # Message-ID → Gmail thread id, for recaps

    def close(self) -> None:
        self.c.close()

    def _lookup(self, mailbox: str, message_id: str) -> dict[str, Any] | None:
        """Find a sent message by Message-ID (needs the read scope)."""
        body = self.c.execute(
            self.messages.list(userId="me", q=f"rfc822msgid:{message_id.strip('<>')}"),
            mailbox,
        )
        found = body.get("messages") or []
        return found[0] if found else None

    def was_sent(self, mail: OutgoingMail) -> bool | None:
        """With the read scope Gmail can tell; without it, nobody can."""
        if not self.c.read_scope:
            return None
        return self._lookup(self.sender or mail.sender, _angle(mail.message_id)) is not None

    def send(self, mail: OutgoingMail) -> SentMail:
        mailbox = self.sender or mail.sender
        message_id = _angle(mail.message_id)
        if self.c.read_scope:
            # with read access Gmail can tell whether a crash came after sending
            earlier = self._lookup(mailbox, message_id)
            if earlier:
                self.threads[message_id] = earlier["threadId"]
                return SentMail(mail.key, message_id, f"gmail:{mailbox}/{earlier['id']}", True)
        msg = build_message(mail, mailbox)
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(msg.as_bytes()).decode()}
        if mail.in_reply_to:
            parent = _angle(mail.in_reply_to)
            thread = self.threads.get(parent)
            if thread is None and self.c.read_scope:
                earlier = self._lookup(mailbox, parent)
                thread = earlier["threadId"] if earlier else None
            if thread:
                body["threadId"] = thread
        sent = self.c.execute(self.messages.send(userId="me", body=body), mailbox, idempotent=False)
        self.threads[message_id] = sent["threadId"]
        return SentMail(mail.key, message_id, f"gmail:{mailbox}/{sent['id']}")


class GoogleReplyMailer(GoogleMailer):
    """A Gmail mailer that also reads replies to recaps (``gmail.readonly`` granted).

    Only this class has :meth:`replies`, and :func:`connect` makes one only when the
    configuration asks for the read scope: a mailer without it is then no ``ReplyReader``,
    and the engine says that replies cannot be read instead of silently finding none.
    """

    def __init__(self, client: _Client, sender: str | None, mailboxes: Sequence[str]) -> None:
        super().__init__(client, sender)
        self.mailboxes = list(mailboxes)
        self.seen: dict[str, set[str]] = {m: set() for m in self.mailboxes}

    def replies(self) -> list[IncomingMail]:
        """Inbox messages of the last 30 days not returned before, from each mailbox.

        One ``messages.list`` per mailbox (more only past 500 messages), then
        ``messages.get(format=raw)`` for each message this mailer has not returned yet:
        alone, or in HTTP batches of 50 when there are more (after a restart). A message
        deleted between the list and the get (404) is passed over.
        """
        found: list[IncomingMail] = []
        for mailbox in self.mailboxes:
            seen = self.seen.setdefault(mailbox, set())
            listed = self._inbox(mailbox)
            seen &= set(listed)  # forget what aged out of the query: the set stays small
            new = [i for i in listed if i not in seen]
            gets = [self.messages.get(userId="me", id=i, format="raw") for i in new]
            if len(gets) == 1:
                try:
                    bodies = [self.c.execute(gets[0], mailbox)]
                except GoogleFailure as exc:
                    if exc.status != 404:
                        raise
                    bodies = [None]
            else:
                bodies = self.c.batch(gets, mailbox, uri=self.c.gmail_batch_uri, missing_ok=True)
            for ident, body in zip(new, bodies, strict=True):
                if body is not None:
                    raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
                    found.append(IncomingMail(f"gmail:{mailbox}/{ident}", raw))
                seen.add(ident)
        return found

    def _inbox(self, mailbox: str) -> list[str]:
        ids: list[str] = []
        page: str | None = None
        while True:
            extra = {"pageToken": page} if page else {}
            body = self.c.execute(
                self.messages.list(userId="me", q=REPLY_QUERY, maxResults=REPLY_PAGE, **extra),
                mailbox,
            )
            ids.extend(m["id"] for m in body.get("messages") or [])
            page = body.get("nextPageToken")
            if not page:
                return ids


def reply_mailboxes(ctx: Context, delegated: bool, sender: str | None) -> list[str]:
    """The mailboxes replies arrive in: those of the account's employees whose program
    collects replies (replies go to ``mail.sender``, the employee, also when the account
    sends from a shared ``sender``). A user token reads its owner's mailbox only."""
    if not delegated:
        return [sender or "me"]
    return list(ctx.settings.reply_accounts.get(ctx.name, ()))


def connect(ctx: Context) -> tuple[GoogleCalendar, GoogleMailer]:
    """Open the Calendar and Gmail clients of one Google account."""
    client = _Client(ctx)
    sender = ctx.account.sender
    if client.read_scope:
        mailboxes = reply_mailboxes(ctx, client.auth.delegated, sender)
        return GoogleCalendar(client), GoogleReplyMailer(client, sender, mailboxes)
    return GoogleCalendar(client), GoogleMailer(client, sender)


# --- user consent -------------------------------------------------------------------------


def authorize(
    client_secrets: Path,
    token_file: Path,
    scopes: Sequence[str],
    console: bool,
    *,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    open_browser: bool = True,
) -> Path:
    """Run Google's installed-app consent flow and store the token (0600) at ``token_file``.

    With ``console`` (a headless server) the user opens the printed address on any
    machine, consents, and pastes back the address the browser was sent to; otherwise a
    browser opens and a one-off server on a free loopback port receives the answer.
    Raise ConfigError for unusable client secrets, PermanentError when Google refuses.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow, WSGITimeoutError

    read_secret_json(client_secrets)
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=list(scopes))
    except ValueError as exc:
        raise ConfigError(
            f"{client_secrets}: not an OAuth client of type Desktop app ({exc})"
        ) from None
    try:
        if console:
            flow.redirect_uri = "http://127.0.0.1:1/"
            url, _ = flow.authorization_url(access_type="offline", prompt="consent")
            say(f"Open this address in a browser, sign in and allow access:\n\n    {url}\n")
            say("The browser then fails to load a page on 127.0.0.1; copy that page's address.")
            answer = ask("Address (or code): ").strip()
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer).query)
            if "error" in query:
                raise PermanentError(f"Google refused consent: {query['error'][0]}")
            code = query["code"][0] if "code" in query else answer
            flow.fetch_token(code=code)
            creds = flow.credentials
        else:
            creds = flow.run_local_server(
                host="127.0.0.1",
                port=0,
                open_browser=open_browser,
                access_type="offline",
                prompt="consent",
                authorization_prompt_message="Opening {url} in your browser to ask for consent",
                success_message="Cadence is authorized; you may close this window.",
                timeout_seconds=CONSENT_TIMEOUT,
            )
    except (KeyError, ValueError, WSGITimeoutError) as exc:
        raise PermanentError(f"consent failed: {exc}") from exc
    except Exception as exc:  # oauthlib errors carry no common base worth importing
        if type(exc).__module__.startswith("oauthlib"):
            raise PermanentError(f"Google refused the token request: {exc}") from exc
        raise
    finally:
        flow.oauth2session.close()  # its connection pool may keep a watcher thread
    if not creds.refresh_token:
        raise PermanentError("Google returned no refresh token; revoke access and run again")
    data = json.loads(creds.to_json())
    data["type"] = "authorized_user"
    data["token_uri"] = flow.client_config["token_uri"]
    write_secret_json(token_file, data)
    return token_file
