"""The configuration schema's value types: durations, zones, shares, addresses, and
the strict base model every section uses."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from agent.core import locales
from agent.core.durations import (
    format_duration,
    parse_days,
    parse_duration,
    parse_span,
    parse_spans,
)

#: the longest duration any key takes. The agent adds durations to today's date and to
#: each other (a series' interval, the booking horizon, the lead time ...); ten years
#: keeps every such sum a real date, where an unbounded one fails every tick.
MAX_DURATION = timedelta(days=3650)


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (add a unit: 15m, 24h, 90d, 6w)")
    else:
        delta = parse_duration(value)
    if abs(delta) > MAX_DURATION:
        raise ValueError(
            f"{format_duration(delta)} is too long: at most {format_duration(MAX_DURATION)} "
            "(ten years)"
        )
    return delta


#: the shortest ``tick:``: a tick reads every calendar, so a faster one only loads the
#: providers (and is throttled by them)
MIN_TICK = timedelta(minutes=1)


def _tick(value: timedelta) -> timedelta:
    if value < MIN_TICK:
        raise ValueError(f"{format_duration(value)} is too short: a tick is at least 1m")
    return value


_Bound = TypeVar("_Bound", int, timedelta)


def within(low: _Bound, high: _Bound, why: str, *, minutes: bool = False) -> AfterValidator:
    """A check that a value lies from ``low`` to ``high`` (in whole ``minutes`` if asked),
    whose error says ``why`` the bounds are what they are."""

    def show(value: _Bound) -> str:
        return format_duration(value) if isinstance(value, timedelta) else str(value)

    def check(value: _Bound) -> _Bound:
        whole = not (minutes and isinstance(value, timedelta) and value.total_seconds() % 60)
        if not (low <= value <= high and whole):
            kind = "whole minutes " if minutes else ""
            raise ValueError(f"must be {kind}between {show(low)} and {show(high)} ({why})")
        return value

    return AfterValidator(check)


#: characters an address never needs and a file or URL path must not get from one
_UNSAFE_ADDRESS = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")


def _address(value: str) -> str:
    """Refuse an address that could name a path: each provider derives files (the local
    calendars) or URLs from it."""
    if _UNSAFE_ADDRESS.search(value):
        raise ValueError(
            f"{value!r} is not a usable email address: it may hold no '/', '\\', '..' "
            "or control characters"
        )
    if len(value) > 254:
        raise ValueError("an email address has at most 254 characters")
    return value


_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024 * 1024, "gb": 1024 * 1024 * 1024}


def _size(value: Any) -> int:
    """Bytes from ``5MB``, ``300KB`` or a bare number (1 MB = 1,048,576 bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        found = re.fullmatch(r"\s*(\d+)\s*([kmg]?b?)\s*", str(value), re.I)
        if not found or isinstance(value, bool):
            raise ValueError(f"not a size: {value!r} (a number of bytes, or with KB, MB, GB)")
        number, unit = int(found.group(1)), found.group(2).lower()
    if unit in ("k", "m", "g"):
        unit += "b"
    size = number * _UNITS[unit]
    if size < 1024:
        raise ValueError(f"{value!r} is under 1 KB: no reply would fit")
    return size


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def _language(value: str) -> str:
    found = locales.normalize(value)
    if found is None:
        raise ValueError(
            f"no catalogue for language {value!r}: choose one of {', '.join(locales.SHIPPED)}"
        )
    return found


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _span(value: str) -> str:
    parse_span(value)
    return value


def _hours(value: dict[str, str]) -> dict[str, str]:
    seen: dict[int, str] = {}
    for days, spans in value.items():
        parse_spans(spans)
        for day in parse_days(days):
            if day in seen:
                raise ValueError(f"{days!r} repeats a day already given by {seen[day]!r}")
            seen[day] = days
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+\s*[smhdw]\s*)+$", "examples": ["90d"]}),
]
ByteSize = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema(
        {"type": ["string", "integer"], "pattern": r"^\d+\s*[KkMmGg]?[Bb]?$", "examples": ["5MB"]}
    ),
]
TimeZoneName = Annotated[str, AfterValidator(_zone)]
#: a shipped language, read leniently (``de-DE``, ``pt-br``) and kept as ``de``, ``pt_BR``
Language = Annotated[
    str,
    AfterValidator(_language),
    WithJsonSchema({"type": "string", "examples": list(locales.SHIPPED)}),
]
Regex = Annotated[str, AfterValidator(_regex)]
SpanText = Annotated[
    str,
    AfterValidator(_span),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"}),
]
Hours = Annotated[
    dict[str, str],
    AfterValidator(_hours),
    WithJsonSchema(
        {
            "type": "object",
            "description": 'weekdays → spans, e.g. {"mon-fri": "09:00-17:00"}',
            "additionalProperties": {"type": "string"},
        }
    ),
]


def _percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like 25%") from None
    return value


#: a share of a whole: "25%" or 0.25
Share = Annotated[float, BeforeValidator(_percent), Field(gt=0, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
