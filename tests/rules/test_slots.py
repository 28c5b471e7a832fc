from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.durations import parse_span
from agent.core.model import Interval
from agent.rules import slots
from tests.factories import at, person

ZONES = [
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Honolulu",
    "Asia/Tokyo",
]


def request(emp, partner, start: str, days: int = 14, **kw) -> slots.SlotRequest:
    earliest = at(start)
    return slots.SlotRequest(
        employee=emp,
        partner=partner,
        duration=kw.pop("duration", timedelta(hours=1)),
        earliest=earliest,
        latest=earliest + timedelta(days=days),
        **kw,
    )


def test_earliest_common_slot_across_zones() -> None:
    ana, ben = (
        person("ana", "America/Sao_Paulo", work="08:00-16:00"),
        person("ben", "Europe/Berlin"),
    )
    req = request(ana, ben, "2026-11-24T00:00:00+00:00", window=parse_span("10:00-16:00"))
    result = slots.find_slot(req, [], [])
    assert result.slot is not None
    # 10:00 in São Paulo is 14:00 in Berlin: the first time inside both windows
    assert result.slot.start == at("2026-11-24T13:00:00+00:00")
    assert "earliest free in both windows" in result.reason
    assert (
        "Tue 2026-11-24 10:00 America/Sao_Paulo / Tue 2026-11-24 14:00 Europe/Berlin"
        in result.reason
    )


def test_busy_time_and_buffer_push_the_slot() -> None:
    ana, ben = person("ana"), person("ben")
    busy = [Interval(at("2026-11-24T08:00:00+00:00"), at("2026-11-24T09:00:00+00:00"))]
    req = request(ana, ben, "2026-11-24T08:00:00+00:00", buffer=timedelta(minutes=10))
    result = slots.find_slot(req, [], busy)
    assert result.slot is not None
    assert result.slot.start == at("2026-11-24T09:15:00+00:00")  # 10:00 Berlin + buffer, on grid


def test_preference_for_the_last_weekday_and_time() -> None:
    ana, ben = person("ana"), person("ben")
    req = request(ana, ben, "2026-11-23T08:00:00+00:00", prefer=(3, 14, 30))  # Thu 14:30
    result = slots.find_slot(req, [], [])
    assert result.slot is not None
    assert result.slot.start == at("2026-11-26T13:30:00+00:00")
    assert "same weekday and time" in result.reason


def test_public_holidays_and_closure_days_are_skipped() -> None:
    ana = person("ana", country="DE", closed=frozenset({date(2026, 12, 28)}))
    ben = person("ben")
    req = request(ana, ben, "2026-12-24T08:00:00+00:00", days=6)
    result = slots.find_slot(req, [], [])
    assert result.slot is not None
    # 24th is a Thursday (not a DE public holiday), 25 and 26 are; 28 closed
    assert result.slot.start.date() == date(2026, 12, 24)
    req = request(ana, ben, "2026-12-25T00:00:00+00:00", days=5)
    result = slots.find_slot(req, [], [])
    assert result.slot is not None and result.slot.start.date() == date(2026, 12, 29)


def test_no_common_hours_is_reported() -> None:
    honolulu = person("ana", "Pacific/Honolulu")
    kolkata = person("ben", "Asia/Kolkata")
    result = slots.find_slot(request(honolulu, kolkata, "2026-11-24T00:00:00+00:00"), [], [])
    assert result.slot is None
    assert result.reason.startswith("no common working hours")


def test_common_hours_shorter_than_the_meeting_say_what_is_short_and_by_how_much() -> None:
    kolkata = person("ana", "Asia/Kolkata")
    london = person("ben", "Europe/London")
    window = parse_span("10:00-16:00")  # 10:00-10:30 in London is 15:30-16:00 in Kolkata
    req = request(kolkata, london, "2026-11-24T00:00:00+00:00", window=window)
    result = slots.find_slot(req, [], [])
    assert result.slot is None
    assert result.reason.startswith(
        "common working hours too short between Asia/Kolkata and Europe/London within "
        "the booking window 10:00-16:00: at most 30m at a time, 30m short of the 60m meeting"
    )
    # the same pair for a 30-minute meeting is bookable in those 30 minutes
    short = slots.find_slot(
        replace(req, duration=timedelta(minutes=30), buffer=timedelta()), [], []
    )
    assert short.slot is not None and short.slot.start.astimezone(london.zone).hour == 10


def test_all_busy_is_reported() -> None:
    ana, ben = person("ana"), person("ben")
    busy = [Interval(at("2026-11-20T00:00:00+00:00"), at("2026-12-31T00:00:00+00:00"))]
    result = slots.find_slot(request(ana, ben, "2026-11-24T00:00:00+00:00"), busy, [])
    assert result.slot is None and result.reason.startswith("all common hours busy")


def test_dst_change_keeps_local_working_hours() -> None:
    # Europe switches on 29 March 2026; New York on 8 March. 09:00 local stays 09:00 local.
    ana, ben = person("ana", "Europe/Berlin"), person("ben", "Europe/Berlin")
    before = slots.find_slot(request(ana, ben, "2026-03-27T00:00:00+00:00", days=1), [], [])
    after = slots.find_slot(request(ana, ben, "2026-03-30T00:00:00+00:00", days=1), [], [])
    assert before.slot and after.slot
    assert before.slot.start == at("2026-03-27T08:00:00+00:00")
    assert after.slot.start == at("2026-03-30T07:00:00+00:00")


