"""Signed tokens for sessions and links, CSRF tokens, and the sign-in rate limit.

One key signs everything: it is read from the ``web.secret`` file (0600, created with
32 random bytes when missing) and never logged. Each kind of token has a salt of its own,
so a sign-in link is never taken for a session cookie or a pick-a-time link. Tokens
carry their own expiry, checked against the app's clock (so tests can move it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from agent.core import files

SESSION_COOKIE = "cadence_session"
CSRF_COOKIE = "cadence_csrf"
CSRF_FIELD = "csrf"


def load_key(path: Path) -> bytes:
    """The signing key in ``path``; create it (0600) when missing.

    Raises ConfigError when the file is readable by others.
    """
    if files.create_private(path):
        files.write_private(path, secrets.token_hex(32))
    key = files.read_private(path, "web secret").strip()
    if len(key) < 32:
        files.write_private(path, secrets.token_hex(32))
        key = files.read_private(path, "web secret").strip()
    return key


@dataclass(frozen=True)
class Token:
    """What a valid token said: its payload (``data``), its nonce and its expiry."""

    data: Mapping[str, Any]
    nonce: str
    expires: datetime


class Signer:
    """Make and check expiring tokens of one kind (``salt``)."""

    def __init__(self, key: bytes, salt: str) -> None:
        self._s = URLSafeSerializer(key, salt=salt)

    def make(self, data: Mapping[str, Any], now: datetime, valid: timedelta) -> str:
        payload = {"d": dict(data), "n": secrets.token_urlsafe(12), "x": (now + valid).timestamp()}
        return str(self._s.dumps(payload))

    def check(self, token: str, now: datetime) -> Token | None:
        """The token's content, or None when it is forged, damaged or expired."""
        try:
            payload = self._s.loads(token)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("d"), dict):
            return None
        try:
            expires = datetime.fromtimestamp(float(payload["x"]), tz=now.tzinfo)
        except (KeyError, TypeError, ValueError):
            return None
        if expires <= now:
            return None
        return Token(payload["d"], str(payload["n"]), expires)


class Keys:
    """The signers of the web app, all from one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.session = Signer(key, "cadence.session")
        self.signin = Signer(key, "cadence.signin")
        self.pick = Signer(key, "cadence.pick")

    def csrf(self, cookie: str) -> str:
        """The CSRF token that goes with a browser's CSRF cookie (a signed double submit:
        a forged form on another site cannot read the cookie, so cannot make the token)."""
        return hmac.new(self._key, f"csrf:{cookie}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.csrf(cookie), token)


class RateLimit:
    """At most ``limit`` tries per key in any ``window`` (a sliding window, in memory).

    Thread-safe; keys are forgotten once their window has passed.
    """

    def __init__(self, limit: int, window: timedelta) -> None:
        self.limit, self.window = limit, window
        self._tries: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: datetime) -> bool:
        """Count one try; False when it is over the limit (it is not counted then)."""
        with self._lock:
            tries = self._tries.setdefault(key, deque())
            while tries and tries[0] <= now - self.window:
                tries.popleft()
            if len(tries) >= self.limit:
                return False
            tries.append(now)
            for stale in [k for k, v in self._tries.items() if not v]:
                del self._tries[stale]
            return True
