"""Free-slot search across two people, by interval arithmetic.

Each person's allowed time is built day by day in their own zone (working hours, the
program's window, minus public holidays and closure dates); the two are intersected,
busy time widened by the buffer is subtracted, and candidate starts are laid on a
fixed UTC grid. The choice is deterministic: the weekday and time of the series' last
meeting when free, else the earliest candidate.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import holidays

from agent.core.model import WEEKDAYS, Interval, Person, Span, merge

_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday, midnight UTC


@functools.lru_cache(maxsize=512)
def public_holidays(country: str | None, subdivision: str | None, year: int) -> dict[date, str]:
    """Return the public holidays of a country (and subdivision) in one year."""
    if not country:
        return {}
    try:
        with warnings.catch_warnings():
            # some countries' holidays are known only up to a year (India's to 2035): a
            # booking horizon reaching past it finds none there, and need not say so
            # on every tick
            warnings.simplefilter("ignore", UserWarning)
            found = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        return {}
    return {day: str(name) for day, name in found.items()}


def day_off(person: Person, day: date) -> str | None:
    """Return why ``day`` is not a working day for ``person``, or None."""
    if day in person.closed:
        return "closed"
    name = public_holidays(person.country, person.subdivision, day.year).get(day)
    return f"holiday ({name})" if name else None


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intersect two sorted lists of disjoint intervals."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i].start, b[j].start), min(a[i].end, b[j].end)
        if start < end:
            out.append(Interval(start, end))
        if a[i].end <= b[j].end:
            i += 1
        else:
            j += 1
    return out


def subtract(free: Sequence[Interval], busy: Sequence[Interval]) -> list[Interval]:
    """Remove merged ``busy`` intervals from sorted disjoint ``free`` intervals."""
    out: list[Interval] = []
    j = 0
    for f in free:
        start = f.start
        while j < len(busy) and busy[j].end <= start:
            j += 1
        k = j
        while k < len(busy) and busy[k].start < f.end:
            if busy[k].start > start:
                out.append(Interval(start, busy[k].start))
            start = max(start, busy[k].end)
            k += 1
        if start < f.end:
            out.append(Interval(start, f.end))
    return out


def allowed(person: Person, window: Span | None, span: Interval) -> list[Interval]:
    """The person's working time within ``span``, each day read in their own zone."""
    zone = person.zone
    first = span.start.astimezone(zone).date() - timedelta(days=1)
    last = span.end.astimezone(zone).date() + timedelta(days=1)
    out = []
    day = first
    while day <= last:
        if not day_off(person, day):
            for work in person.working_hours.on(day.weekday()):
                start, end = work.start, work.end
                if window is not None:
                    start, end = max(start, window.start), min(end, window.end)
                if start >= end:
                    continue
                lo = datetime.combine(day, start, tzinfo=zone)
                hi = (
                    datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
                    if end == time.max
                    else datetime.combine(day, end, tzinfo=zone)
                )
                iv = (
                    Interval(max(lo, span.start), min(hi, span.end))
                    if lo < span.end and hi > span.start
                    else None
                )
                if iv is not None and iv.start < iv.end:
                    out.append(iv)
        day += timedelta(days=1)
    return merge(out)


@dataclass(frozen=True)
class SlotRequest:
    """A search for one meeting's slot, in time both people have free."""

    employee: Person
    partner: Person
    duration: timedelta
    earliest: datetime
    latest: datetime
    window: Span | None = None
    """The part of each working day the series may use (``window:``), in each person's
    own time; None: the whole working day."""
    buffer: timedelta = timedelta(minutes=10)
    granularity: timedelta = timedelta(minutes=15)
    prefer: tuple[int, int, int] | None = None
    full_days: frozenset[date] = frozenset()
    """The partner's local days and ISO weeks already at their limit of meetings."""
    full_weeks: frozenset[tuple[int, int]] = frozenset()

    def over_limit(self, slot: Interval) -> bool:
        local = slot.start.astimezone(self.partner.zone).date()
        return local in self.full_days or local.isocalendar()[:2] in self.full_weeks