def test_interval_algebra() -> None:
    def iv(a: int, b: int) -> Interval:
        base = at("2026-01-01T00:00:00+00:00")
        return Interval(base + timedelta(hours=a), base + timedelta(hours=b))

    assert slots.merge([iv(3, 5), iv(0, 2), iv(1, 3)]) == [iv(0, 5)]
    assert slots.intersect([iv(0, 4), iv(6, 9)], [iv(3, 7)]) == [iv(3, 4), iv(6, 7)]
    assert slots.subtract([iv(0, 10)], [iv(2, 3), iv(5, 6)]) == [iv(0, 2), iv(3, 5), iv(6, 10)]


# --- properties -------------------------------------------------------------------------

START = datetime(2026, 1, 1)


@st.composite
def calendars(draw: st.DrawFn) -> tuple[slots.SlotRequest, list[Interval], list[Interval]]:
    tz_a, tz_b = draw(st.sampled_from(ZONES)), draw(st.sampled_from(ZONES))
    offset = draw(st.integers(min_value=0, max_value=365 * 24 * 4))  # quarter hours in 2026
    work_a = draw(
        st.sampled_from(["08:00-16:00", "09:00-17:00", "10:00-18:30", "07:00-12:00,13:00-15:00"])
    )
    work_b = draw(st.sampled_from(["09:00-17:00", "06:00-14:00", "12:00-20:00"]))
    country = draw(st.sampled_from([None, "DE", "US", "BR", "IN", "GB"]))
    offset_days = draw(st.lists(st.integers(0, 20), max_size=3))
    closed = frozenset(
        (at("2026-01-01T00:00:00+00:00") + timedelta(minutes=15 * offset)).date()
        + timedelta(days=d)
        for d in offset_days
    )
    a = person("ana", tz_a, country=country, work=work_a, closed=closed)
    b = person("ben", tz_b, country=draw(st.sampled_from([None, "DE", "US"])), work=work_b)
    earliest = at("2026-01-01T00:00:00+00:00") + timedelta(minutes=15 * offset)
    window = draw(st.sampled_from([None, "10:00-16:00", "09:00-12:00"]))

    def busy() -> list[Interval]:
        out = []
        for _ in range(draw(st.integers(min_value=0, max_value=40))):
            s = earliest + timedelta(minutes=draw(st.integers(0, 14 * 24 * 60)))
            out.append(Interval(s, s + timedelta(minutes=draw(st.integers(5, 600)))))
        return out

    req = slots.SlotRequest(
        employee=a,
        partner=b,
        duration=timedelta(minutes=draw(st.sampled_from([15, 30, 60]))),
        earliest=earliest,
        latest=earliest + timedelta(days=draw(st.integers(1, 21))),
        window=parse_span(window) if window else None,
        buffer=timedelta(minutes=draw(st.sampled_from([0, 5, 10, 15]))),
        prefer=draw(
            st.none()
            | st.tuples(st.integers(0, 4), st.integers(8, 16), st.sampled_from([0, 15, 30, 45]))
        ),
    )
    return req, busy(), busy()


def _inside_working_hours(p, req: slots.SlotRequest, slot: Interval) -> bool:
    local_start = slot.start.astimezone(p.zone)
    day = local_start.date()
    if slots.day_off(p, day):
        return False
    begin = local_start.hour * 60 + local_start.minute
    end = begin + slot.duration.total_seconds() / 60
    for span in p.working_hours.on(day.weekday()):
        lo, hi = span.start, span.end
        if req.window:
            lo, hi = max(lo, req.window.start), min(hi, req.window.end)
        if lo.hour * 60 + lo.minute <= begin and end <= hi.hour * 60 + hi.minute:
            return True
    return False


@settings(max_examples=1000, deadline=None)
@given(calendars())
def test_a_chosen_slot_obeys_every_rule(case) -> None:
    req, busy_a, busy_b = case
    result = slots.find_slot(req, busy_a, busy_b)
    if result.slot is None:
        assert result.reason.startswith(
            ("no common working hours", "common working hours too short", "all common hours busy")
        )
        span = Interval(req.earliest, req.latest + req.duration)
        shared = slots.intersect(
            slots.allowed(req.employee, req.window, span),
            slots.allowed(req.partner, req.window, span),
        )
        # each reason is exact: none shared, none long enough (by the stated minutes), or busy
        if result.reason.startswith("no common working hours"):
            assert shared == []
        elif result.reason.startswith("common working hours too short"):
            longest = max(iv.duration for iv in shared)
            assert longest < req.duration
            assert f"at most {slots.format_minutes(longest)} at a time" in result.reason
        else:
            assert any(iv.duration >= req.duration for iv in shared)
        return
    slot = result.slot
    assert slot.duration == req.duration
    assert req.earliest <= slot.start <= req.latest
    for b in [*busy_a, *busy_b]:
        assert not slot.overlaps(b.widen(req.buffer))
    assert _inside_working_hours(req.employee, req, slot)
    assert _inside_working_hours(req.partner, req, slot)
    # deterministic: the same question gives the same answer
    assert slots.find_slot(req, list(reversed(busy_a)), busy_b).slot == slot


@settings(max_examples=300, deadline=None)
@given(calendars())
def test_no_earlier_candidate_is_free_unless_preferred(case) -> None:
    req, busy_a, busy_b = case
    req = slots.SlotRequest(**{**req.__dict__, "prefer": None})
    result = slots.find_slot(req, busy_a, busy_b)
    if result.slot is None:
        return
    step = req.granularity
    t = result.slot.start - step
    while t >= req.earliest:
        cand = Interval(t, t + req.duration)
        clash = any(cand.overlaps(b.widen(req.buffer)) for b in [*busy_a, *busy_b])
        ok = _inside_working_hours(req.employee, req, cand) and _inside_working_hours(
            req.partner, req, cand
        )
        assert clash or not ok, f"earlier free candidate {cand}"
        t -= step
        if result.slot.start - t > timedelta(days=2):
            break
