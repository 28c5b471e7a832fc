"""The web app's keys (sessions, sign-in and pick-a-time links), CSRF tokens, and the
sign-in rate limit.

One key signs everything: it is read from the ``web.secret`` file (``tokens.load_key``).
Each kind of token has a salt of its own, so a sign-in link is never taken for a session
cookie or a pick-a-time link. Tokens carry their own expiry, checked against the app's
clock (so tests can move it).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import deque
from datetime import datetime, timedelta

from agent.core.tokens import Signer, Token, load_key, pick_signer

__all__ = ["Keys", "RateLimit", "Signer", "Token", "load_key"]

SESSION_COOKIE = "cadence_session"
CSRF_COOKIE = "cadence_csrf"
CSRF_FIELD = "csrf"


class Keys:
    """The signers of the web app, all from one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.session = Signer(key, "cadence.session")
        self.signin = Signer(key, "cadence.signin")
        self.pick = pick_signer(key)

    def derived(self, purpose: str) -> str:
        """A key of its own for ``purpose`` (another library's signed cookie), from the
        one key, so that replacing ``web.secret`` voids it too."""
        return hmac.new(self._key, f"derived:{purpose}".encode(), hashlib.sha256).hexdigest()

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
