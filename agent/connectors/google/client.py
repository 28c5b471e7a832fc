"""The HTTP side of one Google account: connections per thread, batches, and the one
place where errors are translated.

429, 5xx and 403 ``rateLimitExceeded``/``userRateLimitExceeded`` become TransientError
(retried by the engine's policy, honouring Retry-After); 403 ``quotaExceeded`` stops the
account for the rest of the tick; 410 on a sync token becomes CursorExpired; the rest
PermanentError.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from http.client import BadStatusLine, HTTPConnection, HTTPResponse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from agent.connectors.google.signin import SCOPE_READ, Auth, needed_scopes
from agent.core import pauses
from agent.core.errors import (
    CadenceError,
    ConfigError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from agent.core.tokencache import TokenCache

if TYPE_CHECKING:
    from agent.connectors import Context
    from agent.settings.config import GoogleAccount

BATCH_LIMIT = 50  # inner requests per HTTP batch (Google advises no more)
QUOTA_PAUSE = 600.0  # seconds an account rests after 403 quotaExceeded
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}


class GoogleFailure(PermanentError):
    """A refused request, with the HTTP status and Google's reason."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


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


#: OAuth errors of a token endpoint that is busy or failing for now (RFC 6749 4.1.2.1)
TOKEN_BUSY = ("temporarily_unavailable", "server_error", "internal_failure")


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


class _PerThread(threading.local):
    """A thread's own Http (kept for connection reuse) and the authorized wrapper of the
    last user it served; None until the thread first calls Google."""

    http: httplib2.Http | None = None
    authed: tuple[str, Any] | None = None


def credentials(ctx: Context, scopes: list[str] | None = None) -> Auth:
    """The account's credentials file, read and checked (mode, kind, scopes) with no
    network call; raise ConfigError naming the file."""
    account: GoogleAccount = ctx.account
    wanted = needed_scopes(ctx.settings) if scopes is None else scopes
    return Auth(ctx.settings.resolve(account.credentials), wanted)


def token_cache_path(ctx: Context) -> Path:
    """Where the account keeps its access tokens: ``token_cache``, or beside the store."""
    account: GoogleAccount = ctx.account
    if account.token_cache:
        return ctx.settings.resolve(account.token_cache)
    store = ctx.settings.store
    return store.with_name(f"{store.name}.{ctx.name}.tokens.json")


def token_cache(ctx: Context) -> TokenCache:
    """The account's token cache, read; raise ConfigError when others may read it."""
    return TokenCache(token_cache_path(ctx), ctx.log)


def ca_bundle(ctx: Context) -> str | None:
    """The account's CA bundle, if it names one; raise ConfigError when it is missing."""
    account: GoogleAccount = ctx.account
    ca = str(ctx.settings.resolve(account.ca_bundle)) if account.ca_bundle else None
    if ca and not Path(ca).is_file():
        raise ConfigError(f"account {ctx.name!r}: ca_bundle {ca} not found")
    return ca


