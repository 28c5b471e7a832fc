"""Recurrence expansion is bounded for every frequency, count and window: a rule that
would walk millions of occurrences (or every day up to the year 9999) is refused or cut
with a reason, and ordinary rules expand exactly as the iCalendar library expands them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
import recurring_ical_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.model import Interval
from agent.formats import ical
from agent.formats.recurrence import MAX_INSTANCES, MAX_PERIODS
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.factories import at, person

ANA = person("ana", "Europe/Berlin")
WINDOW = Interval(at("2026-03-01T00:00:00+00:00"), at("2026-07-01T00:00:00+00:00"))


def calendar(rule: str, start: str = "DTSTART;TZID=Europe/Berlin:20200106T100000") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:r\r\n"
        f"{start}\r\nDURATION:PT30M\r\nRRULE:{rule}\r\nSUMMARY:R\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:plain\r\nDTSTART:20260402T080000Z\r\nDURATION:PT1H\r\n"
        "SUMMARY:Plain\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


HOSTILE = [
    # (rule, DTSTART value, what happens)
    ("FREQ=SECONDLY", "20200106T100000", "refused"),
    ("FREQ=SECONDLY;COUNT=999999999", "20260301T100000", "refused"),
    ("FREQ=MINUTELY;UNTIL=99991231T235959Z", "20260301T100000", "refused"),
    ("FREQ=MINUTELY;INTERVAL=59", "19900106T100000", "refused"),
    ("FREQ=HOURLY", "20100106T100000", "refused"),  # too many periods back
    ("FREQ=HOURLY;COUNT=2000000000", "20260220T100000", "cut"),
    ("FREQ=HOURLY;UNTIL=99991231T235959Z", "20260301T000000", "cut"),
    ("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,30", "20260301T000000", "cut"),
    ("FREQ=DAILY;BYHOUR=1;BYMINUTE=" + ",".join(map(str, range(25))), "20260301T000000", "refused"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "19900106T100000", "none"),  # never matches
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31", "19500106T100000", "none"),
    ("FREQ=HOURLY;BYMONTH=4;BYMONTHDAY=31", "20250106T100000", "none"),
    ("FREQ=DAILY;BYSETPOS=2", "20200106T100000", "refused"),
    ("FREQ=DAILY", "00010101T100000", "refused"),
    ("FREQ=WEEKLY;COUNT=999999999", "19700105T100000", "some"),
]


@pytest.mark.timeout(120)  # unbounded, each of these ran for minutes and gigabytes
@pytest.mark.parametrize(("rule", "start", "outcome"), HOSTILE)
def test_hostile_rules_are_bounded(rule: str, start: str, outcome: str) -> None:
    text = calendar(rule, f"DTSTART;TZID=Europe/Berlin:{start}")
    events, skipped = ical.read_events(text, ANA, WINDOW)
    ours = [e for e in events if e.uid == "r"]
    assert [e.title for e in events if e.uid == "plain"] == ["Plain"]  # the rest is read
    assert len(ours) <= MAX_INSTANCES
    reasons = [s.reason for s in skipped if s.ref == "r"]
    if outcome == "refused":
        assert ours == [] and len(reasons) == 1
        assert reasons[0].startswith("recurrence not expanded: ")
        assert "\n" not in reasons[0]
    elif outcome == "cut":
        assert len(ours) >= MAX_INSTANCES - 50  # the start of the window, then the cut
        assert [s.partial for s in skipped] == [True]
        assert "recurrence cut: more than 1,000 occurrences" in reasons[0]
    elif outcome == "none":
        assert ours == [] and skipped == []
    else:
        assert 10 < len(ours) < 30 and skipped == []


def test_the_limits_are_what_the_docs_say() -> None:
    assert MAX_INSTANCES == 1_000 and MAX_PERIODS == 50_000


@pytest.mark.timeout(120)
def test_a_wide_window_of_an_impossible_rule_stays_cheap() -> None:
    """The walk after the window ends where dateutil stops (the year 9999): it runs in
    later years of the same calendar, so it is decades, not millennia."""
    wide = Interval(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
    events, skipped = ical.read_events(
        calendar("FREQ=WEEKLY;BYMONTH=2;BYMONTHDAY=30", "DTSTART:19000101T100000Z"), ANA, wide
    )
    assert skipped == []  # DTSTART is always the first occurrence, and the only one here
    assert sorted((e.uid, e.start.year) for e in events) == [("plain", 2026), ("r", 1900)]


# --- ordinary rules: exactly what the library expands ---------------------------------

DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def rules(draw: st.DrawFn) -> tuple[str, str]:
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY", "HOURLY"]))
    parts = [f"FREQ={freq}"]
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(1, 4))}")
    end = draw(st.sampled_from(["count", "until"] if freq == "HOURLY" else ["", "count", "until"]))
    if end == "count":
        parts.append(f"COUNT={draw(st.integers(1, 400 if freq == 'HOURLY' else 1500))}")
    elif end == "until":
        most = 60 if freq == "HOURLY" else 500
        day = date(2026, 2, 1) + timedelta(days=draw(st.integers(-200, most)))
        parts.append(f"UNTIL={day:%Y%m%d}T235959Z")
    if freq != "HOURLY" and draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
        parts.append("BYDAY=" + ",".join(days))
    if freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
        parts.append(f"BYMONTHDAY={draw(st.integers(1, 28))}")
    if freq == "YEARLY" and draw(st.booleans()):
        parts.append(f"BYMONTH={draw(st.integers(1, 12))}")
    if freq in ("DAILY", "WEEKLY") and draw(st.booleans()):
        parts.append("BYHOUR=" + ",".join(map(str, draw(st.sets(st.integers(0, 23), min_size=1, max_size=3)))))  # fmt: skip
    span = {"HOURLY": 60, "DAILY": 3000, "WEEKLY": 5000}.get(freq, 9000)
    first = datetime(2026, 2, 1, 10, 15) - timedelta(days=draw(st.integers(0, span)))
    kind = draw(st.sampled_from(["zone", "utc", "floating", "date"]))
    if kind == "date" and freq != "HOURLY" and "BYHOUR" not in ";".join(parts):
        start = f"DTSTART;VALUE=DATE:{first:%Y%m%d}"
        if draw(st.booleans()):  # a date UNTIL, as RFC 5545 asks; or a time, as some write
            parts = [p.replace("T235959Z", "") if p.startswith("UNTIL") else p for p in parts]
    elif kind == "utc":
        start = f"DTSTART:{first:%Y%m%dT%H%M%S}Z"
    elif kind == "floating":
        start = f"DTSTART:{first:%Y%m%dT%H%M%S}"
    else:
        start = f"DTSTART;TZID=Europe/Berlin:{first:%Y%m%dT%H%M%S}"
    return ";".join(parts), start


def library_starts(text: str) -> list[datetime]:
    """The occurrences the iCalendar library finds on its own (no limits)."""
    cal = icalendar.Calendar.from_ical(text)
    found = recurring_ical_events.of(cal).between(WINDOW.start, WINDOW.end)
    return sorted(  # in UTC: Python never finds a time in a DST gap equal across zones
        ical._when(c.decoded("DTSTART"), ANA.zone)[0].astimezone(UTC)
        for c in found
        if str(c.get("UID")) == "r"
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules())
def test_ordinary_rules_expand_as_the_library_does(rule: tuple[str, str]) -> None:
    text = calendar(*rule)
    events, skipped = ical.read_events(text, ANA, WINDOW)
    ours = sorted(e.start.astimezone(UTC) for e in events if e.uid == "r")
    if skipped:  # only a cut, and only when the library finds more than the cap
        assert [s.partial for s in skipped] == [True]
        assert len(library_starts(text)) > MAX_INSTANCES
        return
    assert ours == library_starts(text)


def test_exdates_and_moved_instances_still_apply() -> None:
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:s\r\n"
        "DTSTART;TZID=Europe/Berlin:20200106T093000\r\nDURATION:PT15M\r\n"
        "RRULE:FREQ=WEEKLY;BYDAY=MO\r\nEXDATE;TZID=Europe/Berlin:20260309T093000\r\n"
        "SUMMARY:Standup\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:s\r\n"
        "RECURRENCE-ID;TZID=Europe/Berlin:20260316T093000\r\n"
        "DTSTART;TZID=Europe/Berlin:20260317T150000\r\nDURATION:PT15M\r\n"
        "SUMMARY:Standup (moved)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    march = Interval(at("2026-03-01T00:00:00+00:00"), at("2026-03-24T00:00:00+00:00"))
    events, skipped = ical.read_events(text, ANA, march)
    assert skipped == []
    assert sorted((e.title, e.start) for e in events) == [
        ("Standup", at("2026-03-02T08:30:00+00:00")),
        ("Standup", at("2026-03-23T08:30:00+00:00")),
        ("Standup (moved)", at("2026-03-17T14:00:00+00:00")),
    ]
    assert {e.id for e in events if e.title == "Standup"} == {
        "s/20260302T083000Z",
        "s/20260323T083000Z",
    }


# --- a whole tick ---------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_a_tick_with_hostile_rules_finishes_and_audits_them(
    workspace: Path, tmp_path: Path
) -> None:
    settings_ = config.load(workspace)
    target = settings_.base / "calendars" / "chloe@acme.example.ics"
    text = target.read_text()
    hostile = (
        "BEGIN:VEVENT\r\nUID:every-second\r\nDTSTAMP:20200101T000000Z\r\n"
        "DTSTART:20200101T000000Z\r\nDURATION:PT1S\r\nRRULE:FREQ=SECONDLY\r\n"
        "SUMMARY:Tick\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:every-hour\r\nDTSTAMP:20200101T000000Z\r\n"
        "DTSTART:20261101T000000Z\r\nDURATION:PT5M\r\nRRULE:FREQ=HOURLY;COUNT=999999999\r\n"
        "TRANSP:TRANSPARENT\r\nSUMMARY:Ping\r\nEND:VEVENT\r\n"
    )
    end = text.rfind("END:VCALENDAR")
    target.write_text(text[:end] + hostile + text[end:], newline="")
    store = Store(tmp_path / "t.db")
    with Engine(settings_, store=store) as engine:
        report = engine.tick(at("2026-11-23T14:00:00+00:00"))
    assert report.count("book") >= 3
    rows = [r["message"] for r in store.audit_rows(kind="skipped")]
    assert any("every-second" in m and "recurrence not expanded" in m for m in rows)
    assert any("every-hour" in m and "read in part" in m and "recurrence cut" in m for m in rows)
