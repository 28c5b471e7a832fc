"""What a tick decides to do: typed actions, each with its idempotency key and reason.

The planner (``agent.rules.planning``) returns these; the executor (``agent.tick.executor``)
carries them out, and ``cadence plan`` prints them. An action holds everything the
executor needs, so the executor decides nothing: it writes the pending row, calls the
connector and completes the row.

::

    Action
    ├── Book       make a new event for a due series (a new key, or a rebooking)
    ├── Move       move one of the agent's own events to a new slot
    ├── Accept     take a move made by hand as the booking's new time
    ├── Cancel     cancel one of the agent's own events (its reporting line ended)
    ├── Send       send one mail: invitation, agenda, recap, pick-a-time, updated recap
    └── Note       a decision not to act now (no slot, held back, deferred, skipped)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from agent.core.model import Event, EventDraft, Interval, OutgoingMail, Person, Relationship
from agent.formats import plain


@dataclass(frozen=True)
class Action:
    """One thing to do for one relationship; ``key`` makes doing it twice harmless."""

    #: book, move, accept; a mail's kind (invite, agenda ...); a note's (book, skip ...)
    kind: ClassVar[str] = ""

    key: str
    relationship: str
    series: str | None
    reason: str

    def describe(self) -> dict[str, Any]:
        """A plain description for ``cadence plan --json`` and the comparison with a run."""
        return {
            "kind": self.kind,
            "acts": acts(self),
            "key": self.key,
            "relationship": self.relationship,
            "series": self.series,
            "reason": self.reason,
            **self.details(),
        }

    def details(self) -> dict[str, Any]:
        """What a kind of action adds to its description."""
        return {}


@dataclass(frozen=True, kw_only=True)
class Book(Action):
    """Create the event of ``draft`` (found instead, if an interrupted tick made it)."""

    kind: ClassVar[str] = "book"

    draft: EventDraft
    due: datetime
    moves: int = 0
    #: bookings of one wave go out together; a relationship's next series waits a wave
    wave: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {
            "start": self.data.get("start"),
            "end": self.data.get("end"),
            "title": self.draft.title,
        }


@dataclass(frozen=True, kw_only=True)
class Move(Action):
    """Move the agent's own ``event`` to ``slot``; ``moves`` is the count after it."""

    kind: ClassVar[str] = "move"

    organizer: Person
    event: Event
    slot: Interval
    moves: int
    data: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {"start": self.data.get("to")}


@dataclass(frozen=True, kw_only=True)
class Accept(Action):
    """Record a meeting moved by hand as the booking's time; it uses up the moves."""

    kind: ClassVar[str] = "accept"

    slot: Interval
    moves: int


@dataclass(frozen=True, kw_only=True)
class Cancel(Action):
    """Cancel the agent's own ``event`` (None: not on the calendar any more)."""

    kind: ClassVar[str] = "cancel"

    organizer: Person
    event: Event | None
    #: the ended line's key: its note waits until every cancellation went through
    line: str

    def details(self) -> dict[str, Any]:
        return {"start": self.event.start.isoformat() if self.event else None}


@dataclass(frozen=True, kw_only=True)
class Send(Action):
    """Send ``mail`` through the ``account``'s mailer, with its outbox row around it.

    ``kind`` is invite, agenda, recap, ask or update; ``key`` is the outbox key.
    """

    kind: str  # type: ignore[misc]  # each mail its kind
    meeting: str
    account: str
    mail: OutgoingMail

    def details(self) -> dict[str, Any]:
        return {
            "subject": self.mail.subject,
            "to": list(self.mail.to),
            "message_id": self.mail.message_id,
        }


@dataclass(frozen=True, kw_only=True)
class Note(Action):
    """A decision not to act now, reported and (with ``audit``) written to the audit log.

    ``kind`` is the kind shown in the tick's report (book, move, skip ...) and
    ``outcome`` why nothing happened (no-slot, held-back, deferred, skipped). With
    ``once``, the audit row is written only if the same message is not among the latest.
    """

    kind: str  # type: ignore[misc]  # the kind of action not taken
    outcome: str
    audit: str | None = None
    #: the audit row's text, when it says more than ``reason``
    message: str | None = None
    once: bool = True

    def details(self) -> dict[str, Any]:
        return {"outcome": self.outcome}


def draft(
    rel: Relationship,
    series: str,
    stage: str | None,
    key: str,
    title: str,
    when: Interval,
    **extra: Any,
) -> EventDraft:
    """The event of one of the relationship's meetings, as the organizer sends it. The
    people's names are plain text (``plain.display_name``): every provider puts them in
    the invitations it mails (Graph's and Google's attendee names, EWS mailboxes,
    iCalendar ``CN``), and the title too (``plain.plain``)."""
    return EventDraft(
        key=key,
        organizer=_named(rel.organizer),
        attendees=(_named(rel.attendee),),
        title=plain.plain(title),
        start=when.start,
        end=when.end,
        timezone=rel.organizer.timezone,
        series=series,
        stage=stage,
        **extra,
    )


def _named(person: Person) -> Person:
    return replace(person, name=plain.display_name(person.name))


def acts(action: Action) -> bool:
    """Whether ``action`` changes a calendar or sends mail (a Note does neither)."""
    return not isinstance(action, Note)
