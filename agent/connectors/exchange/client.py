"""The EWS connection of one account and the one place exchangelib's errors are
translated (:func:`translate`, used by :meth:`Ews.call`).

exchangelib logs request headers at DEBUG, credentials included: they are redacted here
before any handler sees them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    Build,
    Configuration,
    Credentials,
    EWSTimeZone,
    FailFast,
    FaultTolerance,
    Mailbox,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar as CalendarFolder
from exchangelib.folders import Root
from exchangelib.properties import DistinguishedFolderId
from exchangelib.protocol import Protocol
from exchangelib.protocol import RetryPolicy as EwsRetryPolicy

from agent.core.errors import ConfigError, CursorExpired, PermanentError, TransientError
from agent.core.retry import RetryPolicy
from agent.settings.config import ExchangeAccount

log = logging.getLogger("cadence.exchange")
T = TypeVar("T")
VERSIONS = {
    "2013": Build(15, 0),
    "2013_sp1": Build(15, 0, 847),
    "2016": Build(15, 1),
    "2019": Build(15, 2),
}
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


def ca_file(account: ExchangeAccount, resolve: Callable[[str], Path]) -> Path | None:
    """The account's CA bundle, if it names one; raise ConfigError when it is no file."""
    if not account.ca_bundle:
        return None
    ca = resolve(account.ca_bundle)
    if not ca.is_file():
        raise ConfigError(f"exchange ca_bundle {ca} is not a file")
    return ca


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


class _Once(threading.local):
    """Per thread: whether exchangelib must send each request once (False until set)."""

    once = False


class _Tolerance(FaultTolerance):  # type: ignore[misc]
    """exchangelib's bounded back-off, except that a 401 is a login failure, not throttling,
    and that a request which may take effect twice (sending mail, creating a meeting) is
    never repeated by exchangelib: after a lost answer it cannot tell whether the first
    one worked, and would send or book again. Those fail fast, in this thread only, and
    Cadence's retry decides (it looks for the meeting first; it never resends)."""

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self._local = _Once()

    @property
    def fail_fast(self) -> bool:
        return self._local.once

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
        ca = ca_file(account, resolve)
        if ca is not None:
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
        return TransientError(text, retry_after=exc.wait)
    if isinstance(exc, ews_errors.ErrorExceededConnectionCount):
        # the account holds as many connections as its throttling policy lets it
        # (streaming ones: HangingConnectionLimit, 3 on Exchange Server by default)
        return TransientError(f"{text} (the account's limit of open connections)")
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


def check(results: Iterable[Any], what: str) -> list[Any]:
    """exchangelib returns per-item errors as values: raise the first one."""
    out = list(results)
    for r in out:
        if isinstance(r, Exception):
            raise translate(what, r)
    return out
