"""``cadence explain``: why the agent sees a relationship the way it does.

Reads only the store (the event cache of the last sync), so it costs no API calls and
shows exactly the history the last tick worked from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from agent.core.model import Interval, Relationship
from agent.rules import cadence, slots
from agent.settings.config import Settings
from agent.store.assessed import Assessment, assess_from_store
from agent.store.sqlite import Store
from agent.views.people import laid


def explain(settings: Settings, ref: str, now: datetime, echo: Callable[[str], None]) -> None:
    store = Store(settings.store_at)
    try:
        settings = laid(settings, store)
        rel = settings.relationship(ref)
        _explain(settings, store, rel, now, echo)
    finally:
        store.close()


def _explain(
    settings: Settings, store: Store, rel: Relationship, now: datetime, echo: Callable[[str], None]
) -> None:
    zone = rel.employee.zone
    last = store.last_tick()
    echo(
        f"{rel.employee.name} <{rel.employee.email}> ({rel.employee.timezone}) with {rel.role} "
        f"{rel.partner.name} <{rel.partner.email}> ({rel.partner.timezone}), program {rel.program.name}"
    )
    echo(
        f"as of {now.astimezone(zone):%a %Y-%m-%d %H:%M %Z}; calendars as of the last sync"
        + (f" (tick {last['id']}, {last['now']})" if last else " (none yet: run a tick first)")
    )
    assessed = assess_from_store(settings, store, now)
    load = _load(assessed.values(), now)
    for state in assessed[rel.id].states:
        echo("")
        echo(
            f"{state.name} (every {state.series.every.days}d, {int(state.series.duration.total_seconds() // 60)}m)"
        )
        if not state.history:
            echo("  history: none")
        for m in state.history:
            local = m.start.astimezone(zone)
            extra = f", declined by {m.declined_by}" if m.declined_by else ""
            stage = f" [{m.stage}]" if m.stage else ""
            mine = " (booked by Cadence)" if m.key else ""
            echo(f"  {local:%a %Y-%m-%d %H:%M}  {m.status:<9}{stage} {m.title!r}{extra}{mine}")
        echo(f"  due {state.due.astimezone(zone):%a %Y-%m-%d}: {state.due_reason}")
        if state.lapsed:
            echo("  LAPSED")
        if state.stage:
            echo(f"  next stage: {state.stage}")
        if state.next_scheduled:
            when = state.next_scheduled.start.astimezone(zone)
            echo(f"  next meeting: {when:%a %Y-%m-%d %H:%M} — nothing to book")
            continue
        if state.skip_reason:
            echo(f"  {state.skip_reason}")
            continue
        need = cadence.booking_need(state, now)
        if need is None:
            echo(
                f"  not due within the {state.relationship.program.booking.horizon.days}-day horizon: nothing to book yet"
            )
            continue
        _candidates(store, rel, state, need, load, now, echo)


def _load(assessed: Iterable[Assessment], now: datetime) -> dict[str, Counter[Any]]:
    """Count each partner's meetings by day and by week, for their per-day and per-week
    limits, as the tick counts them."""
    load: dict[str, Counter[Any]] = {}
    for assessment in assessed:
        rel = assessment.relationship
        for m in assessment.meetings:
            if m.active and m.start >= now - timedelta(days=8):
                day = m.start.astimezone(rel.partner.zone).date()
                counter = load.setdefault(rel.partner.email, Counter())
                counter[day] += 1
                counter[day.isocalendar()[:2]] += 1
    return load


def _candidates(
    store: Store,
    rel: Relationship,
    state: cadence.SeriesState,
    need: cadence.BookingNeed,
    load: dict[str, Counter[Any]],
    now: datetime,
    echo: Callable[[str], None],
) -> None:
    zone = rel.employee.zone
    booking = rel.program.booking
    counter = load.get(rel.partner.email, Counter())
    request = slots.SlotRequest(
        employee=rel.employee,
        partner=rel.partner,
        duration=state.series.duration,
        earliest=need.earliest,
        latest=need.latest,
        window=booking.window,
        buffer=booking.buffer,
        granularity=booking.granularity,
        prefer=need.prefer,
        full_days=frozenset(
            k for k, n in counter.items() if isinstance(k, date) and n >= booking.max_per_day
        ),
        full_weeks=frozenset(
            k for k, n in counter.items() if isinstance(k, tuple) and n >= booking.max_per_week
        ),
    )
    busy: dict[str, list[Interval]] = {}
    for email in (rel.employee.email, rel.partner.email):
        events = store.events([email], need.earliest - timedelta(days=1))
        busy[email] = [e.interval for e in events if e.blocks_time]
    echo(f"  to book: {need.reason}")
    echo(
        f"  search {need.earliest.astimezone(zone):%a %Y-%m-%d %H:%M} to "
        f"{need.latest.astimezone(zone):%a %Y-%m-%d %H:%M} ({rel.employee.timezone}); "
        f"window {booking.window or 'working hours'}, buffer {int(booking.buffer.total_seconds() // 60)}m, "
        f"at most {booking.max_per_day} a day and {booking.max_per_week} a week for {rel.partner.first_name}"
    )
    if need.prefer:
        wd, h, m = need.prefer
        echo(
            f"  preferred: {('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[wd]} {h:02d}:{m:02d}, the time of the last meeting"
        )
    result = slots.find_slot(request, busy[rel.employee.email], busy[rel.partner.email])
    echo("  candidate starts (in the employee's zone):")
    for c in slots.consider(request, busy[rel.employee.email], busy[rel.partner.email]):
        a, b = c.first.astimezone(zone), c.last.astimezone(zone)
        span = f"{a:%a %m-%d %H:%M}" if a == b else f"{a:%a %m-%d %H:%M}–{b:%H:%M}"
        marker = "→" if c.verdict == "CHOSEN" else " "
        echo(f"   {marker} {span:<24} {c.verdict}")
    echo(f"  result: {result.reason}")
