"""Typed reads of the store: what it recorded, with aware datetimes instead of text.

The store writes rows as it always has; readers get these frozen records, so that no
module parses a timestamp of the store or guesses whether a column may be empty. They
sit at the bottom of the layers so that pure code (the rules) can take them as input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StoredBooking:
    """One of the agent's bookings as the store knows it."""

    key: str
    """The idempotency key, which the event carries too, so a retry finds it."""
    relationship: str
    series: str
    status: str
    """"pending" (recorded before the calendar call), "booked", or "moving" (a move
    recorded before the calendar call)."""
    stage: str | None = None
    due: datetime | None = None
    start: datetime | None = None
    """The slot chosen, from ``start`` to ``end``."""
    end: datetime | None = None
    organizer: str | None = None
    """Whose calendar holds the event: the one calendar Cadence may change."""
    event_id: str | None = None
    reason: str | None = None
    moves: int = 0
    """The moves made so far against the program's budget."""
    created_at: datetime | None = None
    updated_at: datetime | None = None
