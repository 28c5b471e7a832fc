"""A calendar's own time zones: real ones are read, one whose rules repeat faster than
yearly is refused at once instead of holding the tick for hours."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.model import Interval
from agent.formats import ical
from tests.test_ics_fuzz import ANA

WINDOW = Interval(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def calendar(tzid: str, standard_rule: str) -> str:
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN",
        "BEGIN:VTIMEZONE", f"TZID:{tzid}",
        "BEGIN:STANDARD", "DTSTART:19701025T030000", standard_rule,
        "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "END:STANDARD",
        "BEGIN:DAYLIGHT", "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "END:DAYLIGHT",
        "END:VTIMEZONE",
        "BEGIN:VEVENT", "UID:weekly@test", "DTSTAMP:20261201T000000Z",
        f"DTSTART;TZID={tzid}:20261207T100000", f"DTEND;TZID={tzid}:20261207T110000",
        "RRULE:FREQ=WEEKLY;COUNT=3", "SUMMARY:Stand-up", "END:VEVENT",
        "END:VCALENDAR", "",
    ]  # fmt: skip
    return "\r\n".join(lines)


def test_a_zone_of_yearly_rules_is_read() -> None:
    events, skipped = ical.read_events(
        calendar("Cadence Test/Yearly", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"), ANA, WINDOW
    )
    assert skipped == []
    # winter: UTC+1, so 10:00 there is 09:00 UTC, each week
    assert [e.start for e in events] == [
        datetime(2026, 12, 7, 9, tzinfo=UTC) + timedelta(weeks=n) for n in range(3)
    ]


@pytest.mark.parametrize(
    "rule",
    ["RRULE:FREQ=SECONDLY", "RRULE:FREQ=DAILY", "RRULE:FREQ=YEARLY;INTERVAL=0;BYMONTH=10"],
)
def test_a_zone_whose_rules_are_not_yearly_is_refused_at_once(rule: str) -> None:
    began = time.monotonic()
    with pytest.raises(ValueError, match="only yearly rules are read"):
        ical.read_events(calendar(f"Cadence Test/{rule[-8:]}", rule), ANA, WINDOW)
    # before this check, a lookup of the SECONDLY zone walked each second since 1970
    assert time.monotonic() - began < 5
