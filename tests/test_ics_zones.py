"""A calendar's own time zones: real ones are read, one whose rules repeat faster than
yearly is refused at once instead of holding the tick for hours."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.model import Interval
from agent.formats import ical, zones
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


def fixed(tzid: str, offset: str) -> str:
    """A calendar whose own zone ``tzid`` is ``offset`` all year, with one event at 09:00."""
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN",
        "BEGIN:VTIMEZONE", f"TZID:{tzid}",
        "BEGIN:STANDARD", "DTSTART:19700101T000000",
        f"TZOFFSETFROM:{offset}", f"TZOFFSETTO:{offset}", "END:STANDARD",
        "END:VTIMEZONE",
        "BEGIN:VEVENT", "UID:one@test", "DTSTAMP:20261201T000000Z",
        f"DTSTART;TZID={tzid}:20261207T090000", f"DTEND;TZID={tzid}:20261207T100000",
        "SUMMARY:Review", "END:VEVENT",
        "END:VCALENDAR", "",
    ]  # fmt: skip
    return "\r\n".join(lines)


# Outlook's name for every zone it exports from custom settings
OUTLOOK = "Customized Time Zone"
# 09:00 in each calendar's own zone
IN_UTC = {
    "+0200": datetime(2026, 12, 7, 7, tzinfo=UTC),
    "-0500": datetime(2026, 12, 7, 14, tzinfo=UTC),
}


def test_two_calendars_defining_a_zone_of_the_same_name_each_keep_their_own() -> None:
    for offset in ["+0200", "-0500", "+0200"]:
        events, skipped = ical.read_events(fixed(OUTLOOK, offset), ANA, WINDOW)
        assert skipped == []
        assert [e.start for e in events] == [IN_UTC[offset]], offset


def test_a_calendar_read_keeps_its_times_when_another_is_read_after_it() -> None:
    first, second = zones.parse(fixed(OUTLOOK, "+0200")), zones.parse(fixed(OUTLOOK, "-0500"))
    starts = [c.walk("VEVENT")[0].decoded("DTSTART") for c in (first, second)]
    assert starts == [IN_UTC["+0200"], IN_UTC["-0500"]]


def test_the_same_definition_is_made_into_a_zone_once() -> None:
    one, two = (zones.parse(fixed("Cadence Test/Once", "+0330")) for _ in range(2))
    tz_one, tz_two = (c.walk("VEVENT")[0].decoded("DTSTART").tzinfo for c in (one, two))
    assert tz_one is tz_two


def test_calendars_read_in_threads_at_once_keep_their_own_zones() -> None:
    wrong: list[tuple[str, list[datetime]]] = []

    def read(offset: str) -> None:
        for _ in range(30):
            events, _ = ical.read_events(fixed(OUTLOOK, offset), ANA, WINDOW)
            if [e.start for e in events] != [IN_UTC[offset]]:
                wrong.append((offset, [e.start for e in events]))

    threads = [threading.Thread(target=read, args=(o,)) for o in ["+0200", "-0500"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
