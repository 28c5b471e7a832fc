"""The Microsoft Graph transport: one HTTP session, MSAL tokens, and Graph's errors.

- client credentials (a secret from the environment, or a certificate file) for an
  organization, or a single person's MSAL token cache filled by
  :func:`signin.device_code_login` (``cadence auth microsoft``) and written atomically
  with mode 0600;
- ``ca_bundle`` honoured even when REQUESTS_CA_BUNDLE is set;
- every Graph answer translated in one place, :meth:`Graph.check`;
- ``$batch`` of up to 20 requests, a throttled inner request retried on its own.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from agent.core import files, pauses
from agent.core.errors import ConfigError, CursorExpired, PermanentError, TransientError
from agent.core.retry import RetryPolicy
from agent.settings.config import MicrosoftAccount

#: seconds MSAL answers a failed token request from its cache (confidential clients)
MSAL_HOLD = 5.0
#: Delegated scopes for the single-person flow; Cadence reads no mail unless a program
#: collects replies to recaps, which adds READ_SCOPE.
DELEGATED_SCOPES = ("Calendars.ReadWrite", "Mail.Send", "MailboxSettings.Read")
#: Reading a reply's MIME needs Mail.Read: Mail.ReadBasic withholds the body.
READ_SCOPE = "Mail.Read"
MAX_BATCH = 20
PREFER_UTC = 'outlook.timezone="UTC"'
RESYNC_CODES = {
    "syncstatenotfound",
    "resyncrequired",
    "syncstateinvalid",
    "errorinvalidsyncstatedata",
}
_MICROSOFT_HOSTS = frozenset(WELL_KNOWN_AUTHORITY_HOSTS) | {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
}


class _Session(requests.Session):
    """A session whose ``verify`` is not overridden by REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE,
    and whose requests (MSAL's too) give up after the account's ``timeout``.

    requests lets those variables win over ``Session.verify`` unless ``verify`` is
    passed on each call (psf/requests#3829); MSAL calls ``get``/``post`` without it.
    """

    timeout = 30.0

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(account: MicrosoftAccount, resolve: Callable[[str], Path]) -> _Session:
    session = _Session()
    session.timeout = account.timeout
    session.headers["User-Agent"] = "cadence-agent"
    if account.ca_bundle:
        bundle = resolve(account.ca_bundle)
        if not bundle.is_file():
            raise ConfigError(f"ca_bundle {bundle} does not exist")
        session.verify = str(bundle)
    return session


def private_file(path: Path, what: str) -> bytes:
    """Read a secret file, refusing one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is readable by other users; restrict it with: chmod 600 {path}"
        )
    return path.read_bytes()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: 0600, or narrower if the file already is."""
    files.write_private(path, text)


def authority_url(account: MicrosoftAccount) -> str:
    return f"{account.authority.rstrip('/')}/{account.tenant}"


def discovery_kwargs(account: MicrosoftAccount) -> dict[str, Any]:
    host = urllib.parse.urlsplit(account.authority).hostname or ""
    return {} if host in _MICROSOFT_HOSTS else {"instance_discovery": False}


def _certificate_credential(path: Path) -> dict[str, str]:
    pem = private_file(path, "client_certificate").decode("ascii", errors="replace")
    key = re.search(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----", pem, re.S
    )
    cert = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    if not key or not cert:
        raise ConfigError(
            f"client_certificate {path} must hold the PEM private key and the PEM certificate"
        )
    return {"private_key": key.group(0), "public_certificate": cert.group(0)}


def delegated(account: MicrosoftAccount) -> bool:
    """Whether the account signs one person in (no secret or certificate of an app)."""
    return not (account.client_secret_env or account.client_certificate)


def token_cache(
    account: MicrosoftAccount, resolve: Callable[[str], Path]
) -> tuple[Path | None, msal.SerializableTokenCache]:
    """The account's token cache file and its contents; raise ConfigError when others
    can read it, or when a single person's sign-in has not written it yet."""
    path = resolve(account.token_cache) if account.token_cache else None
    if path is not None and delegated(account) and not path.exists():
        raise ConfigError(
            f"token_cache {path} does not exist: sign in first with `cadence auth microsoft`"
        )
    return path, load_cache(path)


def certificate(account: MicrosoftAccount, resolve: Callable[[str], Path]) -> dict[str, str]:
    """The app's certificate credential from ``client_certificate`` (mode 0600)."""
    return _certificate_credential(resolve(account.client_certificate or ""))


def load_cache(path: Path | None) -> msal.SerializableTokenCache:
    cache = msal.SerializableTokenCache()
    if path is not None and path.exists():
        cache.deserialize(private_file(path, "token_cache").decode())
    return cache


class Graph:
    """Tokens, one HTTP session, and the translation of Graph errors."""

    def __init__(
        self,
        account: MicrosoftAccount,
        resolve: Callable[[str], Path],
        retry: RetryPolicy,
        environ: Mapping[str, str] | None = None,
        *,
        read_mail: bool = False,
    ) -> None:
        env = os.environ if environ is None else environ
        self.account = account
        self.retry = retry
        self.base = account.graph.rstrip("/") + "/v1.0"
        self.session = make_session(account, resolve)
        self.cache_path, self.cache = token_cache(account, resolve)
        self.credential: Any = None
        if account.client_secret_env or account.client_certificate:
            if account.client_certificate:
                self.credential = certificate(account, resolve)
            else:
                name = account.client_secret_env or ""
                self.credential = env.get(name)
                if not self.credential:
                    raise ConfigError(f"environment variable {name} (client_secret_env) is not set")
            self.scopes = [account.graph.rstrip("/") + "/.default"]
        elif self.cache_path is not None:
            self.scopes = delegated_scopes(account, read_mail=read_mail)
        else:
            raise ConfigError(
                "microsoft account needs client_secret_env or client_certificate "
                "(organization), or token_cache filled by `cadence auth microsoft`"
            )
        self._app: Any = None
        # the sync step reads calendars from several threads: one of them builds the MSAL
        # application and fetches a token, the others then find it in the cache
        self._token_lock = threading.Lock()
        #: per mailbox, when Graph's Retry-After lets us call it again (time.monotonic),
        #: shared by every thread: only ever pushed later, never cleared by a success
        self._not_before: dict[str, float] = {}
        #: per mailbox, the not-before a thread has already slept out
        self._served: dict[str, float] = {}
        self._hold_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def signed_in_user(self) -> str | None:
        """The single person's username under a delegated sign-in; None for an app."""
        if self.credential is not None:
            return None
        self.token()  # builds the application and fails clearly without a sign-in
        accounts = self._application().get_accounts()
        return str(accounts[0].get("username", "")).lower() if accounts else None

    def _application(self) -> Any:
        """Build the MSAL application on first use: it fetches the OpenID configuration."""
        if self._app is None:
            common: dict[str, Any] = {
                "authority": authority_url(self.account),
                "token_cache": self.cache,
                "http_client": self.session,
                **discovery_kwargs(self.account),
            }
            if self.credential is not None:
                self._app = msal.ConfidentialClientApplication(
                    self.account.client_id, client_credential=self.credential, **common
                )
            else:
                self._app = msal.PublicClientApplication(self.account.client_id, **common)
        return self._app

    def token(self) -> str:
        with self._token_lock:
            return self._token()

    def _token(self) -> str:
        """Fetch or reuse the access token. A sign-in that fails for now raises a
        TransientError that did nothing (``maybe_done`` False): the call it was for was
        never made, so even a send may go again."""
        try:
            app = self._application()
            if self.credential is not None:
                result = app.acquire_token_for_client(self.scopes)
            else:
                accounts = app.get_accounts()
                result = (
                    app.acquire_token_silent(self.scopes, account=accounts[0]) if accounts else None
                )
                if not result:
                    raise PermanentError(
                        "no usable Microsoft sign-in in the token cache; "
                        "run: cadence auth microsoft"
                    )
        except requests.exceptions.SSLError as exc:
            raise PermanentError(
                f"TLS verification failed for {self.account.authority}; "
                "if a proxy re-signs traffic, set ca_bundle"
            ) from exc
        except requests.RequestException as exc:
            raise TransientError(
                f"token request failed: {type(exc).__name__}", maybe_done=False
            ) from exc
        except msal.exceptions.MsalServiceError as exc:
            # a 5xx from the identity platform; MSAL answers the same for a few seconds
            # without asking again (its throttling cache), so this tick's calls for the
            # account fail now and the next tick signs in afresh
            raise TransientError(f"token request failed: {exc}", maybe_done=False) from exc
        except json.JSONDecodeError as exc:  # a gateway's error page instead of an answer
            raise TransientError(
                f"Microsoft sign-in at {self.account.authority} answered no JSON",
                maybe_done=False,
            ) from exc
        except ValueError as exc:  # MSAL: the authority's OpenID configuration is unusable
            raise PermanentError(f"Microsoft sign-in at {self.account.authority}: {exc}") from exc
        if self.cache_path is not None and self.cache.has_state_changed:
            write_private(self.cache_path, self.cache.serialize())
        if "access_token" not in result:
            error = str(result.get("error", "unknown"))
            # the description may quote request details, never the secret itself
            detail = str(result.get("error_description", "")).splitlines()[0:1]
            message = f"token request refused: {error} {' '.join(detail)}".strip()
            if error in ("temporarily_unavailable", "server_error"):
                raise TransientError(message, maybe_done=False)
            raise PermanentError(message)
        return str(result["access_token"])

    def _forget(self, token: str) -> None:
        """Remove a refused access token from MSAL's cache, so that token() fetches a
        new one (or finds the one another thread fetched meanwhile)."""
        with self._token_lock:
            kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
            stale = [at for at in self.cache.search(kind) if at.get("secret") == token]
            for at in stale:
                self.cache.remove_at(at)

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base}{path}"

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        held_until: float | None = None,
    ) -> requests.Response:
        """One request, with retries; raise the translated error. ``held_until`` is a
        not-before of the mailbox that the caller has already waited out."""

        mailbox = _mailbox(path)
        refreshed = False
        # the not-before this call has already waited out: the caller's (a $batch that
        # slept for its inner answer) or, between attempts, the retry policy's pause
        waited = held_until

        def attempt() -> requests.Response:
            nonlocal refreshed, waited
            token = self.token()
            hdrs = {"Authorization": f"Bearer {token}", "Prefer": PREFER_UTC}
            hdrs.update(headers or {})
            # a mailbox that asked to wait is left alone until then, by every thread;
            # checked right before each request, since another thread may have been
            # told to wait while this one was sleeping or fetching a token
            self.hold(mailbox, waited)
            try:
                resp = self.session.request(
                    method, self.url(path), params=params, json=json_body, data=data, headers=hdrs
                )
                arrived = time.monotonic()
            except requests.exceptions.SSLError as exc:
                raise PermanentError(
                    f"TLS verification failed for {self.base}; if a proxy re-signs traffic, "
                    "set ca_bundle"
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"Graph {method} failed: {type(exc).__name__}") from exc
            except requests.RequestException as exc:
                raise PermanentError(f"Graph {method} failed: {exc}") from exc
            if resp.status_code == 401 and not refreshed:
                # the token expired or was revoked before the expiry MSAL keeps: drop it,
                # fetch a new one and repeat the call, once (a 401 did nothing)
                refreshed = True
                self._forget(token)
                return attempt()
            try:
                self.check(resp.status_code, resp.headers, _body(resp), f"{method} {_short(path)}")
            except TransientError as exc:
                if exc.retry_after and mailbox:
                    # the retry policy pauses at least retry_after before the next
                    # attempt: this wait is covered, a longer one set by another is not
                    waited = arrived + exc.retry_after
                    self.defer(mailbox, waited)
                raise
            answer: requests.Response = resp
            return answer

        return self.retry.call(attempt, idempotent=idempotent)

    def defer(self, mailbox: str, until: float) -> None:
        """Let no thread call ``mailbox`` before ``until`` (time.monotonic; counted from
        when the answer arrived); a later not-before already set stays."""
        with self._hold_lock:
            self._not_before[mailbox] = max(until, self._not_before.get(mailbox, 0.0))
        pauses.pause(mailbox, until - time.monotonic())  # and every worker of the queue

    def hold(self, mailbox: str, waited: float | None = None) -> None:
        """Sleep until ``mailbox`` may be called again; ``waited`` is a not-before the
        caller has already slept for. A not-before that some thread has slept out is
        over for all (time has passed; with a test's recorded sleep it has not)."""
        if not mailbox:
            return
        shared = pauses.remaining(mailbox)  # told to another worker of the queue
        with self._hold_lock:
            local = self._not_before.get(mailbox, 0.0)
        if shared and time.monotonic() + shared > local + 1.0:
            # (a second's slack: this process's own pause comes back from Redis rounded)
            with self._hold_lock:
                self._not_before[mailbox] = time.monotonic() + shared
        while True:
            with self._hold_lock:
                until = self._not_before.get(mailbox)
                now = time.monotonic()
                if until is None:
                    return
                if until <= now:
                    del self._not_before[mailbox]  # over: forget it
                    self._served.pop(mailbox, None)
                    return
                if until == waited:
                    self._served[mailbox] = until
                if until == self._served.get(mailbox):
                    return
            self.retry.sleep(until - now)
            waited = until  # another thread may push it later meanwhile: look again

    @staticmethod
    def check(status: int, headers: Mapping[str, str], body: Any, what: str) -> None:
        """Translate a Graph answer into Cadence's errors."""
        if status < 400:
            return
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = str(error.get("code", "")) if isinstance(error, dict) else str(error)
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        text = f"Graph {what}: {status} {code} {message}".strip()
        if status == 410 or code.lower() in RESYNC_CODES:
            raise CursorExpired(text)
        if status == 429:
            raise TransientError(text, retry_after=_retry_after(headers), maybe_done=False)
        retry_after = _retry_after(headers)
        if status == 503 and retry_after is not None:
            # a refusal that names a wait: nothing was done, a send may go again after it
            raise TransientError(text, retry_after=retry_after, maybe_done=False)
        if status >= 500:
            raise TransientError(text, retry_after=retry_after)
        raise PermanentError(text)

    def batch(self, requests_: Sequence[dict[str, Any]]) -> list[Any]:
        """Run requests through ``$batch`` (20 at a time); return their bodies in order.

        A throttled inner request is retried on its own, once its mailbox's longest
        Retry-After in the batch's answer has passed (other requests to that mailbox in
        the same batch may have been given a longer one than its own).
        """
        out: list[Any] = [None] * len(requests_)
        for first in range(0, len(requests_), MAX_BATCH):
            chunk = list(enumerate(requests_[first : first + MAX_BATCH], start=first))
            body = {"requests": [{"id": str(i), **r} for i, r in chunk]}
            answer = self.send("POST", "/$batch", json_body=body).json()
            arrived = time.monotonic()
            by_id = {str(r.get("id")): r for r in answer.get("responses", [])}
            again: list[tuple[int, dict[str, Any]]] = []
            waits: dict[str, float] = {}  # per mailbox, the longest Retry-After
            for i, request in chunk:
                r = by_id.get(str(i))
                if r is None:
                    raise PermanentError(f"Graph $batch lost request {i}")
                try:
                    self.check(int(r["status"]), r.get("headers") or {}, r.get("body"), "$batch")
                    out[i] = r.get("body")
                except TransientError as exc:
                    mailbox = _mailbox(request["url"])
                    waits[mailbox] = max(waits.get(mailbox, 0.0), exc.retry_after or 0.0)
                    again.append((i, request))
            # every thread leaves a throttled mailbox alone, not only this batch
            held = {m: arrived + w for m, w in waits.items() if m and w > 0}
            for mailbox, until in held.items():
                self.defer(mailbox, until)
            slept = 0.0  # since the answer
            for i, request in again:
                mailbox = _mailbox(request["url"])
                pause = waits[mailbox] - slept
                if pause > 0:
                    self.retry.sleep(pause)
                    slept += pause
                resp = self.send(
                    request["method"],
                    request["url"],
                    json_body=request.get("body"),
                    headers=request.get("headers"),
                    held_until=held.get(mailbox),
                )
                out[i] = _body(resp)
        return out


def delegated_scopes(account: MicrosoftAccount, *, read_mail: bool = False) -> list[str]:
    """The least scopes a single person's sign-in needs, on the configured Graph host
    (with Mail.Read only when replies to recaps are collected)."""
    host = account.graph.rstrip("/")
    names = [*DELEGATED_SCOPES, READ_SCOPE] if read_mail else list(DELEGATED_SCOPES)
    prefix = "" if host == "https://graph.microsoft.com" else host + "/"
    return [prefix + n for n in names]


def _body(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return {"error": {"code": "NotJson", "message": resp.text[:200]}}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _mailbox(path: str) -> str:
    found = re.search(r"/users/([^/?]+)", urllib.parse.urlsplit(path).path)
    return urllib.parse.unquote(found.group(1)).lower() if found else ""


def _short(path: str) -> str:
    return urllib.parse.urlsplit(path).path.rsplit("/v1.0", 1)[-1]