@dataclass(frozen=True)
class SlotResult:
    slot: Interval | None
    reason: str
    candidates: int = 0
    common: list[Interval] = field(default_factory=list)


def _grid(start: datetime, step: timedelta) -> datetime:
    """Round ``start`` up onto the UTC grid of ``step``."""
    offset = (start - _EPOCH) % step
    return start if not offset else start + (step - offset)


def candidates(req: SlotRequest, free: Sequence[Interval]) -> Iterator[Interval]:
    for f in free:
        t = _grid(max(f.start, req.earliest), req.granularity)
        while t + req.duration <= f.end and t <= req.latest:
            yield Interval(t, t + req.duration)
            t += req.granularity


def describe(req: SlotRequest, slot: Interval) -> str:
    parts = []
    for p in (req.employee, req.partner):
        local = slot.start.astimezone(p.zone)
        parts.append(f"{local:%a %Y-%m-%d %H:%M} {p.timezone}")
    seen = []
    for part in parts:
        if part not in seen:
            seen.append(part)
    return " / ".join(seen)


def find_slot(
    req: SlotRequest, busy_employee: Sequence[Interval], busy_partner: Sequence[Interval]
) -> SlotResult:
    """Choose the meeting slot for ``req`` given both people's busy time."""
    span = Interval(req.earliest, req.latest + req.duration)
    if span.start >= span.end:
        return SlotResult(None, "empty search range")
    shared = intersect(
        allowed(req.employee, req.window, span), allowed(req.partner, req.window, span)
    )
    common = [iv for iv in shared if iv.duration >= req.duration]
    if not common:
        return SlotResult(None, _no_common(req, shared))
    busy = merge(iv.widen(req.buffer) for iv in [*busy_employee, *busy_partner])
    free = subtract(common, busy)
    options = list(candidates(req, free))
    if not options:
        return SlotResult(
            None,
            f"all common hours busy from {req.earliest:%Y-%m-%d} to {req.latest:%Y-%m-%d}",
            common=common,
        )
    options = [o for o in options if not req.over_limit(o)]
    if not options:
        return SlotResult(
            None,
            f"{req.partner.name}'s limits reached on every free day "
            f"from {req.earliest:%Y-%m-%d} to {req.latest:%Y-%m-%d}",
            common=common,
        )
    if req.prefer is not None:
        weekday, hour, minute = req.prefer
        for option in options:
            local = option.start.astimezone(req.employee.zone)
            if (local.weekday(), local.hour, local.minute) == (weekday, hour, minute):
                return SlotResult(
                    option,
                    f"slot {describe(req, option)}: same weekday and time as the last meeting "
                    f"({WEEKDAYS[weekday].title()} {hour:02d}:{minute:02d})",
                    len(options),
                    common,
                )
    return SlotResult(
        options[0],
        f"slot {describe(req, options[0])}: earliest free in both windows",
        len(options),
        common,
    )


def _no_common(req: SlotRequest, shared: Sequence[Interval]) -> str:
    """Why no common time holds the meeting: none at all, or what is short and by how
    much, so that a pair a few minutes apart is not taken for one that never meets."""
    between = f"between {req.employee.timezone} and {req.partner.timezone}"
    dates = f"from {req.earliest:%Y-%m-%d} to {req.latest:%Y-%m-%d}"
    if not shared:
        return f"no common working hours {between} {dates}"
    longest = max(iv.duration for iv in shared)
    inside = f" within the booking window {req.window}" if req.window is not None else ""
    return (
        f"common working hours too short {between}{inside}: at most "
        f"{format_minutes(longest)} at a time, {format_minutes(req.duration - longest)} "
        f"short of the {format_minutes(req.duration)} meeting, {dates}"
    )


