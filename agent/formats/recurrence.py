"""Turn each recurrence rule into the explicit occurrences of one window, with a budget.

dateutil walks a rule from its DTSTART one period at a time and stops only at the first
occurrence past the end of a query, at COUNT or UNTIL (both checked only on an
occurrence), or in the year 9999. So ``FREQ=SECONDLY`` from years back yields hundreds
of millions of occurrences before the window, and a rule whose filters never match again
(``FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30``) walks every day up to the year 9999, however
the query is bounded. Handing such a rule to the expander as it is means minutes and
gigabytes per event and tick.

Here every rule is walked once, lazily and under explicit limits, and replaced by RDATEs
for the occurrences that can touch the window; the expander then has nothing left to
walk. The walk runs in later years whose calendar is the same as the walked years'
(same weekday on January 1st, same leap years; every 400 years at worst, usually a
few decades), as close as possible to the year 9999 where dateutil stops, so even a
rule that never matches again stops soon after the window. A rule that would cost
more than the limits allow is refused (``Unbounded``); one with more occurrences in
the window than ``MAX_INSTANCES`` keeps the first ones and is reported as cut.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil.rrule import rrulestr
from icalendar.prop import vDDDLists, vRecur

from agent.core.model import Interval

#: occurrences of one event kept inside a window; the rest are cut, and the cut audited
MAX_INSTANCES = 1_000
#: occurrences walked before the window starts; a rule needing more is refused
MAX_WALK = 100_000
#: periods (days for DAILY, hours for HOURLY, ...) between DTSTART and the window's end
MAX_PERIODS = 50_000
#: the most times a day a rule may repeat: hourly
MAX_PER_DAY = 24
#: the last year a walk may need (dateutil stops after datetime.MAXYEAR, 9999)
LAST_YEAR = 9998

_PERIOD = {
    "YEARLY": timedelta(days=365),
    "MONTHLY": timedelta(days=28),
    "WEEKLY": timedelta(days=7),
    "DAILY": timedelta(days=1),
    "HOURLY": timedelta(hours=1),
}
_DAYS_PER_PERIOD = {"YEARLY": 366, "MONTHLY": 31, "WEEKLY": 7, "DAILY": 1, "HOURLY": 1}


class Unbounded(ValueError):
    """A recurrence rule Cadence does not expand: its event is skipped with this reason."""


def materialise(comp: Any, window: Interval, zone: tzinfo) -> bool:
    """Replace the RRULEs of ``comp`` with RDATEs for the occurrences near ``window``.

    ``zone`` places floating times and dates (the owner's zone). Return whether
    occurrences were cut at ``MAX_INSTANCES``. Raise ``Unbounded`` for a rule too
    costly to walk, ValueError (or TypeError) for a malformed one.
    """
    rules = as_list(comp.get("RRULE"))
    if not rules:
        return False
    start = comp.decoded("DTSTART")
    all_day = not isinstance(start, datetime)
    tz = start.tzinfo if isinstance(start, datetime) else None
    first = _naive(start)
    wall = tz or zone
    hi = _wall(window.end, wall) + timedelta(days=1)
    back = _length(comp, start) + timedelta(days=1)  # occurrences that start before it
    wall_start = _wall(window.start, wall)
    lo = first if back >= wall_start - first else wall_start - back
    found: set[datetime] = set()
    cut = False
    for rule in rules:
        kept, was_cut = _occurrences(
            rule, first, lo, hi, wall, floating=tz is None and not all_day, all_day=all_day
        )
        found.update(kept)
        cut = cut or was_cut
    comp.pop("RRULE")
    if len(found) > MAX_INSTANCES:
        cut = True
    values = sorted(found)[:MAX_INSTANCES]
    if values:
        dts: list[date | datetime] = [v.date() if all_day else v.replace(tzinfo=tz) for v in values]
        comp["RDATE"] = [*as_list(comp.get("RDATE")), vDDDLists(dts)]
    return cut


def _occurrences(
    rule: Any,
    first: datetime,
    lo: datetime,
    hi: datetime,
    wall: tzinfo,
    *,
    floating: bool,
    all_day: bool,
) -> tuple[list[datetime], bool]:
    """The wall-clock occurrences of one rule in [lo, hi], and whether some were cut."""
    if first > hi:
        return [], False
    parts = {str(k).upper(): list(v) for k, v in dict(rule).items()}
    freq = str((parts.get("FREQ") or [""])[0]).upper()
    if freq in ("SECONDLY", "MINUTELY"):
        raise Unbounded(f"repeats {freq.lower()}, more often than hourly: not expanded")
    if freq not in _PERIOD:
        raise ValueError(f"RRULE without a valid FREQ: {freq or '(none)'}")
    if "BYEASTER" in parts:
        raise Unbounded("BYEASTER is not iCalendar: not expanded")
    _check_density(freq, parts)
    interval = int((parts.get("INTERVAL") or [1])[0])
    if interval < 1:
        raise ValueError(f"INTERVAL must be positive, not {interval}")
    periods = (hi - first) / (_PERIOD[freq] * interval)
    if periods > MAX_PERIODS:
        raise Unbounded(
            f"starts {first:%Y-%m-%d}, {int(periods):,} {freq.lower()} periods before the "
            f"window ends (the limit is {MAX_PERIODS:,}): not expanded"
        )
    until = _until(parts.pop("UNTIL", [None])[0], first, wall, floating, all_day)
    if parts.get("COUNT") and int(parts["COUNT"][0]) < 0:
        del parts["COUNT"]  # as the expander reads it: no count at all
    years = _same_calendar_later(first.year, hi.year)
    text: str = vRecur(parts).to_ical().decode()  # type: ignore[no-untyped-call]
    walk: Iterator[datetime] = iter(rrulestr(text, dtstart=_later(first, years), cache=False))
    lo_s, hi_s = _later(lo, years), _later(hi, years)
    until_s = _later(until, years) if until is not None and until <= hi else None
    kept: list[datetime] = []
    walked = 0
    for when in walk:
        if when > hi_s or (until_s is not None and when > until_s):
            break
        if when < lo_s:
            walked += 1
            if walked > MAX_WALK:
                raise Unbounded(
                    f"more than {MAX_WALK:,} occurrences before the window: not expanded"
                )
            continue
        if len(kept) == MAX_INSTANCES:
            return kept, True
        kept.append(_later(when, -years))
    return kept, False


def _check_density(freq: str, parts: dict[str, list[Any]]) -> None:
    """Refuse rules that repeat more than hourly, or whose BYSETPOS can never match."""
    per_hour = len(parts.get("BYMINUTE") or [0]) * len(parts.get("BYSECOND") or [0])
    per_day = len(parts.get("BYHOUR") or [0]) * per_hour
    if (freq == "HOURLY" and per_hour > 1) or per_day > MAX_PER_DAY:
        raise Unbounded("repeats more often than hourly (BYHOUR/BYMINUTE/BYSECOND): not expanded")
    positions = [int(p) for p in parts.get("BYSETPOS") or []]
    most = _DAYS_PER_PERIOD[freq] * (per_hour if freq == "HOURLY" else per_day)
    if positions and all(p == 0 or abs(p) > most for p in positions):
        raise Unbounded(f"BYSETPOS {positions} never matches: not expanded")


def _until(
    value: Any, first: datetime, wall: tzinfo, floating: bool, all_day: bool
) -> datetime | None:
    """UNTIL as a wall-clock time comparable with the walk's occurrences."""
    if value is None:
        return None
    if isinstance(value, datetime) and first.time() == time(0) and all_day:
        value = value.date()  # whole days: the expander keeps the date of UNTIL only
    if isinstance(value, datetime):
        if value.tzinfo is not None and floating:  # read as the expander reads it
            return value.replace(tzinfo=None)
        if value.tzinfo is not None:
            try:
                return _wall(value, wall)
            except OverflowError:  # at the very edge of time: past or before everything
                return datetime.max if value.year > 1 else datetime.min
        return value
    if isinstance(value, date):  # a whole day: every occurrence on it counts
        return datetime.combine(value, time.max if first.time() != time(0) else time(0))
    raise ValueError(f"UNTIL is not a date or time: {value!r}")


def _length(comp: Any, start: date | datetime) -> timedelta:
    """How long one occurrence lasts (never negative)."""
    if comp.get("DTEND") is not None:
        end = comp.decoded("DTEND")
        if isinstance(end, datetime) != isinstance(start, datetime):
            raise ValueError("DTSTART and DTEND are not both dates or both times")
        length: timedelta = end - start
    elif comp.get("DURATION") is not None:
        value = comp.decoded("DURATION")
        if not isinstance(value, timedelta):
            raise ValueError(f"DURATION is not a duration: {value!r}")
        length = value
    else:
        length = timedelta(0) if isinstance(start, datetime) else timedelta(days=1)
    return max(length, timedelta(0))


def _naive(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.combine(value, time(0))


def _wall(instant: datetime, wall: tzinfo) -> datetime:
    return instant.astimezone(wall).replace(tzinfo=None)


@functools.cache
def _calendars() -> tuple[tuple[int, bool], ...]:
    """For each year from 1 to 9999: the weekday of January 1st and whether it is leap."""
    return tuple((date(y, 1, 1).weekday(), calendar.isleap(y)) for y in range(1, LAST_YEAR + 2))


def _same_calendar_later(first: int, last: int) -> int:
    """The most years by which ``first``..``last`` can move and keep every date's weekday
    (the years around them too, which week numbers look at); 0 when none."""
    years = _calendars()
    a, b = max(first - 1, 1), last + 1
    if b > LAST_YEAR:
        return 0
    span = years[a - 1 : b]
    for shift in range(LAST_YEAR - b, 0, -1):  # a multiple of 400 always fits
        if years[a - 1 + shift : b + shift] == span:
            return shift
    return 0


def _later(value: datetime, years: int) -> datetime:
    """The same wall-clock time ``years`` later, in a year of the same calendar."""
    return value.replace(year=value.year + years) if years else value


def as_list(value: Any) -> list[Any]:
    """A property icalendar gives as one value or a list (RRULE, RDATE), as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
