"""Signed, expiring tokens for links and cookies (itsdangerous), and the key that signs them.

The key is read from a file (0600, created with 32 random bytes when missing) and never
logged. Each kind of token has a salt of its own, so a token of one kind is never taken
for another. A token carries its own expiry, checked against the caller's clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from agent.core import files


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

    def make(
        self, data: Mapping[str, Any], now: datetime, valid: timedelta, nonce: str | None = None
    ) -> str:
        """A token for ``data`` until ``now + valid``; the same ``nonce`` (random by
        default) makes the same token, and marks the tokens used up together."""
        payload = {
            "d": dict(data),
            "n": nonce or secrets.token_urlsafe(12),
            "x": (now + valid).timestamp(),
        }
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


def pick_signer(key: bytes) -> Signer:
    """The signer of pick-a-time links: the tick makes them, the web app checks them."""
    return Signer(key, "cadence.pick")