def find_slots(
    req: SlotRequest,
    busy_employee: Sequence[Interval],
    busy_partner: Sequence[Interval],
    count: int = 3,
) -> list[Interval]:
    """Propose up to ``count`` slots on different days, earliest first."""
    chosen: list[Interval] = []
    days: set[date] = set()
    span = Interval(req.earliest, req.latest + req.duration)
    common = intersect(
        allowed(req.employee, req.window, span), allowed(req.partner, req.window, span)
    )
    busy = merge(iv.widen(req.buffer) for iv in [*busy_employee, *busy_partner])
    for option in candidates(req, subtract(common, busy)):
        day = option.start.astimezone(req.employee.zone).date()
        if day in days or req.over_limit(option):
            continue
        chosen.append(option)
        days.add(day)
        if len(chosen) == count:
            break
    return chosen


@dataclass(frozen=True)
class Considered:
    """A stretch of candidate starts (``first`` to ``last``) with one verdict."""

    first: datetime
    last: datetime
    verdict: str


def consider(
    req: SlotRequest,
    busy_employee: Sequence[Interval],
    busy_partner: Sequence[Interval],
) -> list[Considered]:
    """Walk every candidate start on the grid and say why it is rejected or chosen.

    Consecutive candidates with the same verdict are folded into one stretch; starts
    outside either person's working hours on a working day are reported per day.
    """
    result = find_slot(req, busy_employee, busy_partner)
    out: list[Considered] = []
    zone = req.employee.zone
    day = req.earliest.astimezone(zone).date()
    last = req.latest.astimezone(zone).date()
    span = Interval(req.earliest, req.latest + req.duration)
    allowed_e = allowed(req.employee, req.window, span)
    allowed_p = allowed(req.partner, req.window, span)
    widened_e = merge(iv.widen(req.buffer) for iv in busy_employee)
    widened_p = merge(iv.widen(req.buffer) for iv in busy_partner)

    def add(start: datetime, verdict: str) -> None:
        if out and out[-1].verdict == verdict and out[-1].last + req.granularity == start:
            out[-1] = Considered(out[-1].first, start, verdict)
        else:
            out.append(Considered(start, start, verdict))

    while day <= last:
        lo = max(datetime.combine(day, time(0), tzinfo=zone), req.earliest)
        hi = min(datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone), req.latest)
        t = _grid(lo, req.granularity)
        while t < hi and t <= req.latest:
            slot = Interval(t, t + req.duration)
            verdict = _verdict(req, slot, allowed_e, allowed_p, widened_e, widened_p, result.slot)
            if verdict is not None:
                add(t, verdict)
            t += req.granularity
        day += timedelta(days=1)
    return out


def _inside(intervals: Sequence[Interval], slot: Interval) -> bool:
    return any(iv.contains(slot) for iv in intervals)


def _verdict(
    req: SlotRequest,
    slot: Interval,
    allowed_e: Sequence[Interval],
    allowed_p: Sequence[Interval],
    busy_e: Sequence[Interval],
    busy_p: Sequence[Interval],
    chosen: Interval | None,
) -> str | None:
    in_e, in_p = _inside(allowed_e, slot), _inside(allowed_p, slot)
    if not in_e and not in_p:
        return None  # outside both people's hours: not worth a line
    for person, inside in ((req.employee, in_e), (req.partner, in_p)):
        if not inside:
            off = day_off(person, slot.start.astimezone(person.zone).date())
            return f"{person.first_name}: {off}" if off else f"outside {person.first_name}'s hours"
    if any(iv.overlaps(slot) for iv in busy_e):
        return f"{req.employee.first_name} busy (with {format_minutes(req.buffer)} buffer)"
    if any(iv.overlaps(slot) for iv in busy_p):
        return f"{req.partner.first_name} busy (with {format_minutes(req.buffer)} buffer)"
    if req.over_limit(slot):
        return f"{req.partner.first_name}'s daily or weekly limit reached"
    if chosen is not None and slot == chosen:
        return "CHOSEN"
    if chosen is None:
        return "free"
    return "free, but later" if slot.start > chosen.start else "free, but not the preferred time"


def format_minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)}m"
