"""The one exception tree of Cadence, at the bottom of the import graph.

::

    CadenceError
    ├── ConfigError        bad configuration or plan; the CLI exits 2
    ├── TransientError     worth retrying (throttling, 5xx, timeouts); carries retry_after
    ├── PermanentError     auth, forbidden, not found, bad request; never retried
    └── CursorExpired      a sync cursor the provider no longer accepts; resync in full

Each connector translates its library's exceptions into these at its boundary, with
``raise ... from exc``, so the engine never needs to know a vendor's error classes.
"""

from __future__ import annotations

from collections.abc import Sequence


class CadenceError(Exception):
    """Base of every error Cadence raises on purpose."""


class ConfigError(CadenceError):
    """Configuration or plan errors; ``errors`` holds every ``file:line: key: message``."""

    def __init__(self, errors: Sequence[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class TransientError(CadenceError):
    """A failure that may pass: retry after ``retry_after`` seconds if given.

    ``maybe_done`` is False only when the provider certainly did nothing (throttling:
    429, rate-limit 403); a 5xx, a timeout or a dropped connection may hide an effect.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, maybe_done: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_done = maybe_done


class PermanentError(CadenceError):
    """A failure that retrying will not fix."""


class CursorExpired(CadenceError):
    """The provider no longer accepts the sync cursor; the engine resyncs in full."""