class Client:
    """Both APIs of one account, the credentials, and the one place errors are translated."""

    def __init__(self, ctx: Context) -> None:
        account: GoogleAccount = ctx.account
        self.name = ctx.name
        self.retry = ctx.retry
        self.log = ctx.log
        scopes = needed_scopes(ctx.settings)
        self.read_scope = SCOPE_READ in scopes
        self.auth = credentials(ctx, scopes)
        if self.auth.delegated:  # a user's token is kept in its own file
            self.auth.tokens = token_cache(ctx)
        ca = ca_bundle(ctx)
        # httplib2 is not thread-safe: every thread that calls Google gets its own Http
        # (kept for connection reuse) and its own authorized wrappers; the engine bounds
        # how many threads call at once
        self._ca = ca
        self.timeout = account.timeout
        self._local = _PerThread()
        self._made: list[tuple[threading.Thread, httplib2.Http]] = []
        self._lock = threading.Lock()  # guards _made and the token file
        self.http = self._thread_http()
        self.paused_until = 0.0
        self.paused_why = ""
        #: per user, when the Retry-After this client was given ends (time.monotonic)
        self._told: dict[str, float] = {}
        calendar = _document("calendar", account.endpoints.calendar)
        self.calendar = build_from_document(calendar, http=self.http)
        gmail = _document("gmail", account.endpoints.gmail)
        self.gmail = build_from_document(gmail, http=self.http)
        # build() would leave batches on www.googleapis.com: name the URIs ourselves
        self.batch_uri = calendar["rootUrl"] + calendar["batchPath"]
        self.gmail_batch_uri = gmail["rootUrl"] + gmail["batchPath"]

    def _thread_http(self) -> httplib2.Http:
        http = self._local.http
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
        if self.auth.tokens is not None:
            self.auth.tokens.save_if_due()

    def close(self) -> None:
        if self.auth.tokens is not None:
            self.auth.tokens.save()
        with self._lock:
            made, self._made = self._made, []
        for _, http in made:
            http.close()
        self._local = _PerThread()

    def _guard(self) -> None:
        if time.monotonic() < self.paused_until:
            raise PermanentError(f"account {self.name!r} paused for this tick: {self.paused_why}")

    def execute(self, request: HttpRequest, user: str, *, idempotent: bool = True) -> Any:
        """Run one API request as ``user`` under the retry policy."""

        def once() -> Any:
            self._guard()
            self._hold(user)
            fresh = None if idempotent else _SendOnceHttp(ca_certs=self._ca, timeout=self.timeout)
            try:
                if fresh is None:
                    return request.execute(http=self._http(user), num_retries=0)
                with self._lock:
                    creds = self.auth.for_user(user)
                self._sign_in(creds, user)
                authed = google_auth_httplib2.AuthorizedHttp(creds, http=fresh)
                return request.execute(http=authed, num_retries=0)
            except Exception as exc:
                raise self.translate(exc, user) from exc
            finally:
                if fresh is not None:
                    fresh.close()
                self._save_refreshed()

        return self.retry.call(once, idempotent=idempotent)

    def _hold(self, user: str) -> None:
        """Wait out a Retry-After another worker of the task queue was given for this
        user (``agent.core.pauses``); one this client was given, the retry policy waits."""
        shared = pauses.remaining(user)
        if shared and shared > self._told.get(user, 0.0) - time.monotonic() + 1.0:
            self.retry.sleep(shared)

    def _sign_in(self, creds: Any, user: str) -> None:
        """Get a token before a call that is never repeated blind (a send), through this
        thread's connection: whatever fails here failed before the call was made."""
        if creds.valid:
            return
        try:
            creds.refresh(google_auth_httplib2.Request(self._thread_http()))
        except Exception as exc:
            error = self.translate(exc, user)
            if isinstance(error, TransientError) and error.maybe_done:
                error = TransientError(
                    f"token request for {user} failed: {error}",
                    retry_after=error.retry_after,
                    maybe_done=False,
                )
            raise error from exc

    def confirming(self, user: str) -> Any:
        """The narrow credentials that read ``user``'s sent headers, or None."""
        with self._lock:  # the credentials cache is shared by the threads
            return self.auth.confirming(user)

    def execute_with(self, request: HttpRequest, user: str, creds: Any) -> Any:
        """Run one read request as ``user`` with other credentials (a narrower scope)."""

        def once() -> Any:
            self._guard()
            authed = google_auth_httplib2.AuthorizedHttp(creds, http=self._thread_http())
            try:
                return request.execute(http=authed, num_retries=0)
            except Exception as exc:
                raise self.translate(exc, user) from exc

        return self.retry.call(once)

    def batch(
        self,
        requests: Sequence[HttpRequest],
        user: str,
        *,
        uri: str | None = None,
        missing_ok: bool = False,
    ) -> list[Any]:
        """Run requests in HTTP batches at the configured batch endpoint, in order; with
        ``missing_ok`` a part answered 404 gives None instead of failing the batch.

        Only the parts that failed transiently are sent again, after the longest
        Retry-After among them: at 1,000 relationships a 50-part batch rarely comes back
        clean under throttling, and sending it whole again would only throttle it more.
        """
        results: list[Any] = []
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = requests[start : start + BATCH_LIMIT]
            answers: dict[int, Any] = {}
            once = partial(
                self._batch_pending, chunk, answers, user, uri or self.batch_uri, missing_ok
            )
            self.retry.call(once)
            results.extend(answers.get(n) for n in range(len(chunk)))
        return results

    def _batch_pending(
        self,
        chunk: Sequence[HttpRequest],
        answers: dict[int, Any],
        user: str,
        uri: str,
        missing_ok: bool,
    ) -> None:
        """Send the parts of ``chunk`` not yet in ``answers``; raise for what is left."""
        pending = [n for n in range(len(chunk)) if n not in answers]
        got, errors = self._batch_once([chunk[n] for n in pending], user, uri)
        for i, n in enumerate(pending):
            if i in got:
                answers[n] = got[i]
        failed = {pending[i]: e for i, e in errors.items()}
        if missing_ok:
            for n, e in list(failed.items()):
                if isinstance(e, GoogleFailure) and e.status == 404:
                    answers[n] = None
                    del failed[n]
        if not failed:
            return
        found = list(failed.values())
        transient = [e for e in found if isinstance(e, TransientError)]
        if len(transient) < len(found):
            raise next(e for e in found if not isinstance(e, TransientError))
        # not before the longest Retry-After of the parts that go again
        raise max(transient, key=lambda e: e.retry_after or 0.0)

    def _batch_once(
        self, chunk: Sequence[HttpRequest], user: str, uri: str
    ) -> tuple[dict[int, Any], dict[int, CadenceError]]:
        """Send one HTTP batch; return the parts' answers and errors by position."""
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
        errors = {int(n): self.translate(exc, user) for n, exc in failures.items()}
        return {int(n): a for n, a in answers.items()}, errors

    def translate(self, exc: Exception, user: str) -> CadenceError:
        """Map a library or transport error to the connector error tree."""
        if isinstance(exc, CadenceError):
            return exc
        if isinstance(exc, HttpError):
            return self._http_error(exc, user)
        if isinstance(exc, google.auth.exceptions.RefreshError):
            # a token that was not issued means the API call was never made (maybe_done
            # False: even a send may go again); only an OAuth error answer is final
            answer = next((a for a in exc.args if isinstance(a, dict)), None)
            oauth_error = answer.get("error") if answer else None
            if exc.retryable or oauth_error in (None, *TOKEN_BUSY):
                return TransientError(f"token refresh for {user} failed: {exc}", maybe_done=False)
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
            return TransientError(f"token endpoint unreachable: {exc}", maybe_done=False)
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
        status, reason, message = error_details(exc)
        retry_after = _retry_after(exc.resp.get("retry-after"))
        what = f"Google {status} {reason or 'error'} for {user}: {message}"
        if status == 429 or (status == 403 and reason in RATE_REASONS):
            if retry_after:
                self._told[user] = time.monotonic() + retry_after
                pauses.pause(user, retry_after)  # and every worker of the queue
            return TransientError(what, retry_after=retry_after, maybe_done=False)
        if status == 503 and retry_after is not None:
            # a 503 that names a wait refuses the request (Gmail does so when it sheds
            # load): nothing was done, so even a send is tried again after the wait
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


def error_details(exc: HttpError) -> tuple[int, str, str]:
    """The status, the first error's reason and the message of Google's error answer."""
    status = int(exc.resp.status)
    reason, message = "", str(exc.reason or "")
    try:
        error = json.loads(exc.content)["error"]
        message = error.get("message") or message
        reason = (error.get("errors") or [{}])[0].get("reason", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return status, reason, message
