"""Mutated corpus calendars fed to the ICS reader: it returns events and skipped items,
or raises ValueError (the data is not iCalendar text at all), and nothing else, in a
bounded number of occurrences.

``make test`` runs a few hundred examples; ``make fuzz`` (ICS_FUZZ_EXAMPLES=10000) the
long run whose figures docs/RELIABILITY.md records.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.core.model import Interval
from agent.formats import ical
from agent.formats.recurrence import MAX_INSTANCES
from tests.factories import at, person
from tests.test_corpus import corpus_files

ANA = person("ana", "Europe/Berlin")
WINDOW = Interval(at("2026-01-01T00:00:00+00:00"), at("2026-07-01T00:00:00+00:00"))
EXAMPLES = int(os.environ.get("ICS_FUZZ_EXAMPLES", "300"))
FILES = [p.read_bytes() for p in corpus_files()]

HUGE_RULES = [
    "RRULE:FREQ=SECONDLY",
    "RRULE:FREQ=MINUTELY;COUNT=2000000000",
    "RRULE:FREQ=HOURLY;UNTIL=99991231T235959Z",
    "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
    "RRULE:FREQ=HOURLY;BYMONTH=4;BYMONTHDAY=31;BYHOUR=3",
    "RRULE:FREQ=YEARLY;BYSETPOS=400;BYDAY=MO",
    "RRULE:FREQ=DAILY;INTERVAL=0",
    "RRULE:FREQ=DAILY;INTERVAL=-5;COUNT=-3",
    "RRULE:FREQ=WEEKLY;BYDAY=9XX",
    "RRULE:FREQ=YEARLY;BYEASTER=0",
    "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13;BYMINUTE=0,1,2",
    "RRULE:FREQ=MONTHLY;UNTIL=00010101",
    "RRULE:FREQ=DAILY;UNTIL=20260101;COUNT=5",
    "RRULE:" + ";".join(["FREQ=DAILY"] * 500),
    "RDATE:" + ",".join(f"2026{m:02d}{d:02d}T100000Z" for m in range(1, 7) for d in range(1, 29)),
    "RRULE:FREQ=HOURLY;BYSECOND=" + ",".join(map(str, range(60))),
]
BAD_VALUES = [
    "DTSTART:00000000T000000Z",
    "DTSTART:99991231T235959Z",
    "DTSTART:00010101T000000Z",
    "DTSTART;TZID=Nowhere/Nothing:20260301T100000",
    "DTSTART;VALUE=DATE:20260230",
    "DTSTART:2026-03-01",
    "DTEND:19000101T000000Z",
    "DURATION:P99999999W",
    "DURATION:-P1D",
    "DURATION:nonsense",
    "EXDATE:garbage",
    "RECURRENCE-ID:20260301T100000Z",
    "RECURRENCE-ID;RANGE=THISANDFUTURE:20200101T000000Z",
    "SEQUENCE:not-a-number",
    "ATTENDEE;PARTSTAT=ACCEPTED:",
    "ORGANIZER:",
    "UID:" + "u" * 5000,
    "BEGIN:VEVENT",
    "END:VEVENT",
    "END:VCALENDAR",
    "BEGIN:VTIMEZONE",
]
ENCODINGS = ["utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-8-sig"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(FILES))
    for _ in range(draw(st.integers(1, 4))):
        lines = data.split(b"\n")
        kind = draw(
            st.sampled_from(
                ["truncate", "delete", "duplicate", "swap", "flip", "rule", "value", "encode"]
            )
        )
        at_ = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "delete" and lines:
            count = draw(st.integers(1, 5))
            data = b"\n".join(lines[:at_] + lines[at_ + count :])
        elif kind == "duplicate" and lines:
            count = draw(st.integers(1, 20))
            data = b"\n".join(
                lines[: at_ + count] + lines[at_ : at_ + count] + lines[at_ + count :]
            )
        elif kind == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at_], lines[other] = lines[other], lines[at_]
            data = b"\n".join(lines)
        elif kind == "flip" and data:
            raw = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, len(raw) - 1))
                raw[i] = draw(st.integers(0, 255))
            data = bytes(raw)
        elif kind in ("rule", "value"):
            text = draw(st.sampled_from(HUGE_RULES if kind == "rule" else BAD_VALUES))
            spot = next((i for i, line in enumerate(lines) if line.startswith(b"DTSTART")), at_)
            index = spot + 1 if draw(st.booleans()) else at_
            data = b"\n".join([*lines[:index], text.encode() + b"\r", *lines[index:]])
        elif kind == "encode":
            text = data.decode("utf-8", "replace")
            data = text.encode(draw(st.sampled_from(ENCODINGS)), "replace")
    return data


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_the_reader_returns_or_raises_its_one_error(data: bytes) -> None:
    try:
        events, skipped = ical.read_events(data, ANA, WINDOW)
    except ValueError as exc:  # documented: the data is not iCalendar text at all
        assert str(exc)
        event("refused: ValueError")
        return
    event("read, with skipped items" if skipped else "read")
    by_uid: dict[str, int] = {}
    for found in events:
        assert found.start.tzinfo is not None and found.start <= found.end
        by_uid[found.uid] = by_uid.get(found.uid, 0) + 1
    assert all(count <= MAX_INSTANCES for count in by_uid.values())
    for item in skipped:
        assert item.reason and item.owner == ANA.email
