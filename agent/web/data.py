"""What the pages show, read from the store and the settings: plans, cadence, meetings.

Nothing here decides who may see it (``agent.web.access`` does); the pages ask first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from agent.core.errors import CadenceError
from agent.core.model import Relationship
from agent.core.plan import Plan, normalize
from agent.rules import replies
from agent.settings import idp
from agent.settings.config import Settings
from agent.store.assessed import assess_from_store
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.plans import plan_path, recorded_actions


@dataclass(frozen=True)
class PlanState:
    """An employee's plan as the web app sees it, and where it comes from."""

    plan: Plan | None
    shared: bool
    version: int
    #: ``store``, ``file`` (not edited on the web yet) or ``none``
    source: str
    #: why the plan file does not load, if it does not
    problem: str | None = None


def plan_of(settings: Settings, store: Store, email: str) -> PlanState:
    """The plan in the store, else the person's plan file (the store wins)."""
    stored = PlanRows(store).get(email)
    if stored is not None:
        return PlanState(stored.plan, stored.shared, stored.version, "store")
    person = settings.people.get(email)
    path = plan_path(settings, person) if person is not None else None
    if path is None:
        return PlanState(None, False, 0, "none")
    try:
        return PlanState(idp.load(path), False, 0, "file")
    except CadenceError as exc:
        return PlanState(None, False, 0, "file", str(exc))


def actions_of(plan: Plan | None, store: Store, email: str) -> replies.Actions:
    """The plan's actions overlaid with those recorded (replies to recaps, the web)."""
    return replies.merge(plan, recorded_actions(store, email))


def tick_off(store: Store, email: str, action: replies.Action, now: datetime) -> None:
    """Record an action as done, as a reply saying ``- [x] title`` would."""
    store.record_actions(
        [
            {
                "employee": email,
                "norm": normalize(action.title),
                "title": action.title,
                "goal": action.goal,
                "due": action.due.isoformat() if action.due else None,
                "status": "done",
                "source": "web",
            }
        ],
        now,
    )


@dataclass
class Series:
    name: str
    stage: str | None
    last_held: datetime | None
    next_scheduled: datetime | None
    due: datetime
    lapsed: bool
    reason: str
    booked_because: str | None


@dataclass
class Card:
    """One relationship as the cadence page and the team page show it."""

    rel: Relationship
    series: list[Series] = field(default_factory=list)
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    #: the starts of the relationship's meetings that stand (held or scheduled)
    standing: list[datetime] = field(default_factory=list)

    @property
    def next_meeting(self) -> datetime | None:
        times = [s.next_scheduled for s in self.series if s.next_scheduled]
        return min(times) if times else None

    @property
    def overdue(self) -> list[Series]:
        return [s for s in self.series if s.lapsed]


@dataclass(frozen=True)
class Load:
    """A partner's development meetings in one ISO week, against the program caps."""

    week: date
    """The Monday the week starts on."""
    meetings: int
    per_week: int
    busiest_day: int
    per_day: int


def cards(
    settings: Settings, store: Store, rels: Sequence[Relationship], now: datetime
) -> list[Card]:
    """The cadence of each relationship: each series' state and the meetings to come."""
    if not rels:
        return []
    assessed = assess_from_store(settings, store, now, rels)
    reasons = {}
    for b in store.bookings() if len(rels) > 20 else _bookings(store, rels):
        reasons[(b.relationship, b.series)] = b.reason
    out = []
    for rel in rels:
        card = Card(rel)
        for state in assessed[rel.id].states:
            card.series.append(
                Series(
                    state.name,
                    state.stage,
                    state.last_held.start if state.last_held else None,
                    state.next_scheduled.start if state.next_scheduled else None,
                    state.due,
                    state.lapsed,
                    state.skip_reason or state.due_reason,
                    reasons.get((rel.id, state.name)),
                )
            )
        card.upcoming = [
            {"title": m.title, "start": m.start, "series": m.series, "stage": m.stage}
            for m in assessed[rel.id].meetings
            if m.start >= now and m.active
        ]
        card.standing = [m.start for m in assessed[rel.id].meetings if m.active]
        out.append(card)
    return out


def load(cards: Sequence[Card], zone: Any, now: datetime, weeks: int = 3) -> list[Load]:
    """This week's and the next ``weeks - 1`` weeks' meetings of the partner of
    ``cards`` (days in ``zone``), with the strictest caps of their programs."""
    if not cards:
        return []
    per_week = min(c.rel.program.booking.max_per_week for c in cards)
    per_day = min(c.rel.program.booking.max_per_day for c in cards)
    today = now.astimezone(zone).date()
    out = []
    for n in range(weeks):
        iso = (today + timedelta(weeks=n)).isocalendar()[:2]
        days: dict[date, int] = {}
        for card in cards:
            for start in card.standing:
                day = start.astimezone(zone).date()
                if day.isocalendar()[:2] == iso:
                    days[day] = days.get(day, 0) + 1
        monday = date.fromisocalendar(iso[0], iso[1], 1)
        out.append(
            Load(
                monday,
                sum(days.values()),
                per_week,
                max(days.values(), default=0),
                per_day,
            )
        )
    return out


def _bookings(store: Store, rels: Sequence[Relationship]) -> list[Any]:
    return [b for rel in rels for b in store.bookings(rel.id)]
