"""Series arithmetic: due dates, lapses, the stage cycle and skip-near rules.

Intervals are added in the employee's local wall time (a deep dive held at 10:00 is due
90 days later at 10:00 local, across any DST change); durations stay absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.core.durations import format_duration
from agent.core.model import Relationship, Series, booking_key
from agent.rules.classify import Meeting, Status


def add_local(instant: datetime, delta: timedelta, zone: ZoneInfo) -> datetime:
    """Add whole days of ``delta`` on the local wall clock, the rest in absolute time."""
    local = instant.astimezone(zone)
    whole = timedelta(days=delta.days)
    moved = (local + whole).astimezone(UTC)  # same-tzinfo arithmetic is wall-clock
    return moved + (delta - whole)


def next_stage(stages: Sequence[str], last: str | None) -> str | None:
    """Return the stage after ``last`` in the cycle; the first ever is the first stage."""
    if not stages:
        return None
    if last is None or last not in stages:
        return stages[0]
    return stages[(stages.index(last) + 1) % len(stages)]


def stages_of(series: Series, history: Sequence[Meeting]) -> list[str | None]:
    """Give every held meeting a stage: the one in its title, else the next in the cycle."""
    out: list[str | None] = []
    last: str | None = None
    for meeting in history:
        if meeting.status is not Status.HELD:
            out.append(meeting.stage)
            continue
        stage = meeting.stage or next_stage(series.stages, last)
        out.append(stage)
        last = stage
    return out


@dataclass(frozen=True)
class SeriesState:
    """What the agent concludes about one series of one relationship at ``now``."""

    relationship: Relationship
    series: Series
    history: tuple[Meeting, ...]
    last_held: Meeting | None
    next_scheduled: Meeting | None
    base: datetime | None
    due: datetime
    due_reason: str
    lapsed: bool
    stage: str | None
    key: str
    skip_reason: str | None = None

    @property
    def name(self) -> str:
        return self.series.name

    def days_since_held(self, now: datetime) -> int | None:
        return (now - self.last_held.start).days if self.last_held else None


def _day(dt: datetime, zone: ZoneInfo) -> str:
    return f"{dt.astimezone(zone):%Y-%m-%d}"


def assess(rel: Relationship, meetings: Sequence[Meeting], now: datetime) -> list[SeriesState]:
    """Assess every series of the relationship's program from its meetings."""
    zone = rel.employee.zone
    grace = rel.program.lapse_grace
    by_series = {s.name: [m for m in meetings if m.series == s.name] for s in rel.program.series}
    held = {name: [m for m in ms if m.status is Status.HELD] for name, ms in by_series.items()}
    scheduled = {
        name: [m for m in ms if m.status is Status.SCHEDULED] for name, ms in by_series.items()
    }
    states: list[SeriesState] = []
    for series in rel.program.series:
        history = tuple(by_series[series.name])
        stages = stages_of(series, history)
        last_held_index = max(
            (i for i, m in enumerate(history) if m.status is Status.HELD), default=None
        )
        last_held = history[last_held_index] if last_held_index is not None else None
        last_stage = stages[last_held_index] if last_held_index is not None else None
        upcoming = scheduled[series.name][0] if scheduled[series.name] else None

        base, base_reason = None, ""
        if last_held:
            base = last_held.start
            base_reason = f"last held {_day(base, zone)}"
        if series.skip_near and held.get(series.skip_near):
            near = held[series.skip_near][-1]
            if base is None or near.start > base:
                base = near.start
                base_reason = f"last {series.skip_near} held {_day(base, zone)}"

        if base is None and rel.first_due is not None and rel.first_due > now:
            due, lapsed = rel.first_due, False
            due_reason = f"new reporting line: first meeting by {_day(due, zone)}"
        elif base is None:
            due, due_reason, lapsed = now, "never held: due now", False
        else:
            due = add_local(base, series.every, zone)
            age = (now - base).days
            lapsed = upcoming is None and now > add_local(due, grace, zone)
            verdict = ">" if lapsed else "<="
            due_reason = (
                f"{base_reason} ({age} days) {verdict} {format_duration(series.every)}"
                f" + {format_duration(grace)} grace; due {_day(due, zone)}"
            )
            if lapsed:
                due_reason = f"{series.name} lapsed: " + due_reason

        skip_reason = None
        if series.skip_near and upcoming is None:
            target = max(due, now)
            for near in scheduled.get(series.skip_near, []) + held.get(series.skip_near, []):
                if abs(near.start - target) < series.skip_within:
                    skip_reason = (
                        f"{series.name} skipped: {series.skip_near} {near.status} "
                        f"{_day(near.start, zone)} within {format_duration(series.skip_within)}"
                    )
                    break

        anchor = base.astimezone(zone).date() if base else None
        key = booking_key(rel.id + "|" + rel.program.name, series.name, anchor or _FIRST)
        states.append(
            SeriesState(
                relationship=rel,
                series=series,
                history=history,
                last_held=last_held,
                next_scheduled=upcoming,
                base=base,
                due=due,
                due_reason=due_reason,
                lapsed=lapsed,
                stage=(upcoming.stage if upcoming and upcoming.stage else None)
                or next_stage(series.stages, last_stage),
                key=key,
                skip_reason=skip_reason,
            )
        )
    return states


_FIRST = datetime(1970, 1, 1, tzinfo=UTC).date()


@dataclass(frozen=True)
class BookingNeed:
    """A series that should get its next meeting booked, and where to look for a slot."""

    state: SeriesState
    earliest: datetime
    latest: datetime
    prefer: tuple[int, int, int] | None  # (weekday, hour, minute) in the employee's zone
    reason: str

    @property
    def overdue(self) -> timedelta:
        return self.earliest - self.state.due


def search_range(state: SeriesState, now: datetime) -> tuple[datetime, datetime]:
    """The series' due window for a booking or a move: from the later of the lead time
    and the due date less the grace, across the booking horizon."""
    rel = state.relationship
    program = rel.program
    soonest = now + program.booking.lead_time
    if state.base is None and rel.first_due is not None and rel.first_due > soonest:
        # a new line: its first meeting falls before the date it is due by
        return max(soonest, rel.first_due - program.booking.horizon), rel.first_due
    earliest = max(soonest, state.due - program.lapse_grace)
    return earliest, earliest + program.booking.horizon


def preferred_time(state: SeriesState) -> tuple[int, int, int] | None:
    """The weekday and local time of the series' last meeting, if it has one."""
    reference = state.last_held or (state.history[-1] if state.history else None)
    if reference is None:
        return None
    local = reference.start.astimezone(state.relationship.employee.zone)
    return (local.weekday(), local.hour, local.minute)


def booking_need(state: SeriesState, now: datetime) -> BookingNeed | None:
    """Decide whether ``state`` needs a booking now, and the range to search."""
    rel, series = state.relationship, state.series
    if state.next_scheduled is not None or state.skip_reason:
        return None
    if state.due > now + rel.program.booking.horizon:
        return None
    earliest, latest = search_range(state, now)
    prefer = preferred_time(state)
    if state.lapsed:
        reason = state.due_reason
    elif state.base is None and state.due > now:
        reason = f"{series.name}: {state.due_reason}"
    elif state.base is None:
        reason = f"{series.name}: never held, due now"
    else:
        reason = f"{series.name} due {state.due.astimezone(rel.employee.zone):%Y-%m-%d}: {state.due_reason}"
    return BookingNeed(state, earliest, latest, prefer, reason)
