"""Sign-in to Google: the scopes Cadence asks for, the credentials file, and user consent.

Two ways in, both from the account's ``credentials`` file (mode 0600): a service-account
key with domain-wide delegation (each person acts as themselves), or an authorized-user
token written by ``cadence auth google`` (:func:`authorize`).
"""

from __future__ import annotations

import json
import stat
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from agent.core import files
from agent.core.errors import (
    ConfigError,
    PermanentError,
)
from agent.core.tokencache import TokenCache

if TYPE_CHECKING:
    from agent.settings.config import Settings


SCOPE = "https://www.googleapis.com/auth/"
SCOPE_EVENTS = SCOPE + "calendar.events"
SCOPE_FREEBUSY = SCOPE + "calendar.freebusy"
SCOPE_SEND = SCOPE + "gmail.send"
SCOPE_READ = SCOPE + "gmail.readonly"
#: Optional, never asked for by Cadence's sign-in: where an administrator grants it (to
#: the delegation, or a token carries it), an ambiguous send is confirmed by the
#: Message-IDs of the sender's recent SENT mail instead of being marked uncertain.
SCOPE_METADATA = SCOPE + "gmail.metadata"
CONSENT_TIMEOUT = 600  # seconds to wait for the browser's answer


def scopes_for(read_replies: bool = False) -> list[str]:
    """Return the least OAuth scopes Cadence needs (the read scope only to collect replies)."""
    scopes = [SCOPE_EVENTS, SCOPE_FREEBUSY, SCOPE_SEND]
    return [*scopes, SCOPE_READ] if read_replies else scopes


def needed_scopes(settings: Settings) -> list[str]:
    """Return the scopes a configuration needs: the read scope only if replies are collected."""
    return scopes_for(settings.collects_replies)


def read_secret_json(path: Path) -> dict[str, Any]:
    """Read a JSON secret file, refusing one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path}: credentials file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the credentials file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: the credentials must be a file")
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
    """Write ``data`` to ``path`` atomically: 0600, or narrower if the file already is."""
    files.write_private(path, json.dumps(data, indent=2))


class _Delegated(service_account.Credentials):
    """A service account's credentials that report each token they get.

    with_subject() and with_scopes() copy through ``self.__class__``, so the copies are
    of this class too; Auth sets ``issued`` on each copy it hands out.
    """

    issued: Callable[[_Delegated], None] | None = None

    def refresh(self, request: Any) -> None:
        super().refresh(request)  # type: ignore[no-untyped-call]
        if self.issued is not None:
            self.issued(self)


class Auth:
    """Credentials per person: a delegated service account or one user's token.

    With ``tokens``, a delegated person's access token is taken from that cache while it
    lasts, and each token issued is put there (for the next process).
    """

    def __init__(self, path: Path, scopes: Sequence[str], tokens: TokenCache | None = None) -> None:
        self.path = path
        self.scopes = list(scopes)
        self.info = read_secret_json(path)
        self.kind = self.info.get("type")
        self.tokens = tokens
        self._cache: dict[str, Credentials] = {}
        self._saved_token: str | None = None
        try:
            if self.kind == "service_account":
                load = _Delegated.from_service_account_info
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
            assert isinstance(self._base, _Delegated)
            creds = self._kept(self._base.with_subject(user))  # type: ignore[no-untyped-call]
            self._cache[user] = creds
        return creds

    def _key(self, creds: _Delegated) -> str:
        """Whom a delegated token acts for, and with what: its key in the token cache."""
        return " ".join(
            (
                creds.service_account_email,
                str(self.info.get("private_key_id", "")),
                str(creds._subject),
                ",".join(sorted(creds.scopes or ())),
                str(creds._token_uri),
            )
        )

    def _kept(self, creds: _Delegated) -> _Delegated:
        """``creds`` with the cached token it may still use, reporting the ones it gets."""
        if self.tokens is None:
            return creds
        found = self.tokens.get(self._key(creds))
        if found is not None:
            # google-auth compares a naive UTC expiry with its own clock
            creds.token = found[0]
            creds.expiry = found[1].astimezone(UTC).replace(tzinfo=None)
        creds.issued = self._issued
        return creds

    def _issued(self, creds: _Delegated) -> None:
        if self.tokens is not None and creds.token and creds.expiry:
            self.tokens.put(self._key(creds), creds.token, creds.expiry.replace(tzinfo=UTC))

    def confirming(self, user: str) -> Credentials | None:
        """Credentials that may read ``user``'s SENT headers and no more (gmail.metadata),
        or None when the token was not granted a scope that reads them. A delegation
        without gmail.metadata fails at the token request, which the caller takes as
        "cannot tell"."""
        if not self.delegated:
            granted = set(self.info.get("scopes") or ())
            return self._base if granted & {SCOPE_METADATA, SCOPE_READ} else None
        key = f"{user}\n{SCOPE_METADATA}"
        creds = self._cache.get(key)
        if creds is None:
            assert isinstance(self._base, _Delegated)
            narrow = self._base.with_scopes([SCOPE_METADATA])
            creds = self._kept(narrow.with_subject(user))
            self._cache[key] = creds
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
