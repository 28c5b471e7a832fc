"""Access tokens kept between processes, in one private file per account.

Where Cadence ticks with ``cadence run --once`` (cron, a systemd timer), each tick is a
new process, and without this file each would ask the token endpoint again for every
person it acts as. The file holds each token with its expiry, keyed by who it acts as
and with which scopes; a token is used until it expires, by any process.

The file is a secret like the credentials: written with mode 0600 (a rewrite never
widens it), a file that group or others can read is refused (ConfigError), and no token
is ever logged. A file that cannot be parsed is ignored with a warning and replaced at
the next save: at worst every token is asked for again. Concurrent processes each write
through a temporary file renamed over the old one, so a reader sees a whole file, and
each save merges what is on disk first, keeping the later token of each key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.core import files
from agent.core.errors import ConfigError

VERSION = 1
#: seconds between saves while a process keeps running (``cadence serve``); a process
#: that ends saves when its connections close
SAVE_EVERY = 60.0

Entry = tuple[str, datetime]


class TokenCache:
    """Tokens by key (who, which scopes), read from ``path`` and saved back to it."""

    def __init__(self, path: Path, log: logging.Logger | None = None) -> None:
        self.path = path
        self.log = log or logging.getLogger("cadence.tokens")
        self._lock = threading.Lock()
        self._tokens: dict[str, Entry] = self._read(warn=True)
        self._dirty = False
        self._saved_at = time.monotonic()

    def _read(self, *, warn: bool) -> dict[str, Entry]:
        """The file's tokens; {} when it is missing or unreadable (with a warning).
        Raise ConfigError when group or others may read it."""
        if not self.path.exists():
            return {}
        raw = files.read_private(self.path, "token cache")
        try:
            return _parse(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if warn:
                self.log.warning(
                    "token cache %s is not a readable token cache (%s); ignoring it, "
                    "tokens are asked for again",
                    self.path,
                    type(exc).__name__,
                )
            return {}

    def get(self, key: str, now: datetime | None = None) -> Entry | None:
        """The token and its expiry kept for ``key``, unless it has expired."""
        with self._lock:
            found = self._tokens.get(key)
        if found is None or found[1] <= (now or datetime.now(UTC)):
            return None
        return found

    def put(self, key: str, token: str, expiry: datetime) -> None:
        """Keep a token just issued for ``key`` (expiry aware)."""
        with self._lock:
            if self._tokens.get(key) != (token, expiry):
                self._tokens[key] = (token, expiry)
                self._dirty = True

    def __len__(self) -> int:
        return len(self._tokens)

    def save_if_due(self) -> None:
        """Save when tokens changed and the last save is SAVE_EVERY seconds old."""
        if self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Merge the file's tokens with these and write them back atomically (0600),
        the expired ones left out; nothing when no token changed."""
        with self._lock:
            if not self._dirty:
                return
            now = datetime.now(UTC)
            try:
                on_disk = self._read(warn=False)
            except ConfigError:  # made readable by others meanwhile: rewritten 0600 below
                on_disk = {}
            merged = {k: v for k, v in on_disk.items() if v[1] > now}
            for key, (token, expiry) in self._tokens.items():
                if expiry > now and (key not in merged or merged[key][1] <= expiry):
                    merged[key] = (token, expiry)
            self._tokens = merged
            self._dirty = False
            self._saved_at = time.monotonic()
            data = {
                "version": VERSION,
                "tokens": {
                    k: {"token": t, "expiry": e.isoformat()} for k, (t, e) in sorted(merged.items())
                },
            }
            try:
                files.write_private(self.path, json.dumps(data, indent=0))
            except OSError as exc:
                # a cache: the tick goes on, the next process asks for tokens again
                self.log.warning("cannot write token cache %s: %s", self.path, exc.strerror)


def _parse(raw: bytes) -> dict[str, Entry]:
    data: Any = json.loads(raw)
    if data.get("version") != VERSION:
        raise ValueError("unknown version")
    out: dict[str, Entry] = {}
    for key, item in data["tokens"].items():
        expiry = datetime.fromisoformat(item["expiry"])
        if expiry.tzinfo is None:
            raise ValueError("naive expiry")
        token = item["token"]
        if not isinstance(token, str) or not isinstance(key, str):
            raise TypeError("token")
        out[key] = (token, expiry)
    return out
