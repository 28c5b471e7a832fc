"""Google Workspace through the Admin SDK Directory API: users, managers, who is in.

A service account with domain-wide delegation acts as an administrator (``subject``),
with the read-only scopes and no more. ``users.list`` (500 a page) gives each user's
``relations`` (type ``manager``: the manager's email), ``addresses`` (country code) and
``languages``; a group's ``members.list`` with ``includeDerivedMembership`` (200 a
page) gives who is in, through nested groups. Suspended and archived users are left
out, as people who left.

The Directory API has no delta for users, so every read is full (``Read.full``): the
sync compares it with the last one. The client is google-api-python-client's, built
from the discovery document it ships (``admin``, ``directory_v1``), so no request
fetches a document from Google.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from agent.connectors.directory import DirectoryContext, Read
from agent.connectors.google.client import error_details
from agent.connectors.google.signin import SCOPE, Auth
from agent.core.directory import Entry
from agent.core.errors import CadenceError, ConfigError, PermanentError, TransientError

SCOPES = (
    SCOPE + "admin.directory.user.readonly",
    SCOPE + "admin.directory.group.member.readonly",
)
USER_FIELDS = (
    "nextPageToken,users(id,primaryEmail,name/fullName,relations,addresses,languages,"
    "suspended,archived)"
)
MEMBER_FIELDS = "nextPageToken,members(email,type,status)"
_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def read(source: Any, ctx: DirectoryContext, cursor: str | None = None) -> Read:
    """Read every user of the customer, and the group's members when one is named."""
    account = ctx.account(source.account, "google")
    resolve = ctx.resolve
    auth = Auth(resolve(account.credentials), SCOPES)
    if not auth.delegated:
        raise ConfigError(
            f"the google directory needs a service-account key with domain-wide delegation; "
            f"{account.credentials} is a user's token"
        )
    ca = str(resolve(account.ca_bundle)) if account.ca_bundle else None
    if ca and not Path(ca).is_file():
        raise ConfigError(f"account {source.account!r}: ca_bundle {ca} not found")
    http = httplib2.Http(ca_certs=ca, timeout=account.timeout)
    try:
        authed = google_auth_httplib2.AuthorizedHttp(auth.for_user(source.subject), http=http)
        service = build(
            "admin",
            "directory_v1",
            http=authed,
            static_discovery=True,
            client_options={"api_endpoint": source.endpoint},
        )
        reader = _Reader(ctx, source.subject, scopes=SCOPES)
        members = _members(reader, service, source.group) if source.group else None
        entries = []
        for user in reader.items(
            lambda token: service.users().list(
                customer=source.customer,
                projection="full",
                viewType="admin_view",
                maxResults=500,
                pageToken=token,
                fields=USER_FIELDS,
            ),
            "users",
        ):
            e = _entry(user, members, ctx)
            if e is not None:
                entries.append(e)
        return Read(entries, full=True, requests=reader.requests)
    finally:
        http.close()


class _Reader:
    """The calls of one read, counted, retried and translated."""

    def __init__(self, ctx: DirectoryContext, subject: str, scopes: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.subject = subject
        self.scopes = scopes
        self.requests = 0

    def items(self, request: Callable[[str | None], Any], key: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing, following ``nextPageToken``."""
        token: str | None = None
        while True:
            page = self.call(request(token))
            yield from page.get(key) or []
            token = page.get("nextPageToken")
            if not token:
                return

    def call(self, request: Any) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            self.requests += 1
            try:
                answer: dict[str, Any] = request.execute(num_retries=0)
                return answer
            except Exception as exc:
                raise self.translate(exc) from exc

        return self.ctx.retry.call(once)

    def translate(self, exc: Exception) -> CadenceError:
        """Google's answer or a transport failure as Cadence's errors, on one line."""
        if isinstance(exc, CadenceError):
            return exc
        if isinstance(exc, HttpError):
            status, reason, message = error_details(exc)
            what = f"Google directory {status} {reason or 'error'} as {self.subject}: {message}"
            if status == 429 or (status == 403 and "rateLimit" in reason):
                return TransientError(what, retry_after=_seconds(exc.resp.get("retry-after")))
            if status >= 500:
                return TransientError(what)
            if status in (401, 403):
                return PermanentError(
                    f"{what}; {self.subject} must be an administrator who may read users and groups"
                )
            return PermanentError(what)
        if isinstance(exc, google.auth.exceptions.RefreshError):
            if exc.retryable:
                return TransientError(f"token refresh for {self.subject} failed: {exc}")
            return PermanentError(
                f"Google refused a token for {self.subject}: {exc}; check the domain-wide "
                f"delegation of the service account's client id with the scopes "
                f"{' '.join(self.scopes)}"
            )
        if isinstance(exc, google.auth.exceptions.TransportError):
            return TransientError(f"Google token endpoint unreachable: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(
                f"TLS certificate not trusted ({exc.verify_message}); set ca_bundle on the account"
            )
        if isinstance(exc, socket.timeout | TimeoutError | httplib2.HttpLib2Error | OSError):
            return TransientError(f"Google directory unreachable: {exc}")
        raise exc


def _members(reader: _Reader, service: Any, group: str) -> set[str]:
    """The addresses of the users in ``group``, nested groups' members included."""
    found = reader.items(
        lambda token: service.members().list(
            groupKey=group,
            includeDerivedMembership=True,
            maxResults=200,
            pageToken=token,
            fields=MEMBER_FIELDS,
        ),
        "members",
    )
    return {
        str(m.get("email", "")).lower()
        for m in found
        if m.get("type") == "USER" and m.get("status", "ACTIVE") == "ACTIVE"
    }


def _entry(user: dict[str, Any], members: set[str] | None, ctx: DirectoryContext) -> Entry | None:
    email = str(user.get("primaryEmail") or "").strip().lower()
    if not _ADDRESS.match(email):
        ctx.log.warning("Google user %s has no usable address; skipped", user.get("id", "?"))
        return None
    if user.get("suspended") or user.get("archived"):
        return None
    managers = [
        str(r.get("value") or "").strip().lower()
        for r in _list(user.get("relations"))
        if r.get("type") == "manager"
    ]
    manager = next((m for m in managers if _ADDRESS.match(m)), None)
    if managers and manager is None:
        ctx.log.warning("Google user %s: manager %r is not an address", email, managers[0])
    return Entry(
        email=email,
        name=str((user.get("name") or {}).get("fullName") or ""),
        manager=manager,
        ref=str(user.get("id") or "") or None,
        member=email in members if members is not None else True,
        country=_country(_list(user.get("addresses"))),
        language=_language(_list(user.get("languages"))),
    )


def _list(value: Any) -> list[dict[str, Any]]:
    """A repeated field ("type": "any" in the discovery document): dicts only."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _country(addresses: list[dict[str, Any]]) -> str | None:
    """The country code of the primary address, else of a work address, else any."""
    ranked = sorted(addresses, key=lambda a: (not a.get("primary"), a.get("type") != "work"))
    for a in ranked:
        code = str(a.get("countryCode") or "")
        if _COUNTRY.match(code):
            return code.upper()
    return None


def _language(languages: list[dict[str, Any]]) -> str | None:
    """The preferred language's code, else the first one given."""
    codes = [lang for lang in languages if lang.get("languageCode")]
    preferred = [lang for lang in codes if lang.get("preference") == "preferred"]
    chosen = (preferred or codes)[:1]
    return str(chosen[0]["languageCode"]) if chosen else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
