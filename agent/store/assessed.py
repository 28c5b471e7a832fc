"""Assess relationships from what the store holds: the agent's own bookings and the
event cache of the last sync, classified into meetings and assessed per series.

The tick, ``status``, ``explain`` and ``report`` all see a relationship this way, so they
agree on what was held, what is scheduled and what is due. The pure core
(``own_map``, ``assess_relationship``) takes events from anywhere, so the tick can feed
it the candidate events it keeps between ticks instead of reading the cache again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.core.model import Event, Relationship
from agent.core.records import StoredBooking
from agent.rules import cadence, classify
from agent.rules.classify import Meeting, Own
from agent.settings.config import Settings
from agent.store.sqlite import Store

#: how far back meetings count: a year of a 90-day series with room for a late one
HISTORY = timedelta(days=400)


@dataclass(frozen=True)
class Assessment:
    """One relationship as of ``now``: its meetings, oldest first, and the state of
    each series of its program, in the program's order."""

    relationship: Relationship
    meetings: list[Meeting]
    states: list[cadence.SeriesState]


#: the columns of a stored meeting as ``Store.save_meetings`` is given them
MEETING_COLUMNS = (
    "id", "relationship", "series", "stage", "start", "end", "status", "key", "declined_by",
)  # fmt: skip


def own_map(bookings: Iterable[StoredBooking]) -> dict[str, Own]:
    """Key the agent's bookings for ``classify.meetings``, which tells its own events
    (and their untagged copies) from meetings people made themselves."""
    return {b.key: Own(b.relationship, b.series, b.stage) for b in bookings}


def assess_relationship(
    rel: Relationship, events: Iterable[Event], own: Mapping[str, Own], now: datetime
) -> Assessment:
    """Classify ``events`` (both people's, or only the candidates among them) into the
    relationship's meetings and assess each series from them."""
    found = classify.meetings(rel, events, own, now)
    return Assessment(rel, found, cadence.assess(rel, found, now))


def assess_from_store(
    settings: Settings,
    store: Store,
    now: datetime,
    relationships: Sequence[Relationship] | None = None,
    *,
    since: datetime | None = None,
    bookings: Sequence[StoredBooking] | None = None,
) -> dict[str, Assessment]:
    """Assess ``relationships`` (all configured ones by default) from the store, by
    relationship id in their order.

    Events count from ``since`` (default: ``HISTORY`` before ``now``). A caller that
    has read the bookings already passes them, so the store is not asked twice.
    """
    own = own_map(store.bookings() if bookings is None else bookings)
    start = now - HISTORY if since is None else since
    out: dict[str, Assessment] = {}
    for rel in settings.relationships if relationships is None else relationships:
        events = store.events([rel.employee.email, rel.partner.email], start)
        out[rel.id] = assess_relationship(rel, events, own, now)
    return out
