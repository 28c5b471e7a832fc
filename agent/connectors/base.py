"""The interfaces every provider implements, and the errors and retry policy they share.

Errors::

    CadenceError
    ├── ConfigError        bad configuration or plan; the CLI exits 2
    ├── TransientError     worth retrying (throttling, 5xx, timeouts); carries retry_after
    ├── PermanentError     auth, forbidden, not found, bad request; never retried
    └── CursorExpired      a sync cursor the provider no longer accepts; resync in full

Each connector translates its library's exceptions into these at its boundary, with
``raise ... from exc``, so the engine never needs to know a vendor's error classes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from agent.core.model import (
    Changes,
    Event,
    EventDraft,
    Interval,
    OutgoingMail,
    Person,
    SentMail,
    SyncToken,
)

T = TypeVar("T")

#: called with the seconds of every pause before a retry (the service counts them)
WAIT_LISTENERS: list[Callable[[float], None]] = []


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


@runtime_checkable
class Calendar(Protocol):
    """Read and write the calendars of the people on one account.

    A connector whose ``find`` and ``create`` may be called from several threads at
    once says so with a class attribute ``concurrent_writes = True``; the book step then
    makes a sweep's events concurrently. Without it they are made one by one.
    """

    #: True when the provider itself sends invitations to attendees on create/update.
    sends_invitations: bool

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Return what changed on the person's calendar since ``since`` (None: everything).

        Raise CursorExpired when ``since`` is no longer accepted.
        """
        ...

    def busy(self, people: Sequence[Person], window: Interval) -> dict[str, list[Interval]]:
        """Return busy intervals per email for everyone in ``people``, batched."""
        ...

    def create(self, draft: EventDraft) -> Event:
        """Put the meeting on the organizer's and attendees' calendars; idempotent on key."""
        ...

    def find(self, person: Person, key: str) -> Event | None:
        """Return the agent's event with booking ``key`` on the person's calendar."""
        ...

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        """Move one of the agent's own events to ``to`` (same event, higher SEQUENCE)."""
        ...

    def cancel(self, person: Person, event: Event) -> None:
        """Cancel one of the agent's own events; raise PermanentError for any other."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Mailer(Protocol):
    """Send mail as the people on one account."""

    def send(self, mail: OutgoingMail) -> SentMail:
        """Send ``mail``; idempotent on ``mail.key`` where the provider allows it.

        A mailer that can look at what it sent may also offer ``was_sent(mail) -> bool |
        None``; the engine asks it after an interrupted send (None: cannot tell).
        """
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class IncomingMail:
    """One received message, as raw RFC 5322 bytes, and where it was read from."""

    ref: str
    raw: bytes


@runtime_checkable
class ReplyReader(Protocol):
    """A mailer that can also read replies (opt-in: it needs a read scope)."""

    def replies(self) -> Sequence[IncomingMail]:
        """Return the messages in the mailbox that may answer Cadence's mail; the
        caller matches them to its own Message-IDs and remembers which it has read."""
        ...


def ensure_own(event: Event) -> None:
    """Raise PermanentError unless the agent created ``event`` (it carries a key)."""
    if not event.key:
        raise PermanentError(
            f"refusing to change event {event.id!r} on {event.owner}: the agent did not create it"
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter that honours ``retry_after``.

    Inject ``RetryPolicy.none()`` in tests; production uses the defaults.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_total: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.cap, self.base * 2**attempt) * (0.5 + self.rand() / 2)
        return float(max(backoff, retry_after or 0.0))

    def call(self, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run ``fn``, retrying TransientError within the policy's bounds.

        A call that is not ``idempotent`` (sending mail) is retried only after errors
        that certainly had no effect, so a retry can never send twice.
        """
        waited = 0.0
        for attempt in range(self.attempts):
            try:
                return fn()
            except TransientError as exc:
                if attempt + 1 >= self.attempts or (exc.maybe_done and not idempotent):
                    raise
                pause = self.delay(attempt, exc.retry_after)
                if waited + pause > self.max_total:
                    raise
                waited += pause
                for listener in WAIT_LISTENERS:
                    listener(pause)
                self.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
