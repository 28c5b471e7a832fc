"""The interfaces every provider implements.

The errors they raise live in ``agent.core.errors`` and the retry policy they are handed
in ``agent.core.retry``, both leaf modules below every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent.core.errors import PermanentError
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
