"""Parsing of the small text formats the configuration uses: durations, spans, weekdays."""

from __future__ import annotations

import itertools
import re
from datetime import time, timedelta

from agent.core.model import WEEKDAYS, Span

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(?:(\d+)\s*([smhdw])\s*)+$")
_PART = re.compile(r"(\d+)\s*([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse ``15m``, ``24h``, ``90d``, ``6w`` or combinations like ``1h30m``."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"not a duration: {text!r} (use a number and a unit: 15m, 24h, 90d, 6w)")
    total = timedelta()
    try:
        for number, unit in _PART.findall(text):
            total += timedelta(**{_UNITS[unit]: int(number)})
    except (OverflowError, ValueError):
        raise ValueError(f"duration {text.strip()!r} is too long") from None
    return total


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_clock(text: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM)")
    hour, minute = int(match[1]), int(match[2])
    if hour == 24 and minute == 0:
        return time.max
    if hour > 23 or minute > 59:
        raise ValueError(f"not a time of day: {text!r}")
    return time(hour, minute)


def parse_span(text: str) -> Span:
    """Parse ``09:00-17:00``; the end must come after the start."""
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"not a span of time: {text!r} (use HH:MM-HH:MM)")
    left, right = text.split("-")
    span = Span(parse_clock(left), parse_clock(right))
    if span.end <= span.start:
        raise ValueError(f"span {text!r} ends before it starts")
    return span


def parse_spans(text: str) -> tuple[Span, ...]:
    """Parse one or more spans separated by commas: ``08:00-12:00, 13:00-17:00``."""
    if not isinstance(text, str):
        raise ValueError(f"not a span of time: {text!r}")
    spans = sorted((parse_span(part) for part in text.split(",")), key=lambda s: s.start)
    for a, b in itertools.pairwise(spans):
        if b.start < a.end:
            raise ValueError(f"spans {a} and {b} overlap")
    return tuple(spans)


def parse_days(text: str) -> list[int]:
    """Parse ``mon-fri``, ``sat``, ``mon,wed,fri`` into weekday numbers (0 = Monday)."""
    days: list[int] = []
    for part in str(text).lower().split(","):
        part = part.strip()
        if "-" in part:
            first, last = part.split("-", 1)
            if first not in WEEKDAYS or last not in WEEKDAYS:
                raise ValueError(f"not a day range: {part!r} (use mon-fri)")
            a, b = WEEKDAYS.index(first), WEEKDAYS.index(last)
            if b < a:
                raise ValueError(f"day range {part!r} runs backwards")
            days.extend(range(a, b + 1))
        elif part in WEEKDAYS:
            days.append(WEEKDAYS.index(part))
        else:
            raise ValueError(f"not a weekday: {part!r} (use mon, tue, … sun)")
    return days
